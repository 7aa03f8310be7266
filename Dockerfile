# syntax=docker/dockerfile:1
#
# CareBridge: one image runs any of the four services.
#
#   docker build -t carebridge .
#   docker run carebridge services.intake      # ENTRYPOINT is `python -m`; the default is the gateway
#
# Every setting comes from the environment (shared/settings.py); see docker-compose.yml and
# deploy/k8s/ for complete production configurations. The image targets linux/amd64: every
# dependency ships a manylinux wheel for it, so the build needs no compiler.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv holding the project and its run-time dependencies only --------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer, so that a change to the code does not reinstall them.
# The list is read from pyproject.toml ([project].dependencies: no test or dev extras).
# constraints.txt, where the repository has one, pins the same versions CI tests with.
# opentelemetry-exporter-otlp is not a core dependency (shared/telemetry.py imports it lazily)
# but production exports traces and metrics over OTLP to the collector.
COPY pyproject.toml README.md constraints.tx[t] ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && if [ -f constraints.txt ]; then set -- --constraint constraints.txt; fi \
    && pip install "$@" --requirement /tmp/requirements.txt opentelemetry-exporter-otlp

# Then the project itself (packages `shared` and `services`, console script `carebridge`).
COPY shared ./shared
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && pip check

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="carebridge" \
      org.opencontainers.image.description="CareBridge care-coordination services (HL7 v2 + FHIR R4)" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 carebridge \
    && useradd --system --uid 10001 --gid carebridge --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin carebridge

COPY --from=build /opt/venv /opt/venv

# Containers listen on every interface (the settings default to 127.0.0.1 for a laptop).
# PYTHONDONTWRITEBYTECODE: pip compiled the bytecode at install, and the root filesystem is
# read-only in production.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INTAKE_HOST=0.0.0.0 \
    CAREPLAN_HOST=0.0.0.0 \
    REFERRAL_HOST=0.0.0.0 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_MLLP_HOST=0.0.0.0

# Only the default SQLite location (.data/ under the working directory) is ever written here,
# and only when no *_DATABASE_URL is set: production always sets one.
WORKDIR /app
RUN chown carebridge:carebridge /app

USER 10001:10001

# gateway HTTP, intake, careplan, referral, gateway MLLP
EXPOSE 8080 8081 8082 8083 2575

ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]

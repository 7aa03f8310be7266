# syntax=docker/dockerfile:1
#
# CareBridge: one image runs any of the four services, chosen by its command.
#
#   docker build -t carebridge .
#   docker run carebridge services.intake      # ENTRYPOINT is `python -m`; the default is the gateway
#
# Every setting comes from the environment (shared/settings.py); docker-compose.yml and
# deploy/k8s/ hold complete production configurations (deploy/README.md). Helpers for topic
# creation, migrations and the health check are in /opt/carebridge/bin (deploy/image/).
#
# Two stages: `build` makes a virtualenv with the project and its run-time dependencies; the
# final stage copies only that virtualenv onto a fresh slim Python. Every dependency ships a
# manylinux wheel, so no compiler is installed in either stage, and the final image has no pip,
# setuptools or wheel either.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv holding the project and its run-time dependencies only --------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, in their own layer, so that a change to the code does not reinstall them.
# The list is [project].dependencies of pyproject.toml (no test or dev extras), pinned by
# constraints.txt to the versions CI tests. Production exports traces and metrics over OTLP/HTTP
# to the collector: its exporter is not a core dependency (shared/telemetry.py imports it lazily)
# and is pinned here to the OpenTelemetry SDK's version from constraints.txt.
COPY pyproject.toml README.md constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && otel_version="$(sed -n 's/^opentelemetry-sdk==//p' constraints.txt)" \
    && test -n "$otel_version" \
    && pip install --constraint constraints.txt --requirement /tmp/requirements.txt \
        "opentelemetry-exporter-otlp-proto-http==${otel_version}"

# Then the project itself (packages `shared` and `services`, console script `carebridge`);
# then the installers leave the virtualenv: nothing installs anything at run time.
COPY shared ./shared
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && pip check \
    && pip uninstall --yes pip setuptools wheel

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="carebridge" \
      org.opencontainers.image.description="CareBridge care-coordination services (HL7 v2 + FHIR R4)" \
      org.opencontainers.image.licenses="Apache-2.0"

# An unprivileged user with a fixed id (Kubernetes checks runAsNonRoot against the number), and
# no installers in the final image: the base image's pip, setuptools and wheel go too.
RUN groupadd --system --gid 10001 carebridge \
    && useradd --system --uid 10001 --gid carebridge --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin carebridge \
    && python -m pip uninstall --yes --no-cache-dir --root-user-action=ignore pip setuptools wheel

COPY --from=build /opt/venv /opt/venv
COPY deploy/image/healthcheck.py deploy/image/create_topics.py deploy/image/migrate.py /opt/carebridge/bin/

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

# Liveness of whichever service runs here (deploy/image/healthcheck.py; --ready for /readyz).
# Kubernetes ignores this and probes /healthz and /readyz itself (deploy/k8s/).
HEALTHCHECK --interval=30s --timeout=6s --start-period=60s --retries=3 \
    CMD ["python", "/opt/carebridge/bin/healthcheck.py"]

ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]

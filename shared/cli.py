"""`carebridge`: run the local stack, mint development tokens, send HL7 v2, replay dead letters.

carebridge up                          start everything, print the URLs and a token
TOKEN=$(carebridge token --scope "system/*.cruds")
carebridge send-hl7 adt.hl7 [more.hl7 ...]
carebridge dlq replay carebridge.patient.v1
carebridge hl7 list --status error
carebridge hl7 reprocess <message id> | --status error
carebridge directory import services/referral/directory_data/directory.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from shared.auth import Scope, mint_token
from shared.events.topics import ALL_TOPICS, DLQ_SUFFIX
from shared.mllp import (
    FrameTooLarge,
    MLLPConnectionError,
    ack_code,
    control_id,
    normalize_segments,
    send_messages,
    split_messages,
)
from shared.settings import GatewaySettings
from shared.stack import LocalStack, StackError, StackStartCancelled

EXIT_OK, EXIT_REJECTED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
DEV_SCOPE = "system/*.cruds"
DEV_TOKEN_TTL = 12 * 3600
_ACCEPTED = ("AA", "CA")
#: `up` port flags: flag, the environment variable that also sets it, default, what it is.
_PORT_FLAGS = (
    ("--gateway-port", "GATEWAY_PORT", "8080", "gateway HTTP port: /fhir, /hl7v2 (GATEWAY_PORT)"),
    ("--mllp-port", "GATEWAY_MLLP_PORT", "2575", "HL7 v2 MLLP listener port (GATEWAY_MLLP_PORT)"),
    ("--intake-port", "INTAKE_PORT", "8081", "intake service HTTP port (INTAKE_PORT)"),
    ("--careplan-port", "CAREPLAN_PORT", "8082", "careplan service HTTP port (CAREPLAN_PORT)"),
    ("--referral-port", "REFERRAL_PORT", "8083", "referral service HTTP port (REFERRAL_PORT)"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="carebridge: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    code: int = args.handler(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carebridge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_up(commands)
    _add_token(commands)
    _add_send_hl7(commands)
    _add_dlq(commands)
    _add_hl7(commands)
    _add_directory(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _gateway_settings() -> GatewaySettings:
    """The gateway's settings from the environment (for its JWT secret and issuer)."""
    # cast: mypy reads GatewaySettings.jwt_hs256_secret (a positional Field default) as required.
    return cast(Any, GatewaySettings)()


# --- up ------------------------------------------------------------------------------------------


def _add_up(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = _command(
        commands,
        "up",
        "run the whole stack locally until Ctrl-C",
        (
            "Start CareBridge on this machine: a Kafka broker (Tansu, unless KAFKA_BOOTSTRAP_SERVERS\n"
            "is set), Redis (REDIS_URL, a server on 127.0.0.1:6379, or one started here) and the\n"
            "intake, careplan, referral and gateway services. Waits until the gateway is ready, then\n"
            "prints the FHIR base URL, the MLLP port and a development bearer token, and runs until\n"
            "Ctrl-C or SIGTERM stops everything (a second Ctrl-C kills at once).\n\n"
            "Each service keeps a SQLite database in the data directory, so data survives restarts;\n"
            "the broker is in memory. Logs: <data-dir>/logs/<service>.log. Port defaults come from\n"
            "the services' environment variables (GATEWAY_PORT, GATEWAY_MLLP_PORT, INTAKE_PORT, ...)."
        ),
    )
    up.add_argument(
        "--data-dir", type=Path, default=Path(".data"), help="databases and logs (default: .data)"
    )
    up.add_argument("--log-dir", type=Path, help="service logs (default: DATA_DIR/logs)")
    for flag, env_name, default, text in _PORT_FLAGS:
        up.add_argument(
            flag, type=int, default=os.environ.get(env_name, default), help=f"{text} (default: %(default)s)"
        )
    up.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="use this Redis (REDIS_URL)")
    up.add_argument(
        "--kafka-bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="use this Kafka instead of starting Tansu (KAFKA_BOOTSTRAP_SERVERS)",
    )
    up.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait (default: 60)")
    up.set_defaults(handler=_run_up)


class _StopSignals:
    """SIGINT/SIGTERM/SIGHUP: the first asks for a clean stop, the next kills at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, on_force: Callable[[], None]) -> None:
        self.requested = threading.Event()
        self.forced = False
        self._on_force = on_force
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.forced = True
            self._on_force()
            return
        self.requested.set()
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            print(
                "\nStopping CareBridge (press Ctrl-C again to kill it at once)...",
                file=sys.stderr,
                flush=True,
            )


def _run_up(args: argparse.Namespace) -> int:
    stack = LocalStack(
        data_dir=args.data_dir,
        gateway_port=args.gateway_port,
        mllp_port=args.mllp_port,
        intake_port=args.intake_port,
        careplan_port=args.careplan_port,
        referral_port=args.referral_port,
        redis_url=args.redis_url,
        kafka_bootstrap=args.kafka_bootstrap,
        log_dir=args.log_dir,
        ready_timeout=args.ready_timeout,
    )
    with _StopSignals(stack.kill) as signals:
        try:
            print("Starting CareBridge...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                stack.start(cancel=signals.requested)
            except StackStartCancelled:
                return EXIT_INTERRUPTED
            except StackError as exc:
                print(f"carebridge up: {exc}", file=sys.stderr)
                return EXIT_ERROR
            _print_ready(stack, time.monotonic() - started)
            failure = _watch(stack, signals.requested)
        finally:
            stack.stop()
    if failure:
        print(f"carebridge up: {failure}\nStopped everything.", file=sys.stderr)
        return EXIT_ERROR
    print("CareBridge stopped.", file=sys.stderr)
    return EXIT_INTERRUPTED if signals.forced else EXIT_OK


def _watch(stack: LocalStack, stop: threading.Event) -> str | None:
    """Block until a stop is requested; return why if a service died meanwhile."""
    while not stop.wait(1.0):
        dead = stack.dead_services()
        if dead:
            return "\n".join(dead)
    return None


def _print_ready(stack: LocalStack, seconds: float) -> None:
    gateway = _gateway_settings()
    urls = stack.urls
    print(f"\nCareBridge is ready ({seconds:.1f} s)\n")
    print(f"  FHIR base URL   {urls.fhir_base}")
    print(f"  HL7 v2 MLLP     {urls.mllp}")
    print(f"  Kafka           {stack.kafka_bootstrap}")
    print(f"  Redis           {stack.redis_url}")
    print(f"  data            {stack.data_dir} (logs in {stack.log_dir})\n")
    if gateway.jwt_hs256_secret:
        token = mint_token(
            gateway.jwt_hs256_secret, DEV_SCOPE, issuer=gateway.jwt_issuer, ttl_seconds=DEV_TOKEN_TTL
        )
        print(f"Development bearer token (scope {DEV_SCOPE}, valid 12 h):\n")
        print(f"  export TOKEN={token}\n")
        print(f'  curl -H "Authorization: Bearer $TOKEN" "{urls.fhir_base}/Patient?_count=10"')
    else:
        print("GATEWAY_JWT_HS256_SECRET is empty, so no development token can be minted.")
    print(f"\nSend HL7 v2 files:\n\n  carebridge send-hl7 --port {stack.mllp_port} message.hl7\n")
    print("Press Ctrl-C to stop.", flush=True)


# --- token ---------------------------------------------------------------------------------------


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = _command(
        commands,
        "token",
        "print a development bearer token",
        (
            "Mint an HS256 JWT the gateway accepts in development and print only the token, so\n"
            '`TOKEN=$(carebridge token --scope "system/*.cruds")` works. The secret defaults to the\n'
            "gateway's (GATEWAY_JWT_HS256_SECRET, or its built-in development default).\n\n"
            "Scopes follow SMART v2: system/*.cruds, user/CarePlan.rs, patient/*.rs ..."
        ),
    )
    token.add_argument("--scope", required=True, help='space-separated SMART scopes, e.g. "user/CarePlan.rs"')
    token.add_argument("--patient", help="Patient id a patient/ scope is limited to")
    token.add_argument("--organization", help="Organization id of a clinic (referrals addressed to it)")
    token.add_argument(
        "--subject", default="carebridge-dev", help="the token's sub claim (default: %(default)s)"
    )
    token.add_argument(
        "--ttl", type=int, default=DEV_TOKEN_TTL, help="lifetime in seconds (default: %(default)s)"
    )
    token.add_argument("--secret", help="HS256 secret (default: the gateway's)")
    token.set_defaults(handler=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    gateway = _gateway_settings()
    secret = args.secret or gateway.jwt_hs256_secret
    if not secret:
        print("carebridge token: no HS256 secret (set --secret or GATEWAY_JWT_HS256_SECRET)", file=sys.stderr)
        return EXIT_ERROR
    unknown = [s for s in args.scope.split() if Scope.parse(s) is None]
    if unknown:
        print(
            "carebridge token: warning: not SMART v2 scopes, the gateway will ignore them: "
            + " ".join(unknown),
            file=sys.stderr,
        )
    print(
        mint_token(
            secret,
            args.scope,
            subject=args.subject,
            patient=args.patient,
            organization=args.organization,
            issuer=gateway.jwt_issuer,
            ttl_seconds=args.ttl,
        )
    )
    return EXIT_OK


# --- send-hl7 ------------------------------------------------------------------------------------


def _add_send_hl7(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = _command(
        commands,
        "send-hl7",
        "send HL7 v2 files over MLLP and print the ACKs",
        (
            "Send every message in the files, in order, over one MLLP connection, waiting for each\n"
            "ACK before the next. A file may hold several messages (each begins with an MSH segment);\n"
            "\\n, \\r\\n and \\r segment endings are all accepted, and batch envelope segments\n"
            "(FHS/BHS/BTS/FTS) are dropped. Each ACK is printed with the file and MSH-10 it answers.\n\n"
            "Exit status: 0 when every ACK is AA or CA, 1 when any is AE/AR/CE/CR, 2 when a file\n"
            "cannot be read or the listener cannot be reached."
        ),
    )
    send.add_argument("files", nargs="+", type=Path, metavar="FILE", help="HL7 v2 message file(s)")
    send.add_argument("--host", default="127.0.0.1", help="MLLP listener host (default: %(default)s)")
    send.add_argument(
        "--port",
        type=int,
        default=os.environ.get("GATEWAY_MLLP_PORT", "2575"),
        help="MLLP listener port (default: %(default)s)",
    )
    send.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each ACK (default: %(default)s)"
    )
    send.set_defaults(handler=_run_send_hl7)


@dataclass(frozen=True)
class OutgoingMessage:
    file: Path
    number: int
    of: int
    control_id: str
    content: bytes

    def header(self) -> str:
        return f"== {self.file} message {self.number} of {self.of} (MSH-10 {self.control_id or '?'}) =="


def _read_messages(files: Sequence[Path]) -> list[OutgoingMessage]:
    outgoing: list[OutgoingMessage] = []
    for path in files:
        try:
            messages = split_messages(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not messages:
            raise ValueError(f"{path}: no HL7 message in the file (no MSH segment)")
        outgoing += [
            OutgoingMessage(path, number, len(messages), control_id(message), message)
            for number, message in enumerate(messages, 1)
        ]
    return outgoing


def _run_send_hl7(args: argparse.Namespace) -> int:
    try:
        outgoing = _read_messages(args.files)
    except (OSError, ValueError) as exc:
        print(f"carebridge send-hl7: {exc}", file=sys.stderr)
        return EXIT_ERROR
    failure = None
    try:
        contents = [message.content for message in outgoing]
        acks = asyncio.run(send_messages(args.host, args.port, contents, timeout=args.timeout))
    except MLLPConnectionError as exc:
        acks, failure = exc.acks, str(exc)
    except FrameTooLarge as exc:
        acks, failure = [], f"an acknowledgement from {args.host}:{args.port} was too large: {exc}"
    codes = [_print_ack(message, ack) for message, ack in zip(outgoing, acks, strict=False)]
    # A message that asked for no ACK (MSH-15/16 NE) was sent as asked: it counts as accepted.
    accepted = sum(code in _ACCEPTED or not ack for code, ack in zip(codes, acks, strict=False))
    if acks or not failure:
        print(f"{len(acks)} of {len(outgoing)} message(s) acknowledged, {accepted} accepted", file=sys.stderr)
    if failure:
        print(f"carebridge send-hl7: {failure}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if accepted == len(outgoing) else EXIT_REJECTED


def _print_ack(message: OutgoingMessage, ack: bytes) -> str | None:
    print(message.header())
    if not ack:
        print("(no acknowledgement: the message asks for none, MSH-15 and MSH-16 NE)\n", flush=True)
        return None
    code = ack_code(ack)
    for segment in normalize_segments(ack).split(b"\r"):
        if segment:
            print(segment.decode("utf-8", "replace"))
    if code is None:
        print("(no MSA segment: not an acknowledgement)")
    print(flush=True)
    return code


# --- dlq replay ----------------------------------------------------------------------------------


def _add_dlq(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = _command(
        commands,
        "dlq",
        "work with dead-letter topics",
        (
            "Dead-letter topics hold the records a consumer could not process, with the error.\n"
            "Fix the cause, then replay them onto their topic."
        ),
    )
    dlq_commands = dlq.add_subparsers(title="commands", metavar="COMMAND", required=True)
    topics = "\n".join(f"  {topic}" for topic in ALL_TOPICS)
    replay = _command(
        dlq_commands,
        "replay",
        "re-publish a topic's dead letters onto the topic",
        (
            f"Read the records in TOPIC{DLQ_SUFFIX} and publish them again to TOPIC, where the\n"
            "consumers process them (they are idempotent, so a record that did get through is not\n"
            "applied twice). Uses KAFKA_BOOTSTRAP_SERVERS and KAFKA_TOPIC_PREFIX from the\n"
            f"environment.\n\nTOPIC is a logical topic name, one of:\n{topics}"
        ),
    )
    replay.add_argument("topic", metavar="TOPIC", help="logical topic name, e.g. carebridge.patient.v1")
    replay.add_argument("--max", type=int, dest="max_records", metavar="N", help="replay at most N records")
    replay.set_defaults(handler=_run_dlq_replay)


def _run_dlq_replay(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from shared.events.dlq import replay_dlq
    from shared.settings import ServiceSettings

    topic = args.topic.removesuffix(DLQ_SUFFIX)
    if topic not in ALL_TOPICS:
        print(
            f"carebridge dlq replay: unknown topic {args.topic!r}; one of: {', '.join(ALL_TOPICS)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    settings = ServiceSettings()
    if not args.verbose:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the failure is reported below
    try:
        count = asyncio.run(replay_dlq(settings, topic, max_records=args.max_records))
    except (KafkaError, OSError) as exc:
        print(
            f"carebridge dlq replay: cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"Replayed {count} record(s) from {settings.topic(topic)}{DLQ_SUFFIX} to {settings.topic(topic)}")
    return EXIT_OK


# --- hl7 list / reprocess -------------------------------------------------------------------------


def _add_hl7(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hl7 = _command(
        commands,
        "hl7",
        "list and re-process archived HL7 v2 messages",
        (
            "Every HL7 v2 message the gateway receives is archived with its outcome: processed,\n"
            "error (stored but not translated: answered AE) or rejected (AR). After fixing the\n"
            "cause, re-process the failed ones. Talks to the gateway's HTTP API\n"
            "(GATEWAY_URL, default http://127.0.0.1:8080) with CAREBRIDGE_TOKEN, or a development\n"
            "token minted from the gateway's secret."
        ),
    )
    hl7_commands = hl7.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = _command(hl7_commands, "list", "list archived messages", "List messages, newest first.")
    listing.add_argument("--status", choices=("processed", "error", "rejected"), help="only this status")
    listing.add_argument("--max", type=int, default=50, dest="max_messages", help="at most N (default 50)")
    listing.set_defaults(handler=_run_hl7_list)
    again = _command(
        hl7_commands,
        "reprocess",
        "translate archived messages again",
        "Re-process the given message ids, or every message with --status (error or rejected).",
    )
    again.add_argument("ids", nargs="*", metavar="ID", help="archive ids (GET /hl7v2/messages)")
    again.add_argument("--status", choices=("error", "rejected"), help="every message with this status")
    again.set_defaults(handler=_run_hl7_reprocess)


def _gateway_call(method: str, path: str) -> Any:
    import httpx

    base = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")
    token = os.environ.get("CAREBRIDGE_TOKEN")
    if not token:
        gateway = _gateway_settings()
        token = mint_token(
            gateway.jwt_hs256_secret, "system/hl7v2.rsu", issuer=gateway.jwt_issuer, ttl_seconds=300
        )
    response = httpx.request(method, base + path, headers={"authorization": f"Bearer {token}"}, timeout=30)
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        issue = (body.get("issue") or [{}])[0] if isinstance(body, dict) else {}
        raise RuntimeError(f"{method} {path}: {response.status_code} {issue.get('diagnostics', '')}".strip())
    return body


def _hl7_messages(status: str | None, limit: int) -> list[dict[str, Any]]:
    query = f"?_count={min(limit, 500)}" + (f"&status={status}" if status else "")
    found: list[dict[str, Any]] = []
    path: str | None = "/hl7v2/messages" + query
    while path and len(found) < limit:
        page = _gateway_call("GET", path)
        found.extend(page["messages"])
        following = page.get("next")
        path = following[following.index("/hl7v2/") :] if following else None
    return found[:limit]


def _run_hl7_list(args: argparse.Namespace) -> int:
    try:
        messages = _hl7_messages(args.status, args.max_messages)
    except (RuntimeError, OSError) as exc:
        print(f"carebridge hl7 list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for m in messages:
        error = f"  {m['error']}" if m.get("error") else ""
        print(f"{m['id']}  {m['receivedAt']}  {m['status']:<9}  {m.get('messageType') or '-'}{error}")
    return EXIT_OK


def _run_hl7_reprocess(args: argparse.Namespace) -> int:
    ids = list(args.ids)
    if not ids and args.status:
        try:
            ids = [m["id"] for m in _hl7_messages(args.status, 100_000)]
        except (RuntimeError, OSError) as exc:
            print(f"carebridge hl7 reprocess: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if not ids:
        print("carebridge hl7 reprocess: give message ids or --status", file=sys.stderr)
        return EXIT_ERROR
    failed = 0
    for message_id in ids:
        try:
            result = _gateway_call("POST", f"/hl7v2/messages/{message_id}/$reprocess")
        except (RuntimeError, OSError) as exc:
            print(f"{message_id}  failed: {exc}")
            failed += 1
            continue
        print(f"{message_id}  {result['status']}")
        failed += result["status"] != "processed"
    return EXIT_REJECTED if failed else EXIT_OK


# --- directory import ----------------------------------------------------------------------------

#: What a directory import may write (and look up): the referral service's directory types.
_DIRECTORY_SCOPE = " ".join(
    f"system/{t}.crus"
    for t in ("Organization", "Endpoint", "Location", "Practitioner", "HealthcareService", "PractitionerRole")
)


def _add_directory(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from services.referral.domain.directory import CSV_COLUMNS

    directory = _command(
        commands,
        "directory",
        "work with the referral resource directory",
        "The community resource directory: organizations, their sites and services, who takes\n"
        "referrals and how. Served by the referral service at /fhir/HealthcareService and friends.",
    )
    directory_commands = directory.add_subparsers(title="commands", metavar="COMMAND", required=True)
    columns = "\n".join(
        f"  {name:<21}{'*' if required else ' '} {text}" for name, required, text in CSV_COLUMNS
    )
    load = _command(
        directory_commands,
        "import",
        "load a directory from a FHIR Bundle or a CSV",
        (
            "Load FILE into the directory through the gateway's /fhir. FILE is a FHIR Bundle (JSON;\n"
            "transaction, batch, collection or searchset) of Organization, Endpoint, Location,\n"
            "Practitioner, HealthcareService and PractitionerRole resources, or a CSV with one row per\n"
            "service. Every resource is written as a conditional update by its first identifier, so\n"
            "importing the same file again changes nothing; resources that reference each other\n"
            "travel in the same transaction. Prints how many were created, updated and unchanged.\n\n"
            "The repository ships a synthetic directory (over 200 services):\n"
            "  carebridge directory import services/referral/directory_data/directory.json\n\n"
            f"CSV columns (* required; lists are ';'-separated):\n{columns}\n\n"
            "Identifiers of CSV rows are <http://carebridge.example/fhir/directory>/<source>/<type>|<id>,\n"
            "so re-importing a corrected file updates the same resources.\n\n"
            "Exit status: 0 when everything was imported, 1 when the server refused a transaction\n"
            "(earlier transactions stay saved; fix the file and import it again), 2 when the file\n"
            "cannot be read or the gateway cannot be reached."
        ),
    )
    load.add_argument("file", type=Path, metavar="FILE", help="a FHIR Bundle (.json) or a CSV (.csv)")
    load.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"),
        help="the gateway's base URL (GATEWAY_URL; default: %(default)s)",
    )
    load.add_argument(
        "--token",
        default=os.environ.get("CAREBRIDGE_TOKEN"),
        help="bearer token (CAREBRIDGE_TOKEN; default: a development token from the gateway's secret)",
    )
    load.add_argument(
        "--source", help="CSV only: the source name in the identifiers (default: the file name)"
    )
    load.add_argument(
        "--chunk-size", type=int, default=200, help="resources per transaction (default: %(default)s)"
    )
    load.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)"
    )
    load.set_defaults(handler=_run_directory_import)


class _ImportRefused(Exception):
    """The server answered a transaction with an error."""


def _directory_bundle(path: Path, source: str | None) -> Any:
    from services.referral.domain.directory import parse_directory_csv

    raw = path.read_bytes()
    if path.suffix.lower() == ".csv" or not raw.lstrip().startswith(b"{"):
        return parse_directory_csv(raw.decode("utf-8-sig"), source=source or path.stem).bundle()
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None


def _run_directory_import(args: argparse.Namespace) -> int:
    import httpx

    from services.referral.domain import directory_import as plan
    from shared.errors import CareBridgeError

    where = "carebridge directory import"
    try:
        entries = plan.import_entries(_directory_bundle(args.file, args.source))
        transactions = plan.chunks(entries, max_entries=max(1, args.chunk_size))
    except (OSError, ValueError, CareBridgeError) as exc:
        detail = exc.diagnostics if isinstance(exc, CareBridgeError) else str(exc)
        print(f"{where}: {args.file}: {detail}", file=sys.stderr)
        return EXIT_ERROR
    token = args.token
    if not token:
        gateway = _gateway_settings()
        token = mint_token(
            gateway.jwt_hs256_secret, _DIRECTORY_SCOPE, issuer=gateway.jwt_issuer, ttl_seconds=900
        )
    base = args.gateway.rstrip("/").removesuffix("/fhir")
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/fhir+json",
        "accept": "application/fhir+json",
    }
    tally = plan.ImportTally()
    with httpx.Client(base_url=base, headers=headers, timeout=args.timeout) as http:
        for number, chunk in enumerate(transactions, 1):
            try:
                found = {
                    t: _post(http, f"/fhir/{t}/_search", q) for t, q in plan.version_queries(chunk).items()
                }
                before = plan.versions_before(found, chunk)
                answer = _post(http, "/fhir", plan.transaction_of(chunk))
                for outcome, entry in zip(plan.outcomes(answer, chunk, before), chunk, strict=True):
                    tally.add(outcome, entry.resource_type)
            except (_ImportRefused, CareBridgeError) as exc:
                detail = exc.diagnostics if isinstance(exc, CareBridgeError) else str(exc)
                saved = f"; transactions 1-{number - 1} were saved" if number > 1 else "; nothing was saved"
                print(
                    f"{where}: transaction {number} of {len(transactions)} refused: {detail}{saved}",
                    file=sys.stderr,
                )
                print(f"So far: {tally.summary()}", file=sys.stderr)
                return EXIT_REJECTED
            except (httpx.HTTPError, OSError) as exc:
                print(f"{where}: cannot reach the gateway at {base}: {exc}", file=sys.stderr)
                return EXIT_ERROR
    counts = f"{len(entries)} resources from {args.file} in {len(transactions)} transaction(s)"
    print(f"Imported {counts}: {tally.summary()}")
    return EXIT_OK


def _post(http: Any, path: str, body: dict[str, Any] | str) -> Any:
    """POST a Bundle (JSON) or a search (form); the answer as JSON, or _ImportRefused."""
    import orjson

    from services.referral.domain.directory_import import diagnostics

    if isinstance(body, str):
        form = {"content-type": "application/x-www-form-urlencoded"}
        response = http.post(path, content=body.encode(), headers=form)
    else:
        response = http.post(path, content=orjson.dumps(body))
    try:
        answer = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        answer = {}
    if response.status_code >= 400:
        raise _ImportRefused(f"{response.status_code} {diagnostics(answer) or response.text[:300]}".strip())
    return answer


if __name__ == "__main__":
    sys.exit(main())

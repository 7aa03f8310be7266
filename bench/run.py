"""`make bench`: start a throwaway CareBridge stack, measure it, print a table, write bench/results.json.

Everything is bounded (fixed durations and request counts) and talks only to 127.0.0.1. The
stack gets its own data directory under a temporary directory, free ports and its own Redis key
prefix; it is stopped at the end, on errors and on Ctrl-C. Settings, from the environment:

- ``BENCH_SEARCH_PATIENTS`` (10000): Patients created before the search benchmark.
- ``BENCH_SEED_MAX_S`` (100): give up creating them after this long (the notes say how many).
- ``BENCH_DURATION_S`` (3) and ``BENCH_WARMUP_S`` (1): each measured run.
- ``BENCH_LATENCY_S`` (5): each open-loop latency run (p99 at a fixed rate).
- ``BENCH_KEEP_DATA`` (unset): keep the temporary directory (databases and service logs).
- ``BENCH_ONLY=discharge``: only the discharge-to-care-plan phase; ``BENCH_ONLY=match``: only
  directory matching (bench/match_bench.py); ``BENCH_ONLY=notify``: only subscription
  notification delivery (bench/notify_bench.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import fhir_bench, hl7_bench, match_bench, notify_bench, phases
from bench.fhir_bench import Endpoint
from bench.loadgen import LoadRunner
from bench.phases import Config
from bench.report import Metric, cpu_busy_fraction, format_table, machine_info, write_json
from shared import devstack
from shared.auth import mint_token
from shared.settings import GatewaySettings
from shared.stack import LocalStack

RESULTS = Path(__file__).resolve().parent / "results.json"


def config_from_environment() -> Config:
    env = os.environ.get
    return Config(
        search_patients=int(env("BENCH_SEARCH_PATIENTS", "10000")),
        seed_max_s=float(env("BENCH_SEED_MAX_S", "100")),
        duration_s=float(env("BENCH_DURATION_S", "3")),
        latency_s=float(env("BENCH_LATENCY_S", "5")),
        warmup_s=float(env("BENCH_WARMUP_S", "1")),
        keep_data=bool(env("BENCH_KEEP_DATA")),
    )


# --- wiring --------------------------------------------------------------------------------------

ORDER = (
    "fhir.read.gateway.rps",
    "fhir.read.gateway.p99_ms",
    "fhir.read.direct.rps",
    "fhir.read.bare.rps",
    "fhir.read.gateway.floor_ratio",
    "fhir.create.rps",
    "fhir.search.p50_ms",
    "fhir.search.p99_ms",
    "hl7.mllp.adt.msgs_per_s",
    "hl7.parse.floor.msgs_per_s",
    "hl7.parse.hl7apy.msgs_per_s",
    "hl7.parse.python_hl7.msgs_per_s",
    "hl7.parse.carebridge.msgs_per_s",
    "hl7.mllp.adt.peer_ratio",
    "hl7.ack.p99_ms",
    "careplan.discharge_to_plan.p50_ms",
    "careplan.discharge_to_plan.p99_ms",
    "careplan.discharge_to_plan.at_10_per_s.p50_ms",
    "careplan.discharge_to_plan.at_10_per_s.p99_ms",
    "referral.match.p50_ms",
    "referral.match.p99_ms",
    "referral.match.pure.p50_ms",
    "referral.match.pure.p99_ms",
    "referral.notify.delivered_per_s",
    "referral.notify.p99_ms",
)


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = devstack.free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def stack_cpu_meter(stack: LocalStack) -> Callable[[float], float]:
    """Share of one core the stack's processes (services and broker) use over an interval.

    LocalStack does not expose its process ids, so this reads its private fields; where they or
    /proc are missing it falls back to the whole machine, in cores.
    """

    def pids() -> list[int]:
        processes = [service.process for service in getattr(stack, "_services", [])]
        broker = getattr(stack, "_broker", None)
        if broker is not None and broker.process is not None:
            processes.append(broker.process)
        return [p.pid for p in processes]

    def measure(seconds: float) -> float:
        ids = pids()
        if not ids or not os.path.exists(f"/proc/{ids[0]}/stat"):
            return cpu_busy_fraction(seconds) * (os.cpu_count() or 1)
        before = sum(map(_cpu_seconds, ids))
        time.sleep(seconds)
        return (sum(map(_cpu_seconds, ids)) - before) / seconds

    return measure


@contextlib.contextmanager
def bare_server(target: fhir_bench.ReadTarget, workdir: Path) -> Iterator[Endpoint]:
    """The floor app (bench/bare_app.py) in its own uvicorn process, serving the gateway's bytes."""
    body = workdir / "read-body.json"
    body.write_bytes(target.body)
    port = devstack.free_port()
    env = {
        **os.environ,
        "BENCH_BARE_BODY": str(body),
        "BENCH_BARE_CONTENT_TYPE": target.content_type,
        "BENCH_BARE_ETAG": target.etag,
        "BENCH_BARE_LAST_MODIFIED": target.last_modified,
    }
    server = "bench.bare_app:app --host 127.0.0.1 --loop uvloop --http httptools --workers 1 --no-access-log"
    argv = [sys.executable, "-m", "uvicorn", *server.split(), "--port", str(port), "--log-level", "warning"]
    repo = Path(__file__).resolve().parents[1]
    process = devstack.ManagedProcess.spawn("bare", argv, env=env, log_path=workdir / "bare.log", cwd=repo)
    try:
        devstack.wait_for_port("127.0.0.1", port, proc=process)
        yield Endpoint("127.0.0.1", port, {})
    finally:
        process.stop(5)


def _forget_redis_keys(url: str | None, prefix: str) -> None:
    """The stack may share a Redis that outlives it: remove what this run wrote there."""
    if not url:
        return
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])


def measure(config: Config, workdir: Path) -> dict[str, Metric]:
    run_tag = uuid.uuid4().hex[:8]
    started = time.monotonic()
    messages = hl7_bench.load_adt_messages()
    gw_port, mllp_port, intake_port, careplan_port, referral_port = _distinct_free_ports(5)
    # Environment read by the services LocalStack starts: this run's keys only, easy to remove.
    redis_prefix = f"carebridge-bench-{run_tag}:"
    os.environ["REDIS_KEY_PREFIX"] = redis_prefix
    stack = LocalStack(
        workdir / "data",
        gw_port,
        mllp_port,
        intake_port,
        careplan_port,
        referral_port,
        log_dir=workdir / "logs",
    )
    token = mint_token(GatewaySettings().jwt_hs256_secret, "system/*.cruds", subject="carebridge-bench")
    gateway = Endpoint("127.0.0.1", gw_port, {"Authorization": f"Bearer {token}"})
    intake = Endpoint("127.0.0.1", intake_port, {})
    with LoadRunner() as runner, contextlib.ExitStack() as cleanup:
        b = phases.Bench(
            config,
            runner,
            gateway,
            intake,
            Endpoint("", 0, {}),
            mllp_port,
            run_tag,
            random.Random(7),
            stack_cpu_meter(stack),
            started,
        )
        b.log(f"parsing {len(messages)} ADT corpus messages (no stack running yet)")
        phases.parse_phase(b, messages)
        b.log(f"starting the stack (data and logs in {workdir})")
        stack.start()
        cleanup.callback(stack.stop)
        cleanup.callback(_forget_redis_keys, stack.redis_url, redis_prefix)
        b.log(f"stack ready: {stack.urls.fhir_base}, MLLP {stack.urls.mllp}")
        if os.environ.get("BENCH_ONLY") == "discharge":  # a quick look at one phase
            phases.discharge_phase(b)
            return b.metrics
        target = fhir_bench.create_read_target(gateway, b.rng)
        b.bare = cleanup.enter_context(bare_server(target, workdir))
        if os.environ.get("BENCH_ONLY") == "match":
            match_bench.match_phase(b)
            return b.metrics
        if os.environ.get("BENCH_ONLY") == "notify":
            notify_bench.notify_phase(b)
            return b.metrics
        phases.read_phase(b, target)
        read_baseline = phases.unloaded_read(b, target)
        phases.mllp_phase(b, messages, target)
        phases.create_phase(b)
        phases.search_phase(b, read_baseline)
        phases.discharge_phase(b)
        match_bench.match_phase(b)
        notify_bench.notify_phase(b)
        b.log("stopping the stack")
    return b.metrics


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    config = config_from_environment()
    started = time.monotonic()
    background = cpu_busy_fraction(1.0)
    machine = machine_info(background)
    workdir = Path(tempfile.mkdtemp(prefix="carebridge-bench-"))
    keep = config.keep_data
    try:
        metrics = measure(config, workdir)
    except KeyboardInterrupt:
        print("\ninterrupted; the stack was stopped", file=sys.stderr)
        return 130
    except BaseException:
        keep = True  # the service logs say why
        raise
    finally:
        if keep:
            print(f"data and service logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ordered = [metrics[name] for name in ORDER if name in metrics]
    print()
    print(format_table(ordered))
    print(
        f"\nmachine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"load average {machine['load_average_1m']} at start; run took {time.monotonic() - started:.0f} s"
    )
    write_json(RESULTS, machine, ordered)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The helper scripts the image ships (deploy/image/): topic creation, migrations, health check."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

import shared.events.producer
from shared.events.producer import MAX_REPLICATION_FACTOR
from shared.events.topics import ALL_TOPICS, dlq_of
from shared.settings import SETTINGS_BY_SERVICE
from tests.deploy.support import (
    CREATE_TOPICS,
    ROOT,
    SERVICES,
    FakeAdmin,
    created_topics,
    load_script,
    runtime,
    use_env,
)

IMAGE_TOOLS = ROOT / "deploy" / "image"

# --- create_topics.py ------------------------------------------------------------------------


def test_topic_creation_makes_every_topic_and_its_dead_letter_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    created = created_topics(
        {"KAFKA_TOPIC_PREFIX": "acme.", "KAFKA_TOPIC_PARTITIONS": "9", "GATEWAY_MAX_BODY_BYTES": "4194304"},
        monkeypatch,
    )
    expected = {f"acme.{t}" for t in ALL_TOPICS} | {dlq_of(f"acme.{t}") for t in ALL_TOPICS}
    assert {topic.name for topic in created} == expected
    assert len(created) == len(expected)
    assert {topic.partitions for topic in created} == {9}
    # The largest body any service accepts (here the gateway's 4 MiB), four times over.
    assert {topic.max_message_bytes for topic in created} == {16 * 1024 * 1024}


def test_topic_creation_replicates_three_times_on_a_cluster_and_once_on_one_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert {t.replication_factor for t in created_topics({}, monkeypatch)} == {1}
    monkeypatch.setattr(FakeAdmin, "brokers", 5)
    assert {t.replication_factor for t in created_topics({}, monkeypatch)} == {MAX_REPLICATION_FACTOR}


def test_topic_creation_fails_when_the_broker_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unreachable(FakeAdmin):
        async def start(self) -> None:
            raise KafkaConnectionError("no broker")

    use_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092"}, monkeypatch)
    monkeypatch.setattr(shared.events.producer, "AIOKafkaAdminClient", Unreachable)
    assert load_script(CREATE_TOPICS).main(["--wait", "0"]) == 1
    assert "cannot create topics on kafka.invalid:9092" in capsys.readouterr().err


# --- migrate.py ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_apply_once_and_include_the_services_own(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate = load_script(IMAGE_TOOLS / "migrate.py")
    database_url = f"sqlite+aiosqlite:///{tmp_path / service}.db"
    use_env({f"{service.upper()}_DATABASE_URL": database_url}, monkeypatch)
    applied = await migrate.migrate(service)
    assert ("store", 1) in applied
    own = {(m.component, m.version) for m in runtime(service).extra_migrations}
    assert own <= set(applied)
    assert await migrate.migrate(service) == []


def test_migrate_takes_a_service_name() -> None:
    migrate = load_script(IMAGE_TOOLS / "migrate.py")
    with pytest.raises(SystemExit):
        migrate.main(["billing"])


# --- healthcheck.py --------------------------------------------------------------------------


def test_the_health_check_finds_the_service_from_its_command_line() -> None:
    health = load_script(IMAGE_TOOLS / "healthcheck.py")
    assert health.service_in_command(["python", "-m", "services.referral"]) == "referral"
    assert health.service_in_command(["/opt/venv/bin/python", "-u", "-m", "services.gateway"]) == "gateway"
    assert health.service_in_command(["python", "/opt/carebridge/bin/create_topics.py"]) is None


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alive_but_not_ready() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _fake_proc(root: Path, *commands: list[str]) -> Path:
    for pid, command in enumerate(commands, 1):
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in command) + b"\0")
    return root


def test_the_health_check_asks_the_running_service_on_its_configured_port(
    alive_but_not_ready: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = load_script(IMAGE_TOOLS / "healthcheck.py")
    proc = _fake_proc(tmp_path, ["sh"], ["python", "-m", "services.careplan"])
    use_env({"CAREPLAN_HOST": "0.0.0.0", "CAREPLAN_PORT": str(alive_but_not_ready)}, monkeypatch)
    assert health.main([], proc=proc) == 0
    assert health.main(["--ready"], proc=proc) == 1
    use_env(
        {"CAREPLAN_PORT": str(alive_but_not_ready + 1 if alive_but_not_ready < 65535 else 1)}, monkeypatch
    )
    assert health.main(["--timeout", "1"], proc=proc) == 1


def test_a_container_running_no_service_is_healthy(tmp_path: Path) -> None:
    health = load_script(IMAGE_TOOLS / "healthcheck.py")
    proc = _fake_proc(tmp_path, ["python", "/opt/carebridge/bin/create_topics.py"])
    assert health.main([], proc=proc) == 0


def test_every_service_has_a_settings_class_the_health_check_can_read() -> None:
    health = load_script(IMAGE_TOOLS / "healthcheck.py")
    for service in SETTINGS_BY_SERVICE:
        assert health.probe_url(service, ready=True).endswith("/readyz")

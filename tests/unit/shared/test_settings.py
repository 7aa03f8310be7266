from __future__ import annotations

import pytest

from shared.settings import CareplanSettings, GatewaySettings, IntakeSettings


def test_service_fields_use_the_service_prefix_and_shared_fields_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTAKE_PORT", "9991")
    monkeypatch.setenv("INTAKE_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/1")
    intake, careplan = IntakeSettings(), CareplanSettings()
    assert intake.port == 9991 and careplan.port == 8082
    assert intake.database_url == "sqlite+aiosqlite:///x.db"
    assert intake.kafka_bootstrap_servers == careplan.kafka_bootstrap_servers == "broker:9092"
    assert careplan.redis_url == "redis://r:6379/1"


def test_settings_can_be_built_explicitly_in_tests() -> None:
    s = GatewaySettings(kafka_topic_prefix="t1.", redis_key_prefix="k:", mllp_port=0)
    assert s.topic("carebridge.patient.v1") == "t1.carebridge.patient.v1"
    assert s.redis_key("hl7", "ack") == "k:hl7:ack"
    assert s.mllp_port == 0

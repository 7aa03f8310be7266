"""`carebridge` commands that need no servers: token, help, HL7 file splitting, dlq replay."""

from __future__ import annotations

import csv
import sys
import types
from pathlib import Path
from typing import Any

import jwt
import pytest

from shared import cli
from shared.events.topics import ALL_TOPICS, PATIENT
from shared.mllp import ack_code, control_id, split_messages
from shared.settings import ServiceSettings

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "hl7v2"
SECRET = "test-secret-of-at-least-32-bytes!!"


def corpus_rows() -> list[dict[str, str]]:
    with (CORPUS / "manifest.csv").open(newline="") as manifest:
        return list(csv.DictReader(manifest))


def decode(token: str, secret: str = SECRET) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return claims


# --- token ---------------------------------------------------------------------------------------


def test_token_prints_only_a_jwt_carrying_scope_patient_and_organization(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(
        [
            "token",
            "--scope",
            "patient/*.rs user/CarePlan.rs",
            "--patient",
            "p-1",
            "--organization",
            "org-9",
            "--secret",
            SECRET,
            "--ttl",
            "600",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    claims = decode(out.strip())
    assert claims["scope"] == "patient/*.rs user/CarePlan.rs"
    assert claims["patient"] == "p-1"
    assert claims["organization"] == "org-9"
    assert claims["exp"] - claims["iat"] == 600


def test_token_is_signed_with_the_gateway_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_JWT_HS256_SECRET", SECRET)
    assert cli.main(["token", "--scope", "system/*.cruds"]) == 0
    claims = decode(capsys.readouterr().out.strip())
    assert claims["scope"] == "system/*.cruds"
    assert "patient" not in claims and "organization" not in claims


def test_token_warns_on_stderr_about_scopes_that_are_not_smart(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--scope", "system/*.cruds everything", "--secret", SECRET]) == 0
    captured = capsys.readouterr()
    assert "everything" in captured.err
    assert decode(captured.out.strip())["scope"] == "system/*.cruds everything"


def test_token_without_a_secret_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_JWT_HS256_SECRET", "")
    assert cli.main(["token", "--scope", "system/*.cruds"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "GATEWAY_JWT_HS256_SECRET" in captured.err


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "send-hl7"),
        (["up"], "Ctrl-C"),
        (["token"], "TOKEN=$(carebridge token"),
        (["send-hl7"], "Exit status"),
        (["dlq"], "replay"),
        (["dlq", "replay"], PATIENT),
    ],
)
def test_every_command_explains_itself_in_help(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    assert expected in capsys.readouterr().out


def test_dlq_replay_help_lists_every_topic(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["dlq", "replay", "--help"])
    out = capsys.readouterr().out
    assert all(topic in out for topic in ALL_TOPICS)


def test_up_takes_its_port_defaults_from_the_services_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9180")
    monkeypatch.setenv("GATEWAY_MLLP_PORT", "3575")
    monkeypatch.setenv("REFERRAL_PORT", "9183")
    args = cli.build_parser().parse_args(["up"])
    assert (args.gateway_port, args.mllp_port, args.intake_port, args.referral_port) == (
        9180,
        3575,
        8081,
        9183,
    )


# --- send-hl7: reading files ---------------------------------------------------------------------


@pytest.mark.parametrize("row", corpus_rows(), ids=lambda row: row["file"])
def test_every_corpus_file_reads_as_one_message_with_its_segments(row: dict[str, str]) -> None:
    messages = split_messages((CORPUS / row["file"]).read_bytes())
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith(b"MSH") and message.endswith(b"\r")
    assert b"\n" not in message and b"\xef\xbb\xbf" not in message
    assert [s[:3].decode() for s in message.rstrip(b"\r").split(b"\r")] == row["seg_ids"].split()


def test_a_file_of_several_messages_with_mixed_line_endings_splits_on_msh() -> None:
    files = [
        "microsoft-fhir-converter/ADT_A01/ADT01-23.hl7",  # BOM, LF
        "microsoft-fhir-converter/ADT_A40/ADT-A40-02.hl7",  # LF
        "hl7-v2-to-fhir-ig/samples/Message.hl7_MDM_T02.txt",
    ]  # CRLF
    contents = [(CORPUS / f).read_bytes() for f in files]
    cr_only = split_messages(contents[1])[0]
    messages = split_messages(b"\n\n".join([*contents, cr_only]))
    assert [control_id(m) for m in messages] == [
        control_id(split_messages(c)[0]) for c in [*contents, cr_only]
    ]
    assert messages[1] == messages[3] == cr_only
    assert [m.count(b"\r") for m in messages] == [12, 6, 12, 6]


def test_batch_envelope_segments_are_dropped() -> None:
    batch = b"FHS|^~\\&|X\nBHS|^~\\&|X\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\nPID|1\nBTS|1\nFTS|1\n"
    assert split_messages(batch) == [b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\r"]


def test_a_segment_before_any_msh_is_an_error() -> None:
    with pytest.raises(ValueError, match="'PID' segment comes before any MSH"):
        split_messages(b"PID|1\nMSH|^~\\&|A\n")


def test_send_hl7_refuses_a_file_without_messages_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.hl7"
    empty.write_bytes(b"\n\n")
    assert cli.main(["send-hl7", str(empty), "--port", "9"]) == 2
    assert f"{empty}: no HL7 message" in capsys.readouterr().err


def test_send_hl7_reports_a_missing_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["send-hl7", str(tmp_path / "nope.hl7")]) == 2
    err = capsys.readouterr().err
    assert "nope.hl7" in err and "Traceback" not in err


def test_control_id_and_ack_code_read_msh_10_and_msa_1() -> None:
    ack = b"MSH|^~\\&|CB|CB|A|B|20240101||ACK^A01|ACK1|P|2.5\rMSA|AE|MSG7\rERR|||207|E\r"
    assert control_id(ack) == "ACK1"
    assert ack_code(ack) == "AE"
    assert ack_code(b"MSH|^~\\&|CB\r") is None
    assert control_id(b"MSH|^~\\&|short\r") == ""


# --- dlq replay ----------------------------------------------------------------------------------


@pytest.fixture
def fake_replay(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def replay_dlq(settings: ServiceSettings, topic: str, *, max_records: int | None = None) -> int:
        calls.append({"settings": settings, "topic": topic, "max_records": max_records})
        return 3

    module = types.ModuleType("shared.events.dlq")
    module.replay_dlq = replay_dlq  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shared.events.dlq", module)
    return calls


def test_dlq_replay_replays_the_logical_topic_with_settings_from_the_environment(
    fake_replay: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker.example:9092")
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "staging.")
    assert cli.main(["dlq", "replay", PATIENT, "--max", "10"]) == 0
    [call] = fake_replay
    assert call["topic"] == PATIENT and call["max_records"] == 10
    assert call["settings"].kafka_bootstrap_servers == "broker.example:9092"
    assert "Replayed 3 record(s) from staging.carebridge.patient.v1.dlq" in capsys.readouterr().out


def test_dlq_replay_accepts_the_dead_letter_topic_name_too(fake_replay: list[dict[str, Any]]) -> None:
    assert cli.main(["dlq", "replay", PATIENT + ".dlq"]) == 0
    assert fake_replay[0]["topic"] == PATIENT and fake_replay[0]["max_records"] is None


def test_dlq_replay_of_an_unknown_topic_exits_2_and_names_the_valid_ones(
    fake_replay: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dlq", "replay", "patients"]) == 2
    assert not fake_replay
    assert PATIENT in capsys.readouterr().err

"""HL7 v2 end to end: a real MLLP client nobody here wrote (python-hl7's MLLPClient) sends to the
gateway; the translated resources become readable through /fhir from the services that own them.

Synthetic patients only.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hl7.client
import httpx
import pytest

from services.gateway.hl7 import pipeline as hl7_pipeline
from services.gateway.mllp_server import MLLPServer
from shared.mllp import frame, send_messages
from tests.integration.stack import Stack, eventually
from tests.synthetic import synthetic_person

HOSPITAL = "NORTH HOSP"


def person(mrn: str) -> str:
    """PID-5 to PID-7 of the made-up person behind this MRN: each MRN its own person, so identity
    matching keeps the tests' patients apart (an A40 merges two records a hospital registered)."""
    someone = synthetic_person(mrn)
    return f"{someone.hl7_name}^J||{someone.hl7_birth_date}"


def adt(trigger: str, control_id: str, mrn: str, visit: str, *, pv1_tail: str = "", extra: str = "") -> bytes:
    structure = {"A01": "ADT_A01", "A03": "ADT_A03", "A04": "ADT_A01", "A08": "ADT_A01"}.get(trigger, "")
    segments = [
        f"MSH|^~\\&|EPIC|{HOSPITAL}|CAREBRIDGE|CAREBRIDGE|20261101083000||ADT^{trigger}^{structure}|{control_id}|P|2.5.1",
        f"EVN|{trigger}|20261101083000",
        f"PID|1||{mrn}^^^NORTHMRN^MR||{person(mrn)}|F|||12 MAIN ST^^SPRINGFIELD^IL^62701",
        f"PV1|1|I|PSY^201^A^{HOSPITAL}||||1234^CARE^CASEY^^^DR||||||||||||{visit}^^^NORTHVISIT^VN|||||||||||||||||{pv1_tail}",
    ]
    if extra:
        segments.append(extra)
    return ("\r".join(segments) + "\r").encode()


def a03(control_id: str, mrn: str, visit: str) -> bytes:
    # PV1-36 discharge disposition 01 (home), PV1-44 admit, PV1-45 discharge.
    tail = "01||||||||20261101083000|20261108140000"
    dg1 = "DG1|1||F32.2^Major depressive disorder, single episode, severe^I10||20261101|F|||||||||1"
    return adt("A03", control_id, mrn, visit, pv1_tail=tail, extra=dg1)


def mllp_send(port: int, messages: list[bytes]) -> list[bytes]:
    """python-hl7's MLLP client, one connection, one ACK read per message."""
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        return [client.send_message(m) for m in messages]


def msa(ack: bytes) -> list[str]:
    return next(s for s in ack.decode().split("\r") if s.startswith("MSA")).split("|")


async def search(http: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    response = await http.get(f"/fhir/{path}")
    assert response.status_code == 200, response.text
    return [
        e["resource"]
        for e in response.json().get("entry", [])
        if e.get("search", {}).get("mode") != "include"
    ]


@pytest.fixture
def ids() -> Iterator[Any]:
    """Identifiers never used before (MSH-10 stays within its 20 characters)."""

    def make(kind: str) -> str:
        return f"{kind[0].upper()}{uuid.uuid4().hex[:16]}"

    yield make


async def test_psychiatric_stay_a01_then_a03_leaves_one_finished_encounter(stack: Stack, ids: Any) -> None:
    mrn, visit = ids("mrn"), ids("visit")
    acks = await asyncio.to_thread(
        mllp_send, stack.mllp_port, [adt("A01", ids("msg"), mrn, visit), a03(ids("msg"), mrn, visit)]
    )
    assert [msa(a)[1] for a in acks] == ["AA", "AA"]

    async with stack.client() as http:

        async def finished() -> list[dict[str, Any]]:
            found = await search(http, f"Encounter?identifier={visit}")
            return found if found and found[0]["status"] == "finished" else []

        [encounter] = await eventually(finished)
        assert encounter["class"]["code"] == "IMP"
        assert encounter["period"]["start"].startswith("2026-11-01T08:30:00")
        assert encounter["period"]["end"].startswith("2026-11-08T14:00:00")
        disposition = encounter["hospitalization"]["dischargeDisposition"]["coding"][0]
        assert disposition["code"] == "01"
        [patient] = await search(http, f"Patient?identifier={mrn}")
        assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
        someone = synthetic_person(mrn)
        assert patient["name"][0]["family"] == someone.family.upper()
        assert patient["birthDate"] == someone.birth_date.isoformat()
        conditions = await eventually(lambda: search(http, f"Condition?subject=Patient/{patient['id']}"))
        assert conditions[0]["code"]["coding"][0]["code"] == "F32.2"


async def test_a_resent_message_gets_the_same_ack_and_changes_nothing(stack: Stack, ids: Any) -> None:
    mrn, visit = ids("mrn"), ids("visit")
    message = adt("A01", ids("msg"), mrn, visit)
    [first] = await asyncio.to_thread(mllp_send, stack.mllp_port, [message])
    async with stack.client() as http:
        [patient] = await eventually(lambda: search(http, f"Patient?identifier={mrn}"))
        [encounter] = await eventually(lambda: search(http, f"Encounter?identifier={visit}"))
        again = await asyncio.to_thread(mllp_send, stack.mllp_port, [message, message])
        assert again == [first, first]
        # Same facts under another control id: an update that changes nothing is not written.
        [other] = await asyncio.to_thread(mllp_send, stack.mllp_port, [adt("A01", ids("msg"), mrn, visit)])
        assert msa(other)[1] == "AA"
        await asyncio.sleep(1.0)
        [patient_after] = await search(http, f"Patient?identifier={mrn}")
        [encounter_after] = await search(http, f"Encounter?identifier={visit}")
    assert patient_after["meta"]["versionId"] == patient["meta"]["versionId"]
    assert encounter_after["meta"]["versionId"] == encounter["meta"]["versionId"]


async def test_a40_merges_two_patients(stack: Stack, ids: Any) -> None:
    survivor, duplicate = ids("mrn"), ids("mrn")
    merge = (
        f"MSH|^~\\&|EPIC|{HOSPITAL}|CB|CB|20261101090000||ADT^A40^ADT_A39|{ids('msg')}|P|2.5.1\r"
        f"EVN|A40|20261101090000\r"
        f"PID|1||{survivor}^^^NORTHMRN^MR||{person(survivor)}|F\r"
        f"MRG|{duplicate}^^^NORTHMRN^MR\r"
    ).encode()
    acks = await asyncio.to_thread(
        mllp_send,
        stack.mllp_port,
        [
            adt("A04", ids("msg"), survivor, ids("visit")),
            adt("A04", ids("msg"), duplicate, ids("visit")),
            merge,
        ],
    )
    assert [msa(a)[1] for a in acks] == ["AA", "AA", "AA"]
    async with stack.client() as http:

        async def merged() -> dict[str, Any] | None:
            found = await search(http, f"Patient?identifier={duplicate}")
            return found[0] if found and found[0].get("active") is False else None

        old = await eventually(merged)
        [kept] = await search(http, f"Patient?identifier={survivor}")
        assert old["link"] == [{"other": {"reference": f"Patient/{kept['id']}"}, "type": "replaced-by"}]
        assert {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"} in kept["link"]

        # The duplicate's encounter now belongs to the survivor.
        async def both_encounters() -> list[dict[str, Any]]:
            found = await search(http, f"Encounter?subject=Patient/{kept['id']}")
            return found if len(found) == 2 else []

        assert await eventually(both_encounters)


async def test_a_batch_over_http_gets_its_acks_in_a_batch(stack: Stack, ids: Any) -> None:
    first, second = ids("msg"), ids("msg")
    body = (
        b"BHS|^~\\&|EPIC|NORTH HOSP|||20261101||||B-" + first.encode() + b"\r"
        + adt("A04", first, ids("mrn"), ids("visit"))
        + adt("A04", second, ids("mrn"), ids("visit"))
        + b"BTS|2\r"
    )  # fmt: skip
    async with stack.client() as http:
        response = await http.post(
            "/hl7v2", content=body, headers={"content-type": "x-application/hl7-v2+er7"}
        )
    assert response.status_code == 200
    segments = response.content.decode().strip("\r").split("\r")
    assert segments[0].startswith("BHS") and segments[0].split("|")[11] == f"B-{first}"
    assert [s.split("|")[1:3] for s in segments if s.startswith("MSA")] == [["AA", first], ["AA", second]]
    assert segments[-1] == "BTS|2"


async def test_unsupported_message_type_is_refused_with_ar_and_kept(stack: Stack, ids: Any) -> None:
    control = ids("msg")
    message = (
        f"MSH|^~\\&|DOCS|{HOSPITAL}|CB|CB|20261101||MDM^T02^MDM_T02|{control}|P|2.5.1\rPID|1||X1\r".encode()
    )
    [ack] = await send_messages("127.0.0.1", stack.mllp_port, [message])
    assert msa(ack)[1:3] == ["AR", control]
    assert "|200^Unsupported message type^HL70357|" in ack.decode()
    async with stack.client() as http:
        listed = (await http.get("/hl7v2/messages?status=rejected&_count=500")).json()["messages"]
    assert any(m["controlId"] == control and m["messageType"] == "MDM^T02" for m in listed)


async def test_a_message_that_fails_is_kept_listed_and_reprocessed(
    stack: Stack, ids: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hl7_pipeline.translate

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a mapping bug")

    monkeypatch.setattr(hl7_pipeline, "translate", broken)
    mrn, control = ids("mrn"), ids("msg")
    [ack] = await send_messages("127.0.0.1", stack.mllp_port, [adt("A04", control, mrn, ids("visit"))])
    assert msa(ack)[1] == "AE" and "|207^Application internal error^HL70357|" in ack.decode()
    [resent] = await send_messages("127.0.0.1", stack.mllp_port, [adt("A04", control, mrn, ids("visit"))])
    assert msa(resent)[1] == "AE"  # the same message again: the first answer, no second row

    async with stack.client() as http:
        errors = (await http.get("/hl7v2/messages?status=error&_count=500")).json()["messages"]
        [failed] = [m for m in errors if m["controlId"] == control]
        assert "KeyError" in failed["error"] and failed["report"] is None

        monkeypatch.setattr(hl7_pipeline, "translate", real)  # the fix is deployed
        response = await http.post(f"/hl7v2/messages/{failed['id']}/$reprocess")
        assert response.status_code == 200 and response.json()["status"] == "processed"
        again = await http.post(f"/hl7v2/messages/{failed['id']}/$reprocess")
        assert again.status_code == 409

        shown = (await http.get(f"/hl7v2/messages/{failed['id']}")).json()
        assert shown["status"] == "processed" and shown["attempts"] == 2
        assert {p["resourceType"] for p in shown["report"]["produced"]} >= {"Patient", "Encounter"}
        pid = next(s for s in shown["report"]["segments"] if s["segment"] == "PID")
        assert "PID-3" in pid["mapped"] and "raw" not in shown
        assert (
            (await http.get(f"/hl7v2/messages/{failed['id']}?_include=raw")).json()["raw"].startswith("MSH")
        )
        await eventually(lambda: search(http, f"Patient?identifier={mrn}"))
        [resent] = await send_messages("127.0.0.1", stack.mllp_port, [adt("A04", control, mrn, ids("visit"))])
        assert msa(resent)[1] == "AA"  # a resend now gets the ACK of the successful processing


async def test_archive_api_needs_hl7v2_scopes(stack: Stack) -> None:
    from shared.auth import mint_token

    reader = mint_token(stack.settings.jwt_hs256_secret, "system/Patient.rs")
    async with httpx.AsyncClient(
        base_url=stack.gateway.url, headers={"Authorization": f"Bearer {reader}"}
    ) as http:
        listed = await http.get("/hl7v2/messages")
        sent = await http.post(
            "/hl7v2", content=adt("A04", "x", "y", "z"), headers={"content-type": "x-application/hl7-v2+er7"}
        )
    assert listed.status_code == 403 and sent.status_code == 403
    assert listed.json()["resourceType"] == "OperationOutcome"


async def test_what_is_not_mllp_is_answered_and_closed_and_the_listener_lives_on(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.mllp_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"\x0bMSH") and b"MSA|AR|" in answer and b"Not MLLP" in answer
    [ack] = await send_messages("127.0.0.1", stack.mllp_port, [b"PID|1\r"])
    assert msa(ack)[1] == "AR"


async def test_idle_connections_are_closed_and_tls_is_served(stack: Stack, tmp_path: Path) -> None:
    certfile, keyfile = self_signed_certificate(tmp_path)
    settings = stack.settings.model_copy(
        update={"mllp_idle_timeout_s": 0.3, "mllp_tls_certfile": certfile, "mllp_tls_keyfile": keyfile}
    )
    server = MLLPServer(stack.gateway.app.state.gateway.pipeline, settings)
    await server.start()
    try:
        client_tls = ssl.create_default_context(cafile=certfile)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client_tls, server_hostname="localhost"
        )
        writer.write(frame(b"PID|1\r"))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
        assert b"MSA|AR|" in ack
        # Then silence: the server closes the connection after the idle timeout.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await server.stop()


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "mllp.crt", directory / "mllp.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certfile), str(keyfile)


async def test_a_result_after_discharge_does_not_reopen_the_stay(stack: Stack, ids: Any) -> None:
    mrn, visit = ids("mrn"), ids("visit")
    oru = (
        f"MSH|^~\\&|LAB|{HOSPITAL}|CB|CB|20261109090000||ORU^R01^ORU_R01|{ids('msg')}|P|2.5.1\r"
        f"PID|1||{mrn}^^^NORTHMRN^MR||{person(mrn)}|F\r"
        f"PV1|1|I|PSY^201^A||||||||||||||||{visit}^^^NORTHVISIT^VN\r"
        f"OBR|1|{ids('ord')}^LAB|{ids('fil')}^LAB|2345-7^Glucose^LN|||20261109080000\r"
        "OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|70-99|N|||F|||20261109080000\r"
    ).encode()
    acks = await asyncio.to_thread(
        mllp_send, stack.mllp_port, [adt("A01", ids("msg"), mrn, visit), a03(ids("msg"), mrn, visit), oru]
    )
    assert [msa(a)[1] for a in acks] == ["AA", "AA", "AA"]
    async with stack.client() as http:
        [patient] = await eventually(lambda: search(http, f"Patient?identifier={mrn}"))
        [glucose] = await eventually(lambda: search(http, f"Observation?subject=Patient/{patient['id']}"))
        assert glucose["valueQuantity"]["value"] == 95 and glucose["valueQuantity"]["code"] == "mg/dL"
        [encounter] = await search(http, f"Encounter?identifier={visit}")
    assert encounter["status"] == "finished" and "end" in encounter["period"]
    assert glucose["encounter"]["reference"] == f"Encounter/{encounter['id']}"


async def test_carebridge_hl7_lists_and_reprocesses(
    stack: Stack, ids: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared import cli

    monkeypatch.setenv("GATEWAY_URL", stack.gateway.url)
    monkeypatch.setenv("CAREBRIDGE_TOKEN", stack.token)
    control = ids("msg")
    no_patient_id = f"MSH|^~\\&|EPIC|{HOSPITAL}|CB|CB|20261101||ADT^A04^ADT_A01|{control}|P|2.5.1\rPID|1\r"
    [ack] = await send_messages("127.0.0.1", stack.mllp_port, [no_patient_id.encode()])
    assert msa(ack)[1] == "AE" and "|100^Segment sequence error^HL70357|" in ack.decode()
    assert await asyncio.to_thread(cli.main, ["hl7", "list", "--status", "error", "--max", "500"]) == 0
    # Newest first: the message just sent, with its error.
    listed = [line for line in capsys.readouterr().out.splitlines() if "patient identifier (PID-3)" in line]
    assert listed and "ADT^A04" in listed[0]
    message_id = listed[0].split()[0]
    # Still failing (the message itself lacks PID-3): exit status 1, the row stays in error.
    assert await asyncio.to_thread(cli.main, ["hl7", "reprocess", message_id]) == 1
    assert f"{message_id}  error" in capsys.readouterr().out


async def test_bad_requests_to_the_hl7_endpoints_get_an_operation_outcome(stack: Stack) -> None:
    er7 = {"content-type": "x-application/hl7-v2+er7"}
    async with stack.client() as http:
        answers = {
            "not HL7": await http.post("/hl7v2", content=b"hello", headers=er7),
            "wrong media type": await http.post(
                "/hl7v2", content=b"MSH|^~\\&|A\r", headers={"content-type": "application/json"}
            ),
            "too large": await http.post(
                "/hl7v2", content=b"MSH|" + b"x" * (stack.settings.max_hl7_bytes + 1), headers=er7
            ),
            "unknown status": await http.get("/hl7v2/messages?status=lost"),
            "bad cursor": await http.get("/hl7v2/messages?cursor=%25%25"),
            "unknown message": await http.get(f"/hl7v2/messages/{uuid.uuid4()}"),
            "reprocess unknown": await http.post(f"/hl7v2/messages/{uuid.uuid4()}/$reprocess"),
        }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "not HL7": 400,
        "wrong media type": 415,
        "too large": 413,
        "unknown status": 400,
        "bad cursor": 400,
        "unknown message": 404,
        "reprocess unknown": 404,
    }
    for response in answers.values():
        body = response.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]

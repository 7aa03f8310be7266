"""HL7 v2 at the gateway over MLLP and HTTP: ACK after the archive commit, resends answered with
the first ACK and no second row, unacceptable messages refused with AR + ERR and kept."""

from __future__ import annotations

import sqlalchemy as sa

from services.gateway.archive import hl7_messages
from shared.mllp import send_messages
from tests.corpus import hl7_messages_of_type
from tests.integration.stack import Stack

ADT = [m for m in hl7_messages_of_type("ADT^A0") if not m.has_bom][:5]


def msa(ack: bytes) -> list[str]:
    return next(s for s in ack.decode().split("\r") if s.startswith("MSA")).split("|")


async def archived(stack: Stack, **where: str) -> list[sa.Row]:  # type: ignore[type-arg]
    query = sa.select(hl7_messages).where(*(hl7_messages.c[k] == v for k, v in where.items()))
    async with stack.gateway.runtime.store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


def with_control_id(raw: bytes, control_id: str) -> bytes:
    fields = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r", 1)[0].split(b"|")
    fields[9] = control_id.encode()
    return b"|".join(fields) + b"\r" + raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r", 1)[1]


async def test_corpus_adt_messages_are_acknowledged_aa_over_mllp(stack: Stack, run_id: str) -> None:
    messages = [with_control_id(m.path.read_bytes(), f"{run_id}-mllp-{i}") for i, m in enumerate(ADT)]
    acks = await send_messages("127.0.0.1", stack.mllp_port, messages)
    assert [msa(a)[1] for a in acks] == ["AA"] * len(messages)
    for i, ack in enumerate(acks):
        assert msa(ack)[2] == f"{run_id}-mllp-{i}"
        rows = await archived(stack, control_id=f"{run_id}-mllp-{i}")
        assert len(rows) == 1 and rows[0].status == "processed"


async def test_resent_message_gets_the_same_ack_and_no_second_row(stack: Stack, run_id: str) -> None:
    message = with_control_id(ADT[0].path.read_bytes(), f"{run_id}-dup")
    first = await send_messages("127.0.0.1", stack.mllp_port, [message])
    again = await send_messages("127.0.0.1", stack.mllp_port, [message, message])
    assert again == first * 2
    assert len(await archived(stack, control_id=f"{run_id}-dup")) == 1


async def test_duplicate_is_caught_by_the_database_when_redis_forgot_it(stack: Stack, run_id: str) -> None:
    message = with_control_id(ADT[1].path.read_bytes(), f"{run_id}-noredis")
    first = await send_messages("127.0.0.1", stack.mllp_port, [message])
    await stack.gateway.runtime.redis.delete(
        *await stack.gateway.runtime.redis.keys(f"{stack.settings.redis_key_prefix}*noredis*")
    )
    again = await send_messages("127.0.0.1", stack.mllp_port, [message])
    assert again == first
    assert len(await archived(stack, control_id=f"{run_id}-noredis")) == 1


async def test_message_without_msh_gets_ar_with_err_and_is_kept(stack: Stack) -> None:
    [ack] = await send_messages("127.0.0.1", stack.mllp_port, [b"PID|1||SYNTH-404^^^HOSP^MR\r"])
    assert msa(ack)[1] == "AR"
    err = next(s for s in ack.decode().split("\r") if s.startswith("ERR")).split("|")
    assert err[3].startswith("100^")
    rejected = await archived(stack, status="rejected")
    assert any(r.raw == b"PID|1||SYNTH-404^^^HOSP^MR\r" for r in rejected)


async def test_hl7_over_http_needs_a_token_and_returns_the_ack(stack: Stack, run_id: str) -> None:
    message = with_control_id(ADT[2].path.read_bytes(), f"{run_id}-http")
    async with stack.client() as http:
        response = await http.post(
            "/hl7v2", content=message, headers={"Content-Type": "x-application/hl7-v2+er7"}
        )
        unauthenticated = await http.post(
            "/hl7v2",
            content=message,
            headers={"Content-Type": "x-application/hl7-v2+er7", "Authorization": ""},
        )
    assert response.status_code == 200
    assert msa(response.content)[1:3] == ["AA", f"{run_id}-http"]
    assert unauthenticated.status_code == 401

"""The room end to end over a real websocket: membership, channels, resume, idempotent retry."""

import httpx

from tests.helpers import Backend, World
from tests.sessions.helpers import in_room, live_case, serving


async def test_joint_message_reaches_everyone_and_caucus_only_its_side(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        ack = await borrower.say("您好，我想分期还款")
        assert ack["type"] == "ack", ack
        for peer in (borrower, bank, mediator):
            got = await peer.expect(lambda f: f.get("seq") == ack["seq"])
            assert got["body"] == "您好，我想分期还款"
        secret = await borrower.say("我最多每月还两千", channel="caucus:borrower")
        assert secret["type"] == "ack"
        got = await mediator.expect(lambda f: f.get("seq") == secret["seq"])
        assert got["channel"] == "caucus:borrower"
        await bank.quiet()
        assert all(f.get("seq") != secret["seq"] for f in bank.frames)
        assert all("两千" not in str(f) for f in bank.frames)

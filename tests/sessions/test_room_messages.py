"""Messages in the room: caucus isolation live and in history, resume, retries, conduct, limits."""

import asyncio
import contextlib
import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.errors import AppError, Conflict
from app.sessions import service, writer
from app.sessions.models import Message, Room
from app.sessions.rules import Side
from tests.helpers import Actor, Backend, World
from tests.sessions.helpers import (
    Peer,
    in_room,
    joined,
    joint_text,
    live_case,
    scheduled_case,
    serving,
)


async def _history(client: httpx.AsyncClient, case_id: str, who: Actor, since: int = 0) -> Any:
    r = await client.get(f"/api/v1/cases/{case_id}/messages?since={since}", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()


def _bodies(frames: list[dict[str, Any]]) -> list[str]:
    return [f["body"] for f in frames if f.get("kind") == "text" and f.get("body")]


async def test_caucus_never_reaches_the_other_side_live_or_in_history(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        assert (await borrower.say("借款人私下：最多月还两千", "caucus:borrower"))["type"] == "ack"
        assert (await bank.say("银行私下：可减免全部利息", "caucus:bank"))["type"] == "ack"
        assert (await mediator.say("调解员对借款人说", "caucus:borrower"))["type"] == "ack"
        # A party cannot write into the other side's caucus, nor read it by typing there.
        refused = await bank.say("偷看", "caucus:borrower")
        assert refused["code"] == "channel_forbidden"
        assert (await borrower.say("大家好"))["type"] == "ack"
        await bank.send({"type": "typing", "channel": "caucus:bank"})
        for peer in (borrower, bank, mediator):
            await peer.expect(lambda f: f.get("body") == "大家好")
        await borrower.quiet(0.3)
        await bank.quiet(0.3)
        assert _bodies(borrower.messages()) == ["借款人私下：最多月还两千", "调解员对借款人说"]
        assert _bodies(bank.messages()) == ["银行私下：可减免全部利息"]
        assert not [f for f in borrower.frames if f.get("type") == "typing"]
    everything = {
        "借款人私下：最多月还两千",
        "银行私下：可减免全部利息",
        "调解员对借款人说",
        "大家好",
    }
    seen_by = {
        who: set(_bodies(await _history(client, case_id, actor)))
        for who, actor in (
            ("borrower", world.alice),
            ("bank", world.bank_demo),
            ("mediator", world.mediator),
        )
    }
    assert seen_by["mediator"] == everything
    assert seen_by["borrower"] == {"借款人私下：最多月还两千", "调解员对借款人说", "大家好"}
    assert seen_by["bank"] == {"银行私下：可减免全部利息", "大家好"}
    # Another officer of the bank reads the bank's caucus, not the borrower's.
    assert set(_bodies(await _history(client, case_id, world.bank_demo2))) == seen_by["bank"]
    for outsider in (world.bob, world.bank_east, world.mediator_other):
        r = await client.get(f"/api/v1/cases/{case_id}/messages", headers=outsider.headers)
        assert r.status_code == 404


async def test_history_is_in_order_and_pages_by_seq(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, joined(host, case_id, world.alice) as borrower:
        for n in range(4):
            assert (await borrower.say(f"第{n}条"))["type"] == "ack"
            await asyncio.sleep(0.21)  # under the rate limit
    page = await _history(client, case_id, world.alice)
    seqs = [m["seq"] for m in page]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    later = await _history(client, case_id, world.alice, since=seqs[2])
    assert [m["seq"] for m in later] == seqs[3:]
    for since in ("-1", str(2**63), "9" * 30):  # past 64 bits no database compares: still a 422
        r = await client.get(
            f"/api/v1/cases/{case_id}/messages?since={since}", headers=world.alice.headers
        )
        assert r.status_code == 422, (since, r.text)
        assert r.json()["code"] == "invalid_input"
    last = await _history(client, case_id, world.alice, since=2**63 - 1)
    assert last == []


async def test_reconnect_resumes_with_nothing_lost_and_nothing_doubled(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, joined(host, case_id, world.bank_demo) as bank:
        async with joined(host, case_id, world.alice) as borrower:
            first = await bank.say("第一条")
            await borrower.expect(lambda f: f.get("seq") == first["seq"])
            last_seen = first["seq"]
        missed = []
        for n in range(3):
            ack = await bank.say(f"错过的第{n}条")
            missed.append(ack["seq"])
            await asyncio.sleep(0.21)
        async with joined(host, case_id, world.alice, after=last_seen) as borrower:
            after_resume = await bank.say("恢复之后")
            await borrower.expect(lambda f: f.get("seq") == after_resume["seq"])
            texts = [m for m in borrower.messages() if m["kind"] == "text"]
            assert [m["body"] for m in texts] == ["错过的第0条", "错过的第1条", "错过的第2条"]
            seqs = [m["seq"] for m in borrower.messages()]
            assert seqs == sorted(set(seqs)) and min(seqs) > last_seen


async def test_a_client_that_claims_more_than_the_room_holds_gets_what_comes_next(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """A resume `after` a seq the room never reached (a client's bug, or a room restored from a
    backup) is taken as the room's newest: nothing is replayed, and later messages arrive."""
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, joined(host, case_id, world.bank_demo) as bank:
        assert (await bank.say("之前"))["type"] == "ack"
        async with joined(host, case_id, world.alice, after=None) as borrower:
            await borrower.send({"type": "resume", "after": 10**6})
            resumed = await borrower.expect(lambda f: f["type"] == "resumed")
            assert resumed["last_seq"] == borrower.welcome["last_seq"]  # type: ignore[attr-defined]
            later = await bank.say("之后")
            delivered = await borrower.expect(lambda f: f.get("seq") == later["seq"])
            assert delivered["body"] == "之后"
            assert [m["body"] for m in borrower.messages()] == []  # nothing replayed before it


async def test_a_retried_message_is_stored_once_and_acked_with_the_same_seq(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host:
        async with joined(host, case_id, world.alice) as borrower:
            first = await borrower.say("只发一次", cid="retry-1")
        # The ack was lost with the connection; the client sends again after reconnecting.
        async with joined(host, case_id, world.alice) as borrower:
            again = await borrower.say("只发一次", cid="retry-1")
            # Two connections of the same person racing the same id also store it once.
            await asyncio.gather(
                borrower.send(
                    {"type": "send", "client_msg_id": "race", "channel": "joint", "text": "x"}
                ),
                borrower.send(
                    {"type": "send", "client_msg_id": "race", "channel": "joint", "text": "x"}
                ),
            )
            acks = [await borrower.reply("race"), await borrower.reply("race")]
    assert first["type"] == again["type"] == "ack"
    assert again["seq"] == first["seq"] and again["duplicate"] is True and not first["duplicate"]
    assert {a["seq"] for a in acks} == {acks[0]["seq"]}
    assert sorted(a["duplicate"] for a in acks) == [False, True]
    async with env.session() as s:
        stored = await s.scalar(
            select(func.count()).select_from(Message).where(Message.client_msg_id == "retry-1")
        )
    assert stored == 1


async def test_threats_from_the_bank_are_held_for_the_mediator(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        held = await bank.say("再不还钱就让你坐 牢，还要起诉你家人")
        assert held["type"] == "ack" and held["state"] == "held"
        flagged = await mediator.expect(lambda f: f.get("seq") == held["seq"])
        assert flagged["state"] == "held" and "坐牢" in flagged["flagged"]
        own = await bank.expect(lambda f: f.get("seq") == held["seq"])
        assert own["state"] == "held" and "flagged" not in own
        fine = await bank.say("我们可以减免全部利息")
        assert fine["state"] == "delivered"
        await borrower.expect(lambda f: f.get("seq") == fine["seq"])
        assert all(f.get("seq") != held["seq"] for f in borrower.frames)
        assert (await mediator.act("remove", seq=held["seq"]))["code"] == "message_held"
        # The borrower's own words are not filtered (they may quote what they were told).
        assert (await borrower.say("他们说要让我坐牢"))["state"] == "delivered"
    history = await _history(client, case_id, world.alice)
    assert all("坐 牢" not in (m.get("body") or "") for m in history)
    assert held["seq"] not in [m["seq"] for m in history]


async def test_mediator_releases_a_message_held_by_mistake(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        # A reassurance the word list cannot tell from a threat.
        held = await bank.say("请放心，我们不会把您列入黑名单")
        assert held["state"] == "held"
        assert (await bank.act("release", seq=held["seq"]))["code"] == "mediator_only"
        assert (await mediator.act("release", seq=held["seq"]))["type"] == "ack"
        released = await borrower.expect(lambda f: f.get("kind") == "released")
        assert released["payload"]["target_seq"] == held["seq"]
        original = released["payload"]["message"]
        assert original["body"] == "请放心，我们不会把您列入黑名单"
        assert original["sender"]["side"] == "bank" and "flagged" not in original
        await mediator.expect(lambda f: f.get("kind") == "released")
        assert (await mediator.act("release", seq=held["seq"]))["code"] == "not_held"
    history = {m["seq"]: m for m in await _history(client, case_id, world.alice)}
    assert history[held["seq"]]["state"] == "delivered"
    assert history[held["seq"]]["body"] == "请放心，我们不会把您列入黑名单"
    as_mediator = {m["seq"]: m for m in await _history(client, case_id, world.mediator)}
    assert as_mediator[held["seq"]]["flagged"]


async def test_mediator_mutes_a_party_and_removes_a_message(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, bank, mediator),
    ):
        rude = await borrower.say("你们都是吸血鬼")
        assert (await mediator.act("remove", seq=rude["seq"]))["type"] == "ack"
        marker = await bank.expect(lambda f: f.get("kind") == "removed")
        assert marker["payload"] == {"target_seq": rude["seq"]}
        assert (await bank.act("remove", seq=rude["seq"]))["code"] == "mediator_only"

        assert (await mediator.act("mute", party="bank", minutes=5))["type"] == "ack"
        notice = await borrower.expect(lambda f: (f.get("payload") or {}).get("event") == "muted")
        assert notice["payload"]["party"] == "bank" and notice["payload"]["until"]
        refused = await bank.say("请听我说")
        assert refused["type"] == "error" and refused["code"] == "muted"
        # The caucus with the mediator stays open to a muted side.
        assert (await bank.say("私下说明情况", "caucus:bank"))["type"] == "ack"
        assert (await mediator.act("mute", party="bank", minutes=0))["type"] == "ack"
        assert (await bank.say("谢谢"))["type"] == "ack"
        for bad in ({"party": "judge", "minutes": 5}, {"party": "bank", "minutes": 600}):
            assert (await mediator.act("mute", **bad))["type"] == "error"
        # A seq past 64 bits names no message (the databases cannot even compare with it).
        await asyncio.sleep(1)  # the rate limit's window starts over
        for seq, code in (
            (2**63, "message_not_found"),
            (2**64 - 1, "message_not_found"),
            (-(2**63) - 1, "invalid_seq"),  # parsed as a float: not a whole number
        ):
            for tool in ("remove", "release"):
                await asyncio.sleep(0.21)  # under the rate limit
                refused = await mediator.act(tool, seq=seq)
                assert refused["code"] == code, (tool, seq, refused)
    as_borrower = {m["seq"]: m for m in await _history(client, case_id, world.alice)}
    assert as_borrower[rude["seq"]]["state"] == "removed"
    assert as_borrower[rude["seq"]]["body"] is None
    as_mediator = {m["seq"]: m for m in await _history(client, case_id, world.mediator)}
    assert as_mediator[rude["seq"]]["body"] == "你们都是吸血鬼"


async def test_a_fault_in_an_action_is_answered_and_the_room_goes_on(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug of ours while doing an action: the sender is told, nothing is changed, and the
    connection stays open for what follows."""
    case_id = await live_case(client, env, world)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the remove tool")

    async with (
        serving(env.app) as host,
        in_room(host, case_id, world) as (borrower, _bank, mediator),
    ):
        said = await borrower.say("这句话留着")
        monkeypatch.setattr(service, "remove", broken)
        refused = await mediator.act("remove", seq=said["seq"])
        assert refused["code"] == "internal_error"
        assert "nothing was changed" in refused["detail"]
        monkeypatch.undo()
        await mediator.send({"type": "ping"})
        await mediator.expect(lambda f: f["type"] == "pong")
        assert (await mediator.say("继续"))["type"] == "ack"
    assert [r.getMessage() for r in caplog.records if r.name == "hejie.sessions"] == [
        "room action 'remove' failed"
    ]
    history = {m["seq"]: m for m in await _history(client, case_id, world.alice)}
    assert history[said["seq"]]["state"] == "delivered"
    assert history[said["seq"]]["body"] == "这句话留着"
    assert not [m for m in history.values() if m["kind"] == "removed"]


async def test_rate_limit_size_cap_and_malformed_frames(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, joined(host, case_id, world.alice) as borrower:
        answers = []
        for n in range(6):
            await borrower.send(
                {"type": "send", "client_msg_id": f"burst-{n}", "channel": "joint", "text": "急"}
            )
        for n in range(6):
            answers.append(await borrower.reply(f"burst-{n}"))
        assert [a["type"] for a in answers[:5]] == ["ack"] * 5
        assert answers[5]["code"] == "rate_limited" and answers[5]["retry_after"] > 0
        await asyncio.sleep(1.05)
        too_long = await borrower.say("长" * 4001)
        assert too_long["code"] == "text_too_long"
        assert (await borrower.say("长" * 4000))["type"] == "ack"
        await asyncio.sleep(0.3)
        for raw, code in (
            ("not json", "malformed"),
            ("[1, 2]", "malformed"),
            ('{"no": "type"}', "malformed"),
            ('{"type": "explode"}', "unknown_type"),
            ('{"type": "resume", "after": "x"}', "malformed"),
            ('{"type": "send", "channel": "joint", "text": "no id"}', "malformed"),
            (
                json.dumps({"type": "send", "client_msg_id": "z", "text": "x" * 40_000}),
                "frame_too_large",
            ),
        ):
            await borrower.ws.send(raw)
            error = await borrower.expect(lambda f: f.get("type") == "error")
            assert error["code"] == code, (raw[:40], error)
        await borrower.ws.send(b"\x00\x01binary")
        assert (await borrower.expect(lambda f: f.get("type") == "error"))["code"] == "malformed"
        for text, code in (("", "empty_text"), ("   ", "empty_text"), ("a\x00b", "invalid_text")):
            assert (await borrower.say(text))["code"] == code
        # Still connected and served after all that.
        await borrower.send({"type": "ping"})
        await borrower.expect(lambda f: f.get("type") == "pong")


async def test_actions_wait_for_resume(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await live_case(client, env, world)
    async with serving(env.app) as host, joined(host, case_id, world.alice, after=None) as peer:
        assert isinstance(peer, Peer)
        refused = await peer.say("太早了")
        assert refused["code"] == "resume_first"


async def test_text_messages_stored_together_are_refused_one_by_one(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """The writer commits queued messages as one group (on either backend): a refusal inside the
    group (a retried client_msg_id, a muted sender, a case not in session) rolls back that message
    alone, and the seq it had claimed goes to the next."""
    live = await live_case(client, env, world)
    waiting = await scheduled_case(client, env, world, who=world.bob)
    hub = env.app.state.hub
    borrower = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    stranger = service.Member(world.bob.user_id, Side.BORROWER, "Bob")

    def draft(case_id: str, who: service.Member, msg_id: str) -> service.TextDraft:
        return service.draft_text(
            case_id=case_id, who=who, channel="joint", text=f"文字 {msg_id}", client_msg_id=msg_id
        )

    first = await hub.store(draft(live, borrower, "m-1"))
    officer = service.Member(world.bank_demo.user_id, Side.BANK, "Officer")
    async with env.session() as s, s.begin():
        room = await s.get(Room, live)
        assert room is not None
        room.bank_muted_until = utcnow() + timedelta(minutes=5)
    groups_before = hub.writer.groups
    outcomes = await asyncio.gather(
        hub.store(draft(live, borrower, "m-2")),
        hub.store(draft(live, borrower, "m-1")),  # a retry of a stored message
        hub.store(draft(live, officer, "b-1")),  # muted in the joint channel
        hub.store(draft(waiting, stranger, "m-3")),  # its session has not started
        hub.store(draft(live, borrower, "m-4")),
        return_exceptions=True,
    )
    assert hub.writer.groups == groups_before + 1  # the five shared one transaction
    stored, retry, muted, not_started, last = outcomes
    assert isinstance(retry, IntegrityError)
    assert isinstance(muted, AppError) and muted.code == "muted"
    assert isinstance(not_started, Conflict) and not_started.code == "session_not_in_progress"
    assert isinstance(stored, dict) and isinstance(last, dict)
    assert first["seq"] == 2  # 1 is 'started'
    # One group keeps the order the messages were queued in.
    assert [stored["seq"], last["seq"]] == [3, 4]
    async with env.session() as s:
        rows = await s.execute(
            select(Message.client_msg_id, Message.seq)
            .where(Message.kind == "text")
            .order_by(Message.seq)
        )
        assert rows.all() == sorted(
            [("m-1", 2), ("m-2", stored["seq"]), ("m-4", last["seq"])], key=lambda r: r[1]
        )
        assert await s.scalar(select(Room.last_seq).where(Room.case_id == live)) == 4


async def test_presence_is_stored_from_the_waiting_room_on_and_shares_the_texts_group(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """A join makes the room when it is the first message (the waiting room), takes the next seq
    in a live one, in the same transaction as the texts queued with it; a closed room stores
    nothing."""
    waiting = await scheduled_case(client, env, world, minutes_from_now=5)
    live = await live_case(client, env, world, who=world.bob)
    hub = env.app.state.hub
    alice = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    bob = service.Member(world.bob.user_id, Side.BORROWER, "Bob")

    first = await hub.store(service.PresenceDraft(waiting, alice, "joined"))
    assert (first["seq"], first["kind"], first["payload"]) == (1, "system", {"event": "joined"})
    assert first["sender"] == {"side": "borrower", "name": "Alice"}
    groups_before = hub.writer.groups
    arrived, said, gone = await asyncio.gather(
        hub.store(service.PresenceDraft(live, bob, "joined")),
        hub.store(joint_text(live, bob, "p-1", "到了")),
        hub.store(service.PresenceDraft(waiting, alice, "left")),
    )
    assert hub.writer.groups == groups_before + 1
    assert gone["seq"] == 2 and gone["payload"] == {"event": "left"}
    assert sorted([arrived["seq"], said["seq"]]) == [2, 3]  # 1 is 'started'

    r = await client.post(
        f"/api/v1/cases/{live}/session/end",
        headers=world.mediator.headers,
        json={"outcome": "failed"},
    )
    assert r.status_code == 200, r.text
    with pytest.raises(Conflict) as refused:
        await hub.store(service.PresenceDraft(live, bob, "left"))
    assert refused.value.code == "session_not_open"
    async with env.session() as s:
        events = await s.execute(
            select(Message.case_id, Message.seq, Message.payload)
            .where(Message.kind == "system", Message.sender_id.is_not(None))
            .order_by(Message.case_id, Message.seq)
        )
        presence = [e for e in events.all() if e.payload["event"] in ("joined", "left")]
        assert sorted(presence) == sorted(
            [
                (waiting, 1, {"event": "joined"}),
                (waiting, 2, {"event": "left"}),
                (live, arrived["seq"], {"event": "joined"}),
            ]
        )


async def test_the_writer_thread_hands_the_room_back_between_turns(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread stores group after group while messages keep coming, but gives the room's
    other writes a turn after `DRAIN_SECONDS`; each turn takes up what is still waiting."""
    hub = env.app.state.hub
    if not isinstance(hub.writer, writer.TextWriter):
        pytest.skip("the SQLite writer's thread")
    live = await live_case(client, env, world)
    borrower = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    monkeypatch.setattr(writer, "DRAIN_SECONDS", 0.0)  # one group a turn
    monkeypatch.setattr(writer, "MAX_GROUP", 2)
    groups_before = hub.writer.groups
    records = await asyncio.wait_for(
        asyncio.gather(
            *(hub.store(joint_text(live, borrower, f"t-{n}", f"第{n}句")) for n in range(5))
        ),
        timeout=10,
    )
    assert [r["client_msg_id"] for r in records] == [f"t-{n}" for n in range(5)]
    assert [r["seq"] for r in records] == [2, 3, 4, 5, 6]  # 1 is 'started'
    assert hub.writer.groups == groups_before + 3  # 2 + 2 + 1, a turn each


async def test_stopping_the_writer_refuses_what_it_has_not_taken(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """A restart refuses the messages still waiting (the sender is told to retry); none is half
    stored."""
    hub = env.app.state.hub
    if not isinstance(hub.writer, writer.TextWriter):
        pytest.skip("the SQLite writer's thread")
    live = await live_case(client, env, world)
    borrower = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    async with hub.write_gate:  # an offer being stored: the writer waits its turn
        waiting = [
            asyncio.create_task(hub.store(joint_text(live, borrower, f"w-{n}", "稍等")))
            for n in range(3)
        ]
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(hub.writer.stop())
        await asyncio.sleep(0.05)
    await asyncio.wait_for(stopping, timeout=10)
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(getattr(o, "code", None) == "retry" for o in outcomes), outcomes
    async with env.session() as s:
        stored = await s.scalar(
            select(func.count()).select_from(Message).where(Message.kind == "text")
        )
    assert stored == 0


async def test_sqlite_checkpoints_run_beside_the_writer(
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The writer's connection leaves checkpoints to a thread of their own, which copies the
    messages from the WAL into the database file while they keep coming."""
    hub = env.app.state.hub
    if not isinstance(hub.writer, writer.TextWriter):
        pytest.skip("the SQLite writer's thread")
    monkeypatch.setattr(writer, "CHECKPOINT_SECONDS", 0.0)
    live = await live_case(client, env, world)
    borrower = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    sent = 300
    for n in range(sent):
        await hub.store(
            service.draft_text(
                case_id=live, who=borrower, channel="joint", text=f"第{n}句", client_msg_id=f"c-{n}"
            )
        )
    await hub.writer.stop()  # waits for a checkpoint under way
    database = make_url(env.url).database
    assert database is not None
    # The database file alone, without its WAL: what checkpoints have copied into it. (The
    # writer's own connection would not have checkpointed below 10,000 pages: none of them.)
    alone = tmp_path / "alone.db"
    shutil.copyfile(database, alone)
    with contextlib.closing(sqlite3.connect(alone)) as db:
        copied = db.execute(
            "SELECT count(*) FROM session_messages WHERE case_id = ? AND kind = 'text'", (live,)
        ).fetchone()[0]
    # All but at most the last few groups, whose checkpoint had not started yet.
    assert sent - 5 <= copied <= sent


async def test_a_rooms_messages_stored_together_take_consecutive_seqs(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """One group with three messages for one room, two for another and one for a case with no
    session: each room's messages take its next seqs in the order they came, and only the one
    that could not be stored is refused."""
    first = await live_case(client, env, world)
    second = await live_case(client, env, world, who=world.bob)
    nowhere = "0" * 32
    hub = env.app.state.hub
    alice = service.Member(world.alice.user_id, Side.BORROWER, "Alice")
    bob = service.Member(world.bob.user_id, Side.BORROWER, "Bob")
    groups_before = hub.writer.groups
    # PostgreSQL's writer falls back to a message at a time when storing together goes wrong:
    # nothing here needs it.
    one_by_one = getattr(hub.writer, "one_by_one", 0)
    outcomes = await asyncio.gather(
        hub.store(joint_text(first, alice, "a-1", "一")),
        hub.store(joint_text(second, bob, "b-1", "一")),
        hub.store(joint_text(first, alice, "a-2", "二")),
        hub.store(joint_text(nowhere, alice, "w-1", "没有")),
        hub.store(joint_text(second, bob, "b-2", "二")),
        hub.store(joint_text(first, alice, "a-3", "三")),
        return_exceptions=True,
    )
    assert hub.writer.groups == groups_before + 1
    assert getattr(hub.writer, "one_by_one", 0) == one_by_one
    a1, b1, a2, early, b2, a3 = outcomes
    assert isinstance(early, Conflict) and early.code == "session_not_in_progress"
    # 1 is each room's 'started'.
    assert [o["seq"] for o in (a1, a2, a3)] == [2, 3, 4]  # type: ignore[index]
    assert [o["seq"] for o in (b1, b2)] == [2, 3]  # type: ignore[index]
    async with env.session() as s:
        rows = await s.execute(
            select(Message.case_id, Message.client_msg_id, Message.seq)
            .where(Message.kind == "text")
            .order_by(Message.case_id, Message.seq)
        )
        assert sorted(rows.all()) == sorted(
            [
                (first, "a-1", 2),
                (first, "a-2", 3),
                (first, "a-3", 4),
                (second, "b-1", 2),
                (second, "b-2", 3),
            ]
        )
        last = await s.execute(select(Room.case_id, Room.last_seq))
        assert dict(last.all()) == {first: 4, second: 3}

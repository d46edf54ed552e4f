"""One room across two app instances: two real uvicorn processes, one PostgreSQL, a real Redis.

The borrower is on instance A, the mediator and the bank on instance B. Everything said reaches
everyone who may see it exactly once, in order, woken by Redis rather than by the 2-second sweep;
caucus isolation holds across instances. Then B is killed outright: its clients reconnect to A,
resume after the last seq they saw and get exactly what they missed, and a retried action whose
ack died with B is answered with the stored seq.
"""

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.exceptions import ConnectionClosed

from app.sessions.broker import CHANNEL_PREFIX
from app.sessions.hub import SWEEP_SECONDS
from tests.helpers import ROOT, SECRET, Actor, Backend, make_world
from tests.redis_server import MISSING, RedisServer, running_redis
from tests.sessions.helpers import Peer, joined, live_case

# Every wait-until is bounded by this: generous for a loaded 2-core CI machine.
SETTLE = 15.0
STARTUP = 90.0
# Well under the sweep: a delivery this quick was woken by Redis, not found by the re-read.
WOKEN_WITHIN = 1.0
assert WOKEN_WITHIN <= SWEEP_SECONDS / 2


# Servers -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown, no goodbyes, no `left` messages."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"instance {self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}/healthz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"instance {self.name} did not answer /healthz in {STARTUP}s:\n{self.tail()}")


def start_instance(name: str, env: dict[str, str], log: Path) -> Instance:
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws-per-message-deflate",
                "false",
                "--log-level",
                "info",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Instance(name, port, proc, log)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    with running_redis() as server:
        yield server


@pytest.fixture
async def database(postgres: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A database of its own on the suite's PostgreSQL server, migrated; dropped afterwards."""
    server = make_url(postgres)
    name = f"hejie_instances_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        backend = Backend.create("postgresql", url, tmp_path / "in-process")
        try:
            await asyncio.to_thread(backend.migrate)
            yield backend
        finally:
            await backend.app.state.engine.dispose()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
def instances(
    database: Backend, redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    """Instances A and B of the app sharing the database and Redis; killed whatever happens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
    started: list[Instance] = []
    try:
        for name in ("A", "B"):
            data_dir = tmp_path / f"data-{name}"
            data_dir.mkdir()
            env_one = {
                **env,
                "HEJIE_DATABASE_URL": database.url,
                "HEJIE_REDIS_URL": redis_server.url,
                "HEJIE_SECRET_KEY": SECRET,
                "HEJIE_DATA_DIR": str(data_dir),
                "HEJIE_DISPATCH_IN_APP": "false",
                "PYTHONUNBUFFERED": "1",
            }
            started.append(start_instance(name, env_one, tmp_path / f"instance-{name}.log"))
        for instance in started:
            instance.wait_healthy()
        yield started[0], started[1]
    finally:
        for instance in started:
            instance.kill()
        for instance in started:
            # Shown by pytest only when the test fails.
            print(f"--- instance {instance.name} log (tail) ---\n{instance.tail()}")


@pytest.fixture
async def wakeups(redis_server: RedisServer) -> AsyncIterator[list[tuple[str, str]]]:
    """Everything published on the room channels, as (channel, raw data), seen from outside."""
    client = redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    seen: list[tuple[str, str]] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        await pubsub.psubscribe(CHANNEL_PREFIX + "*")
        async for item in pubsub.listen():
            if item["type"] == "psubscribe":
                subscribed.set()
            elif item["type"] == "pmessage":
                seen.append((item["channel"].decode(), item["data"].decode()))

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(subscribed.wait(), SETTLE)
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await pubsub.aclose()
        await client.aclose()


# The room, as its clients see it -----------------------------------------------------------------


def seqs(peer: Peer) -> list[int]:
    return [int(m["seq"]) for m in peer.messages()]


def has(peer: Peer, seq: int) -> Callable[[], bool]:
    return lambda: seq in seqs(peer)


def increasing(values: list[int]) -> bool:
    return all(x < y for x, y in itertools.pairwise(values))


async def pump(peer: Peer, done: Callable[[], bool], what: str) -> None:
    """Read the peer's frames (kept in `peer.frames`) until `done()` holds."""
    try:
        async with asyncio.timeout(SETTLE):
            while not done():
                peer.frames.append(json.loads(await peer.ws.recv()))
    except TimeoutError:
        raise AssertionError(
            f"timed out after {SETTLE}s waiting for {what}; message seqs so far {seqs(peer)}"
        ) from None


async def reply(peer: Peer, cid: str) -> dict[str, Any]:
    """The ack or error answering `cid`, taken out of the frames; every other frame is kept."""

    def answer() -> dict[str, Any] | None:
        for frame in peer.frames:
            if frame.get("type") in ("ack", "error") and frame.get("client_msg_id") == cid:
                return frame
        return None

    await pump(peer, lambda: answer() is not None, f"the answer to {cid}")
    found = answer()
    assert found is not None
    peer.frames.remove(found)
    return found


async def say(peer: Peer, body: str, channel: str = "joint") -> tuple[int, float]:
    """Send a text until it is acked (waiting out the rate limit); its seq and when it went."""
    cid = peer.next_id()
    while True:
        sent_at = time.monotonic()
        await peer.send({"type": "send", "client_msg_id": cid, "channel": channel, "text": body})
        answer = await reply(peer, cid)
        if answer["type"] == "error" and answer["code"] == "rate_limited":
            await asyncio.sleep(float(answer["retry_after"]))
            continue
        assert answer["type"] == "ack", answer
        assert answer["state"] == "delivered" and answer["duplicate"] is False, answer
        return int(answer["seq"]), sent_at


def any_typing(peer: Peer, side: str, channel: str) -> bool:
    return any(
        f.get("type") == "typing" and f["side"] == side and f["channel"] == channel
        for f in peer.frames
    )


@pytest.mark.slow
async def test_one_room_across_two_instances_survives_one_being_killed(
    database: Backend,
    instances: tuple[Instance, Instance],
    wakeups: list[tuple[str, str]],
) -> None:
    a, b = instances
    env = database
    world = await make_world(env)
    transport = httpx.ASGITransport(app=env.app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        contextlib.AsyncExitStack() as on_a,
        contextlib.AsyncExitStack() as on_b,
    ):
        case_id = await live_case(client, env, world)

        async def transcript(who: Actor, since: int = 0) -> list[dict[str, Any]]:
            """What `who` may see after `since`, by HTTP: the truth the room must match."""
            r = await client.get(
                f"/api/v1/cases/{case_id}/messages",
                params={"since": since, "limit": 1000},
                headers=who.headers,
            )
            assert r.status_code == 200, r.text
            return list(r.json())

        async def settle(peer: Peer, who: Actor, since: int = 0) -> None:
            """Read until the peer has every message it may see after `since`."""
            expected = {m["seq"] for m in await transcript(who, since)}
            await pump(peer, lambda: expected <= set(seqs(peer)), f"{who.role}'s messages")

        # --- Phase 1: the borrower on A, the mediator and the bank on B ---------------------------
        borrower = await on_a.enter_async_context(joined(a.host, case_id, world.alice))
        mediator = await on_b.enter_async_context(joined(b.host, case_id, world.mediator))
        bank = await on_b.enter_async_context(joined(b.host, case_id, world.bank_demo))

        # One at a time across instances, each delivery timed. Without Redis each would wait for
        # the receiving instance's next sweep: up to SWEEP_SECONDS, and about that much when the
        # next message is sent right after the previous one arrived.
        crossings: list[float] = []
        for i in range(3):
            seq, sent_at = await say(borrower, f"您好，这是借款人的第{i + 1}条消息")
            await pump(mediator, has(mediator, seq), f"seq {seq} on B")
            crossings.append(time.monotonic() - sent_at)
        for peer, body in ((mediator, "双方请依次说明情况"), (bank, "银行可以考虑分期方案")):
            seq, sent_at = await say(peer, body)
            await pump(borrower, has(borrower, seq), f"seq {seq} on A")
            crossings.append(time.monotonic() - sent_at)
        assert statistics.median(crossings) < WOKEN_WITHIN, crossings

        # The caucuses, written from both instances.
        borrower_secret, _ = await say(borrower, "我私下说：每月最多还两千", "caucus:borrower")
        bank_secret, _ = await say(bank, "内部底线：可减免一半利息", "caucus:bank")
        to_borrower, _ = await say(mediator, "调解员对借款人：请准备收入证明", "caucus:borrower")
        to_bank, _ = await say(mediator, "调解员对银行：请给出最低月供", "caucus:bank")

        # Typing indicators travel whole through Redis, filtered by the receiving instance.
        await borrower.send({"type": "typing", "channel": "joint"})
        await pump(bank, lambda: any_typing(bank, "borrower", "joint"), "the borrower typing")
        await bank.send({"type": "typing", "channel": "caucus:bank"})
        await pump(mediator, lambda: any_typing(mediator, "bank", "caucus:bank"), "the bank typing")

        everyone = ((borrower, world.alice), (mediator, world.mediator), (bank, world.bank_demo))
        for peer, who in everyone:
            await settle(peer, who)
        # Long enough for a sweep on each instance: a late duplicate would show up now.
        await asyncio.gather(*(peer.quiet(SWEEP_SECONDS + 0.5) for peer, _ in everyone))
        for peer, who in everyone:
            assert peer.messages() == await transcript(who), who.role
            assert increasing(seqs(peer)), (who.role, seqs(peer))

        assert {borrower_secret, to_borrower} <= set(seqs(mediator))
        assert {bank_secret, to_bank} <= set(seqs(mediator))
        assert not {bank_secret, to_bank} & set(seqs(borrower))
        assert not {borrower_secret, to_borrower} & set(seqs(bank))

        # --- Phase 2: B dies with actions in flight; its clients move to A ------------------------
        mediator_last, bank_last = seqs(mediator)[-1], seqs(bank)[-1]
        # Sent on B, acks never read: they die with B.
        lost = {"mediator": "lost-ack-mediator", "bank": "lost-ack-bank"}
        lost_frames = {
            "mediator": {
                "type": "send",
                "client_msg_id": lost["mediator"],
                "channel": "joint",
                "text": "调解员：我们休息五分钟",
            },
            "bank": {
                "type": "send",
                "client_msg_id": lost["bank"],
                "channel": "caucus:bank",
                "text": "银行对调解员：还可以再让一点",
            },
        }
        await mediator.send(lost_frames["mediator"])
        await bank.send(lost_frames["bank"])
        stored: dict[str, int] = {}
        deadline = time.monotonic() + SETTLE
        while len(stored) < 2:  # stored before B dies: the database is the truth
            assert time.monotonic() < deadline, "the in-flight actions were never stored"
            for m in await transcript(world.mediator, mediator_last):
                for side in lost:
                    if m["sender"]["side"] == side and m["body"] == lost_frames[side]["text"]:
                        stored[side] = m["seq"]
            await asyncio.sleep(0.05)

        b.kill()
        with contextlib.suppress(ConnectionClosed, OSError):
            await on_b.aclose()

        # The borrower, on A, carries on while the others are away.
        while_away = [
            (await say(borrower, "刚才断线了吗？我继续说"))[0],
            (await say(borrower, "我私下再补充一句", "caucus:borrower"))[0],
            (await say(borrower, "我同意休息五分钟"))[0],
        ]

        # They come back on A, resuming after the last seq each saw.
        mediator2 = await on_a.enter_async_context(
            joined(a.host, case_id, world.mediator, after=mediator_last)
        )
        bank2 = await on_a.enter_async_context(
            joined(a.host, case_id, world.bank_demo, after=bank_last)
        )
        # The actions whose acks were lost, sent again: the stored seq, not a second message.
        for side, peer in (("mediator", mediator2), ("bank", bank2)):
            await peer.send(lost_frames[side])
            assert await reply(peer, lost[side]) == {
                "type": "ack",
                "client_msg_id": lost[side],
                "seq": stored[side],
                "state": "delivered",
                "duplicate": True,
            }
        live_seq, _ = await say(borrower, "大家都回来了，我们继续")

        back = ((mediator2, world.mediator, mediator_last), (bank2, world.bank_demo, bank_last))
        for peer, who, since in back:
            await settle(peer, who, since)
        await settle(borrower, world.alice)
        await asyncio.gather(
            *(peer.quiet(SWEEP_SECONDS + 0.5) for peer in (borrower, mediator2, bank2))
        )

        # Exactly what each missed, in order, once; and nothing lost across the move.
        for (old, who), (new, _, since) in zip(everyone[1:], back, strict=True):
            assert new.messages() == await transcript(who, since), who.role
            assert seqs(new) and seqs(new)[0] > since and increasing(seqs(new)), seqs(new)
            assert old.messages() + new.messages() == await transcript(who), who.role
        assert borrower.messages() == await transcript(world.alice)
        assert increasing(seqs(borrower))

        # What each of them missed, specifically.
        mine = {m["seq"]: m for m in mediator2.messages()}
        assert mine[stored["mediator"]]["client_msg_id"] == lost["mediator"]
        assert mine[stored["bank"]]["client_msg_id"] is None
        assert set(while_away) | {live_seq} <= set(mine)
        banks = {m["seq"]: m for m in bank2.messages()}
        assert banks[stored["bank"]]["client_msg_id"] == lost["bank"]
        assert {stored["mediator"], while_away[0], while_away[2], live_seq} <= set(banks)
        assert while_away[1] not in banks
        assert stored["mediator"] in seqs(borrower) and stored["bank"] not in seqs(borrower)

        # Caucus isolation, over both instances and the move: messages and typing alike.
        bank_frames = bank.frames + bank2.frames
        assert all(f.get("channel") != "caucus:bank" for f in borrower.frames)
        assert all(f.get("channel") != "caucus:borrower" for f in bank_frames)
        assert "两千" not in json.dumps(bank_frames, ensure_ascii=False)
        assert "底线" not in json.dumps(borrower.frames, ensure_ascii=False)

        # Redis carried wake-ups (case and seq, no content) from both instances.
        channel = CHANNEL_PREFIX + case_id
        deadline = time.monotonic() + SETTLE
        while not {to_bank, live_seq} <= {json.loads(data).get("seq") for _, data in wakeups}:
            assert time.monotonic() < deadline, wakeups
            await asyncio.sleep(0.05)
        events = [json.loads(data) for ch, data in wakeups if ch == channel]
        wakes = [e for e in events if e["t"] == "wake"]
        assert all(set(e) == {"t", "seq", "origin"} for e in wakes), wakes
        origin = {e["seq"]: e["origin"] for e in wakes}
        assert origin[borrower_secret] != origin[bank_secret]
        assert origin[to_bank] == origin[bank_secret]
        assert origin[while_away[0]] == origin[live_seq] == origin[borrower_secret]
        assert {"typing"} == {e["t"] for e in events} - {"wake"}
        raw = json.dumps(wakeups, ensure_ascii=False)
        assert "两千" not in raw and "底线" not in raw

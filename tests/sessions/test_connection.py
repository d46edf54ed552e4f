"""A room connection sends at once when the peer keeps up, and in order behind a send that waits;
the hub opens a room once for the people who join it together."""

import asyncio
import json
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select

from app.sessions import service
from app.sessions.hub import CLOSE_TOO_SLOW, Connection, Hub
from app.sessions.models import Room
from app.sessions.rules import Side
from tests.helpers import Backend, World
from tests.sessions.helpers import live_case


class Peer:
    """A websocket whose sends wait while `ready` is clear, as a send to a full buffer does."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.sent: list[str] = []
        self.closed_with: tuple[int, str] | None = None
        self.gone = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.ready.wait()
        if self.gone:
            raise RuntimeError("the peer went away")
        self.sent.append(message["text"])

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def connection(peer: Peer) -> Connection:
    member = service.Member(user_id="u1", side=Side.BORROWER, name="Alice")
    return Connection(cast(Any, peer), "case-1", member)


async def test_a_frame_goes_out_at_once_without_a_task() -> None:
    peer = Peer()
    conn = connection(peer)
    conn.push({"type": "pong", "text": "你好"})
    conn.push("already text")
    # Sent before this coroutine gave the loop a chance to run anything else.
    assert [json.loads(t) for t in peer.sent[:1]] == [{"type": "pong", "text": "你好"}]
    assert peer.sent[1] == "already text"
    assert conn._flusher is None


async def test_frames_wait_in_order_behind_a_send_that_waits() -> None:
    peer = Peer()
    peer.ready.clear()
    conn = connection(peer)
    conn.push("first")  # waits for the peer
    conn.push("second")
    conn.push("third")
    await asyncio.sleep(0)
    assert peer.sent == []
    peer.ready.set()
    assert conn._flusher is not None
    await conn._flusher
    assert peer.sent == ["first", "second", "third"]
    # Drained: the next frame goes out at once again.
    conn.push("fourth")
    assert peer.sent[-1] == "fourth"


async def test_a_close_goes_out_after_the_frames_queued_before_it() -> None:
    peer = Peer()
    peer.ready.clear()
    conn = connection(peer)
    conn.push("the reason, as an error frame")
    conn.close(CLOSE_TOO_SLOW, "too far behind")
    conn.push("after the close: dropped")
    peer.ready.set()
    await conn.stop()
    assert peer.sent == ["the reason, as an error frame"]
    assert peer.closed_with == (CLOSE_TOO_SLOW, "too far behind")


async def test_a_peer_that_went_away_marks_the_connection_closed() -> None:
    peer = Peer()
    peer.gone = True
    conn = connection(peer)
    conn.push("lost")
    assert conn.closed and peer.sent == []
    conn.push("not tried")
    assert conn._flusher is None


async def test_stopping_cancels_a_send_still_waiting() -> None:
    peer = Peer()
    peer.ready.clear()
    conn = connection(peer)
    conn.push("never sent")
    flusher = conn._flusher
    await conn.stop()
    assert flusher is not None and flusher.cancelled()
    assert peer.sent == [] and conn.closed


async def test_a_rooms_first_joiners_read_its_counter_once(
    client: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The three people of a room joining at the same moment share one read of its counter;
    one of them going away meanwhile does not take the read from the other two."""
    hub: Hub = env.app.state.hub
    case_id = await live_case(client, env, world)
    reads = 0
    reading = asyncio.Event()
    read = service.last_seq

    async def slow_read(session: Any, *, case_id: str) -> int:
        nonlocal reads
        reads += 1
        reading.set()
        await asyncio.sleep(0.05)  # long enough for the others to arrive
        return await read(session, case_id=case_id)

    monkeypatch.setattr(service, "last_seq", slow_read)
    people = [
        Connection(cast(Any, Peer()), case_id, service.Member(user_id, side, name))
        for user_id, side, name in (
            (world.alice.user_id, Side.BORROWER, "张伟"),
            (world.bank_demo.user_id, Side.BANK, "bank.demo"),
            (world.mediator.user_id, Side.MEDIATOR, "mediator"),
        )
    ]
    gone = asyncio.create_task(hub.join(people[0]))
    await reading.wait()
    joining = [asyncio.create_task(hub.join(conn)) for conn in people[1:]]
    await asyncio.sleep(0)
    gone.cancel()
    try:
        assert await asyncio.gather(*joining) == [True, True]
        assert reads == 1
        async with env.session() as s:
            counter = await s.scalar(select(Room.last_seq).where(Room.case_id == case_id))
        assert hub.rooms[case_id].seen_seq == counter == 1  # 'started'
        assert hub._opening == {}
    finally:
        for conn in people[1:]:
            hub.leave(conn)

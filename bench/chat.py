"""Chat benchmark: Hejie's live room against a bare `websockets` relay, same client, same run.

300 live rooms of three (borrower, bank officer, mediator) talk in the joint channel on an
open-loop schedule. Every message has an intended send time, written into its text; each recipient
measures from that time to the moment the frame is in its hands, so a late send (the client or the
server falling behind) counts against latency instead of being hidden. The offered rate goes up
step by step; the highest step each server sustains with p99 < 100 ms (and nothing lost,
duplicated or refused) is its sustained rate. The bare relay (bench/relay.py) runs in the same
run, driven by the same client code over the same number of connections; every figure is
reported as a ratio against it. Afterwards every message is looked up in Hejie's database:
count sent = persisted = delivered. Memory: the server's resident set before and after 1,000 idle
connections (welcomed and resumed), per 1,000 connections, against the bare relay's.

    .venv/bin/python bench/chat.py            # the full run (about 6 minutes)
    .venv/bin/python bench/chat.py --quick    # about 1.5 minutes
    .venv/bin/python bench/chat.py --help

See bench/README.md for what the figures mean and the latest results.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import random
import re
import resource
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# Run as a script (`python bench/chat.py`), the project root is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol
from websockets.version import version as websockets_version

from app.config import Settings
from app.sessions.writer import SLOW_SYNC_SECONDS
from bench import bench_io, chat_world
from bench.chat_world import Participant

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PROTOCOL = Subprotocol("hejie.v1")
MEMORY_WARMUP = "memwarm"  # client_msg_id label of the memory phase's few messages
# Neither the conduct list nor the text checks should ever trip on this.
FILLER = "我们可以讨论分期还款的方案，请确认每月能够承担的金额。"
P99_TARGET_S = 0.100
# A step whose client sent late or whose client event loop lagged by more than this at p99 is
# marked client-bound: the latency measured there is partly the client's own.
CLIENT_BOUND_MS = 10.0
# Hejie allows 5 messages a second per person; the schedule keeps everyone under this.
MAX_PER_PERSON_RATE = 4.0
DEFAULT_RATES = (50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600, 2400, 3200, 3600)
QUICK_RATES = (100, 150, 200, 400, 800, 1600, 3200)


# Servers ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# As app/sessions/writer.py logs a slow sync.
SLOW_SYNC = re.compile(r"room WAL sync took (\d+) ms")


class Server:
    """A server under test in its own process; its RSS and CPU time are read from /proc."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.argv = [*argv, "--port", str(self.port)]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if self.name == "hejie":
                # The app is up when it answers, with its database, on /healthz.
                async with httpx.AsyncClient(trust_env=False) as client:
                    r = await client.get(f"http://127.0.0.1:{self.port}/healthz")
                    if r.status_code != 200:
                        await asyncio.sleep(0.1)
                        continue
            return
        raise RuntimeError(f"{self.name} did not start: {self.tail()}")

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def slow_syncs_since(self, offset: int) -> list[float]:
        """The WAL syncs the server logged as slow since `offset` of its log (milliseconds)."""
        if not self.log.exists():
            return []
        with self.log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        return [float(ms) for ms in SLOW_SYNC.findall(text)]

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _server_env(data_dir: Path, secret: str, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJIE_")}
    env.update(
        HEJIE_ENV="dev",
        HEJIE_DATA_DIR=str(data_dir),
        HEJIE_SECRET_KEY=secret,
        HEJIE_DISPATCH_IN_APP="false",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["HEJIE_DATABASE_URL"] = database_url
    return env


# The client ---------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Everything one server's connections saw in one step, keyed by the step's label."""

    scheduled: int = 0
    sent: int = 0
    send_failed: int = 0
    acked: int = 0
    duplicate_acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # First deliveries: (recipient, sender, n); latency samples in seconds, one per first delivery.
    delivered: set[tuple[int, int, int]] = field(default_factory=set)
    samples: list[float] = field(default_factory=list)
    duplicate_seq: int = 0  # the same seq twice on one connection
    duplicate_msg: int = 0  # the same message twice to one recipient (under another seq)
    echoes: int = 0  # the sender's own copy, not counted as a delivery
    sent_ids: list[tuple[str, str]] = field(default_factory=list)  # (user id, client_msg_id)


class Sink:
    """One server's side of the run: tallies per step, and what went wrong outside them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: dict[str, Tally] = defaultdict(Tally)
        self.closes: Counter[str] = Counter()
        self.unlabelled_errors: Counter[str] = Counter()
        self.foreign_text = 0
        self.changed = asyncio.Event()  # set on every first delivery

    def drained(self) -> bool:
        """Every message sent so far has reached both other people of its room."""
        return all(len(t.samples) >= 2 * t.sent for t in self.steps.values())

    async def wait_for(self, done: Callable[[], bool], deadline: float) -> None:
        """Until `done()` (re-checked at each delivery) or time.perf_counter() reaches deadline."""
        while not done():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def on_message(self, peer: "Peer", frame: dict[str, Any], now: float) -> None:
        if frame.get("kind") != "text":
            return
        parts = str(frame.get("body") or "").split("|", 4)
        if len(parts) != 5:
            self.foreign_text += 1
            return
        label, sender, n, intended = parts[0], int(parts[1]), int(parts[2]), float(parts[3])
        tally = self.steps[label]
        if sender == peer.participant.index:
            tally.echoes += 1
            return
        seq = frame.get("seq")
        if seq in peer.seen:
            tally.duplicate_seq += 1
            return
        peer.seen.add(seq)
        key = (peer.participant.index, sender, n)
        if key in tally.delivered:
            tally.duplicate_msg += 1
            return
        tally.delivered.add(key)
        tally.samples.append(now - intended)
        self.changed.set()

    def on_ack(self, frame: dict[str, Any]) -> None:
        label = str(frame.get("client_msg_id") or "").partition(".")[0]
        tally = self.steps[label]
        tally.acked += 1
        tally.duplicate_acks += bool(frame.get("duplicate"))

    def on_error(self, frame: dict[str, Any]) -> None:
        cid = frame.get("client_msg_id")
        code = str(frame.get("code"))
        if isinstance(cid, str) and "." in cid:
            self.steps[cid.partition(".")[0]].errors[code] += 1
        else:
            self.unlabelled_errors[code] += 1


class Peer:
    """One participant's websocket; a task reads every frame as it comes and files it."""

    def __init__(self, participant: Participant, ws: ClientConnection, sink: Sink | None) -> None:
        self.participant = participant
        self.ws = ws
        self.sink = sink
        self.seen: set[Any] = set()
        self.last_seq = 0
        self.welcomed = asyncio.Event()
        self.resumed = asyncio.Event()
        self.closing = False
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        clock = time.perf_counter
        try:
            async for raw in self.ws:
                now = clock()
                frame = json.loads(raw)
                kind = frame.get("type")
                sink = self.sink
                if kind == "message":
                    if sink is not None:
                        sink.on_message(self, frame, now)
                elif kind == "ack":
                    if sink is not None:
                        sink.on_ack(frame)
                elif kind == "error":
                    if sink is not None:
                        sink.on_error(frame)
                elif kind == "welcome":
                    self.last_seq = int(frame.get("last_seq") or 0)
                    self.welcomed.set()
                elif kind == "resumed":
                    self.resumed.set()
        except ConnectionClosed:
            pass
        finally:
            if not self.closing and self.sink is not None:
                self.sink.closes[str(self.ws.close_code)] += 1
            self.welcomed.set()
            self.resumed.set()

    async def close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await self.reader


async def open_peer(server: Server, participant: Participant, sink: Sink | None) -> Peer:
    """Connected, welcomed and resumed from the latest seq: idle, and live from here on."""
    ws = await connect(
        f"{server.ws_base}/api/v1/cases/{participant.case_id}/session",
        additional_headers={"Authorization": f"Bearer {participant.token}"},
        subprotocols=[PROTOCOL],
        compression=None,
        proxy=None,
        open_timeout=120,
        close_timeout=30,
    )
    peer = Peer(participant, ws, sink)
    await asyncio.wait_for(peer.welcomed.wait(), 60)
    await ws.send(json.dumps({"type": "resume", "after": peer.last_seq}))
    await asyncio.wait_for(peer.resumed.wait(), 60)
    if peer.reader.done():
        raise RuntimeError(f"{server.name} closed a new connection: code {ws.close_code}")
    return peer


async def open_peers(
    server: Server, participants: Sequence[Participant], sink: Sink | None, concurrency: int = 64
) -> list[Peer]:
    gate = asyncio.Semaphore(concurrency)

    async def one(p: Participant) -> Peer:
        async with gate:
            return await open_peer(server, p, sink)

    return list(await asyncio.gather(*(one(p) for p in participants)))


async def close_peers(peers: Iterable[Peer]) -> None:
    await asyncio.gather(*(p.close() for p in peers))


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# One step -----------------------------------------------------------------------------------------


@dataclass
class StepStats:
    server: str
    label: str
    rate: float  # offered, messages per second over all rooms
    duration: float
    scheduled: int
    sent: int
    achieved_rate: float
    acked: int
    errors: dict[str, int]
    expected_deliveries: int
    delivered: int
    lost: int
    duplicates: int
    p50_ms: float | None  # None: more than that share of deliveries never arrived
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    send_late_p99_ms: float
    loop_lag_p99_ms: float
    client_cpu_pct: float
    server_cpu_pct: float
    drain_s: float
    # WAL syncs the server logged as slow during the step: the disk holding it up.
    slow_syncs: int = 0
    slow_sync_max_ms: float = 0.0
    sustained: bool = False
    # The client itself fell behind (late sends or a slow event loop): the latency measured is
    # partly the client's, so the server would do at least as well as shown.
    client_bound: bool = False
    note: str = ""


def _quantile(values: Sequence[float], q: float) -> float:
    """values sorted; nearest-rank."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _latency_quantile(samples: Sequence[float], expected: int, q: float) -> float:
    """Nearest-rank over every expected delivery; the missing ones count as infinitely late."""
    if expected <= 0:
        return math.nan
    rank = max(0, math.ceil(q * expected) - 1)
    return samples[rank] if rank < len(samples) else math.inf


def _ms(seconds: float) -> float | None:
    if math.isinf(seconds) or math.isnan(seconds):
        return None
    return round(seconds * 1000, 3)


@dataclass
class StepRun:
    """What a step measured besides the tallies (which keep filling until the end of the run)."""

    server: str
    label: str
    rate: float
    duration: float
    window: float
    send_window: float
    client_cpu: float
    server_cpu: float
    send_late: list[float]
    loop_lag: list[float]
    drain_s: float
    slow_syncs_ms: list[float] = field(default_factory=list)


def summarise(run: StepRun, tally: Tally) -> StepStats:
    expected = 2 * tally.sent  # the two other people in the room
    samples = sorted(tally.samples)
    lateness = sorted(run.send_late)
    lag = sorted(run.loop_lag)
    stats = StepStats(
        server=run.server,
        label=run.label,
        rate=run.rate,
        duration=run.duration,
        scheduled=tally.scheduled,
        sent=tally.sent,
        achieved_rate=round(tally.sent / run.send_window, 1) if run.send_window > 0 else 0.0,
        acked=tally.acked,
        errors=dict(tally.errors),
        expected_deliveries=expected,
        delivered=len(samples),
        lost=max(0, expected - len(samples)),
        duplicates=tally.duplicate_seq + tally.duplicate_msg,
        p50_ms=_ms(_latency_quantile(samples, expected, 0.50)),
        p90_ms=_ms(_latency_quantile(samples, expected, 0.90)),
        p99_ms=_ms(_latency_quantile(samples, expected, 0.99)),
        p999_ms=_ms(_latency_quantile(samples, expected, 0.999)),
        max_ms=_ms(samples[-1]) if samples and len(samples) >= expected else None,
        send_late_p99_ms=round(_quantile(lateness, 0.99) * 1000, 3),
        loop_lag_p99_ms=round(_quantile(lag, 0.99) * 1000, 3),
        client_cpu_pct=round(100 * run.client_cpu / run.window, 1),
        server_cpu_pct=round(100 * run.server_cpu / run.window, 1),
        drain_s=round(run.drain_s, 2),
        slow_syncs=len(run.slow_syncs_ms),
        slow_sync_max_ms=max(run.slow_syncs_ms, default=0.0),
    )
    problems = []
    if stats.p99_ms is None or stats.p99_ms >= P99_TARGET_S * 1000:
        problems.append("p99")
    if stats.lost:
        problems.append("lost")
    if stats.duplicates or tally.duplicate_acks:
        problems.append("dup")
    if stats.errors or tally.send_failed:
        problems.append("errors")
    if tally.sent < tally.scheduled:
        problems.append("unsent")
    stats.sustained = not problems
    stats.client_bound = max(stats.send_late_p99_ms, stats.loop_lag_p99_ms) > CLIENT_BOUND_MS
    stats.note = ",".join(problems)
    return stats


async def _watch_loop(stop: asyncio.Event, out: list[float], period: float = 0.005) -> None:
    """How late this process's event loop wakes up: the client's own saturation."""
    clock = time.perf_counter
    while not stop.is_set():
        t = clock()
        await asyncio.sleep(period)
        out.append(clock() - t - period)


async def _send_schedule(
    peer: Peer, label: str, times: list[float], tally: Tally, lateness: list[float]
) -> None:
    clock = time.perf_counter
    ws = peer.ws
    sender = peer.participant.index
    user_id = peer.participant.user_id
    for n, intended in enumerate(times):
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        late = clock() - intended
        cid = f"{label}.{n}"
        frame = json.dumps(
            {
                "type": "send",
                "client_msg_id": cid,
                "channel": "joint",
                "text": f"{label}|{sender}|{n}|{intended!r}|{FILLER}",
            },
            ensure_ascii=False,
        )
        try:
            await ws.send(frame)
        except ConnectionClosed:
            tally.send_failed += 1
            continue
        tally.sent += 1
        tally.sent_ids.append((user_id, cid))
        lateness.append(late)


async def run_step(
    server: Server,
    sink: Sink,
    peers: Sequence[Peer],
    *,
    label: str,
    rate: float,
    duration: float,
    drain: float,
) -> StepRun:
    """Offer `rate` messages a second for `duration` seconds, round-robin over the peers."""
    tally = sink.steps[label]
    total = round(rate * duration)
    tally.scheduled = total
    # The client's own garbage collector must not pause it mid-step (a full collection over the
    # tallies takes long enough to make sends late): it runs between steps instead.
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter
        start = clock() + 0.5
        times: dict[int, list[float]] = defaultdict(list)
        for k in range(total):
            times[k % len(peers)].append(start + k / rate)
        lateness: list[float] = []
        lag: list[float] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_loop(stop, lag))
        await asyncio.sleep(max(0.0, start - clock()))
        cpu0, srv0 = _cpu_self(), server.cpu_seconds()
        log_from = server.log_size()
        t0 = clock()
        await asyncio.gather(
            *(_send_schedule(peers[i], label, ts, tally, lateness) for i, ts in times.items())
        )
        t_sent = clock()
        await sink.wait_for(lambda: len(tally.samples) >= 2 * tally.sent, t_sent + drain)
        t_end = clock()
        cpu1, srv1 = _cpu_self(), server.cpu_seconds()
        stop.set()
        await watcher
    finally:
        gc.enable()
    return StepRun(
        server=server.name,
        label=label,
        rate=rate,
        duration=duration,
        window=t_end - t0,
        # The last send is due 1/rate before the end of the step.
        send_window=t_sent - t0 + 1 / rate,
        client_cpu=cpu1 - cpu0,
        server_cpu=srv1 - srv0,
        send_late=lateness,
        loop_lag=lag,
        drain_s=t_end - t_sent,
        slow_syncs_ms=server.slow_syncs_since(log_from),
    )


# Memory ------------------------------------------------------------------------------------------


async def _rss_settled(server: Server, samples: int = 5, gap: float = 0.3) -> int:
    values = []
    for _ in range(samples):
        await asyncio.sleep(gap)
        values.append(server.rss_kib())
    return sorted(values)[len(values) // 2]


async def connect_measured(
    server: Server,
    participants: Sequence[Participant],
    sink: Sink,
    *,
    measure: bool,
    settle: float,
) -> tuple[list[Peer], dict[str, Any]]:
    """Everyone connected, welcomed and resumed, and what that did to the server's RSS.

    A few connections come and go first (imports, caches, the first rooms), so the growth measured
    is the connections' own. The caller closes the connections it does not need afterwards.
    """
    before = 0
    if measure:
        warm = await open_peers(server, participants[-30:], None)
        for peer in warm[::3]:
            frame = {"type": "send", "client_msg_id": f"{MEMORY_WARMUP}.0", "channel": "joint"}
            await peer.ws.send(json.dumps({**frame, "text": "预热"}, ensure_ascii=False))
        await asyncio.sleep(0.5)
        await close_peers(warm)
        await asyncio.sleep(settle)
        before = await _rss_settled(server)
    t = time.perf_counter()
    # In two halves: the growth over the second half alone is the marginal cost of a connection,
    # free of anything the first few hundred set up once.
    half = len(participants) // 2
    peers = await open_peers(server, participants[:half], sink)
    middle = await _rss_settled(server) if measure else 0
    peers += await open_peers(server, participants[half:], sink)
    open_s = time.perf_counter() - t
    memory: dict[str, Any] = {"connections": len(peers), "open_seconds": round(open_s, 2)}
    if measure:
        await asyncio.sleep(settle)
        after = await _rss_settled(server)
        memory.update(
            closed_early=sum(p.reader.done() for p in peers),
            rss_before_kib=before,
            rss_half_kib=middle,
            rss_after_kib=after,
            per_1000_mib=round((after - before) / len(peers) * 1000 / 1024, 2),
            marginal_per_1000_mib=round((after - middle) / (len(peers) - half) * 1000 / 1024, 2),
        )
    return peers, memory


# The run ----------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    import sqlalchemy
    import uvicorn

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "nproc": affinity,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "websockets": websockets_version,
        "uvicorn": uvicorn.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def _rates(args: argparse.Namespace, people: int) -> tuple[list[float], list[float]]:
    """The ladder, without steps that would push anyone past the per-person limit."""
    ceiling = MAX_PER_PERSON_RATE * people
    wanted = [float(r) for r in args.rates.split(",")] if args.rates else []
    if not wanted:
        wanted = [float(r) for r in (QUICK_RATES if args.quick else DEFAULT_RATES)]
    # Each step's deliveries are tallied by its rate: a repeated rate would mix two steps.
    wanted = sorted(set(wanted))
    return [r for r in wanted if r <= ceiling], [r for r in wanted if r > ceiling]


def _pct(values: Sequence[float | None]) -> str:
    return " ".join("-" if v is None else f"{v:.1f}" for v in values)


def _fmt_ms(value: float | None) -> str:
    return "lost" if value is None else f"{value:8.2f}"


def _table(rows: list[StepStats]) -> str:
    head = (
        f"{'server':<6} {'rate/s':>7} {'sent':>6} {'ach/s':>7} {'deliv':>7} {'lost':>5} "
        f"{'dup':>4} {'err':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'late99':>7} {'lag99':>6} {'cli%':>5} {'srv%':>5}  ok"
    )
    lines = [head, "-" * len(head)]
    for s in rows:
        lines.append(
            f"{s.server:<6} {s.rate:>7.0f} {s.sent:>6} {s.achieved_rate:>7.1f} {s.delivered:>7} "
            f"{s.lost:>5} {s.duplicates:>4} {sum(s.errors.values()):>4} {_fmt_ms(s.p50_ms)} "
            f"{_fmt_ms(s.p90_ms)} {_fmt_ms(s.p99_ms)} {_fmt_ms(s.max_ms)} "
            f"{s.send_late_p99_ms:>7.1f} {s.loop_lag_p99_ms:>6.1f} {s.client_cpu_pct:>5.0f} "
            f"{s.server_cpu_pct:>5.0f}  {'yes' if s.sustained else 'no (' + s.note + ')'}"
            + ("  client-bound" if s.client_bound else "")
        )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def compare(rows: list[StepStats]) -> dict[str, Any]:
    """Hejie over bare: per step both ran, at the reference rate, and the sustained rates."""
    by: dict[str, dict[float, StepStats]] = defaultdict(dict)
    for s in rows:
        by[s.server][s.rate] = s
    best = {
        name: max((r for r, s in steps.items() if s.sustained), default=None)
        for name, steps in by.items()
    }
    common = sorted(set(by["hejie"]) & set(by["bare"]))
    per_step = [
        {
            "rate": r,
            "hejie_p50_ms": by["hejie"][r].p50_ms,
            "bare_p50_ms": by["bare"][r].p50_ms,
            "p50_ratio": _ratio(by["hejie"][r].p50_ms, by["bare"][r].p50_ms),
            "hejie_p99_ms": by["hejie"][r].p99_ms,
            "bare_p99_ms": by["bare"][r].p99_ms,
            "p99_ratio": _ratio(by["hejie"][r].p99_ms, by["bare"][r].p99_ms),
            "hejie_sustained": by["hejie"][r].sustained,
            "bare_sustained": by["bare"][r].sustained,
        }
        for r in common
    ]
    # The reference rate: the highest step Hejie sustained (else its lowest step), where the
    # comparison is about the same load on both.
    reference = best["hejie"] if best["hejie"] is not None else (common[0] if common else None)
    at_ref = next((p for p in per_step if p["rate"] == reference), None)
    sustained_ratios = [
        p["p99_ratio"] for p in per_step if p["hejie_sustained"] and p["p99_ratio"] is not None
    ]
    top_bare = max(by["bare"]) if by["bare"] else None
    return {
        "per_step": per_step,
        "reference_rate": reference,
        "p50_ratio_at_reference": at_ref["p50_ratio"] if at_ref else None,
        "p99_ratio_at_reference": at_ref["p99_ratio"] if at_ref else None,
        "p99_ratio_worst_sustained_step": max(sustained_ratios) if sustained_ratios else None,
        "max_sustained_rate": best,
        # The bare relay may sustain the top of the ladder, or be held back by the client: then
        # its rate is a lower bound (and Hejie's share of it an upper bound).
        "bare_at_top_of_ladder": best["bare"] is not None and best["bare"] == top_bare,
        "bare_best_step_client_bound": best["bare"] is not None
        and by["bare"][best["bare"]].client_bound,
        "client_bound_steps": [f"{s.server} {s.rate:g}/s" for s in rows if s.client_bound],
        "sustained_rate_ratio": _ratio(best["hejie"], best["bare"]),
    }


def accounting(sink: Sink, stored: chat_world.Stored | None) -> dict[str, Any]:
    """sent = persisted = delivered, over the whole run (warm-up included) for one server."""
    sent = sum(t.sent for t in sink.steps.values())
    scheduled = sum(t.scheduled for t in sink.steps.values())
    expected = 2 * sent
    delivered_pairs = sum(len(t.delivered) for t in sink.steps.values())
    fully: Counter[tuple[str, int, int]] = Counter()
    for label, t in sink.steps.items():
        for _recipient, sender, n in t.delivered:
            fully[(label, sender, n)] += 1
    out: dict[str, Any] = {
        "scheduled": scheduled,
        "sent": sent,
        "send_failed": sum(t.send_failed for t in sink.steps.values()),
        "acked": sum(t.acked for t in sink.steps.values()),
        "duplicate_acks": sum(t.duplicate_acks for t in sink.steps.values()),
        "errors": dict(sum((t.errors for t in sink.steps.values()), Counter())),
        "errors_outside_steps": dict(sink.unlabelled_errors),
        "delivered_to_both": sum(1 for c in fully.values() if c == 2),
        "deliveries": delivered_pairs,
        "expected_deliveries": expected,
        "lost_deliveries": expected - delivered_pairs,
        "duplicate_deliveries": sum(t.duplicate_seq + t.duplicate_msg for t in sink.steps.values()),
        "own_copies": sum(t.echoes for t in sink.steps.values()),
        "unexpected_closes": dict(sink.closes),
        "foreign_text": sink.foreign_text,
    }
    if stored is not None:
        ids = [i for t in sink.steps.values() for i in t.sent_ids]
        out["persisted"] = sum(1 for i in ids if stored.rows.get(i, 0) >= 1)
        out["persisted_twice"] = sum(1 for i in ids if stored.rows.get(i, 0) > 1)
        out["text_rows_in_db"] = sum(
            c for (_, cid), c in stored.rows.items() if not cid.startswith(MEMORY_WARMUP + ".")
        )
        out["held_in_db"] = stored.held
        out["rooms_with_seq_gaps"] = stored.seq_gaps
        out["rooms_checked"] = stored.rooms_checked
        out["ok"] = (
            sent == scheduled == out["persisted"] == out["delivered_to_both"]
            and out["text_rows_in_db"] == sent
            and not out["persisted_twice"]
            and not out["duplicate_deliveries"]
            and not stored.seq_gaps
        )
    else:
        out["ok"] = (
            sent == scheduled == out["delivered_to_both"] and not out["duplicate_deliveries"]
        )
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    people = 3 * args.rooms
    rates, dropped = _rates(args, people)
    if dropped:
        print(f"note: rates {dropped} skipped (over {MAX_PER_PERSON_RATE}/s per person)")
    tmp = Path(tempfile.mkdtemp(prefix="hejie-bench-", dir=args.data_dir))
    secret = secrets.token_urlsafe(48)
    pg: Any = None
    servers: list[Server] = []
    sinks = {"bare": Sink("bare"), "hejie": Sink("hejie")}
    peers: dict[str, list[Peer]] = {}
    result = bench_io.header(
        "chat.py",
        machine=_machine(),
        settings={k: v for k, v in vars(args).items() if k != "func"},
    )
    try:
        database_url = ""
        if args.db == "postgresql":
            from tests.pg import PostgresServer

            pg = PostgresServer(durable=args.pg_durable)
            await asyncio.to_thread(pg.start)
            database_url = pg.url
        env = _server_env(tmp / "data", secret, database_url)
        settings = Settings(
            env="dev", data_dir=tmp / "data", secret_key=secret, database_url=database_url
        )
        result["database"] = settings.database_url.split("@")[-1]
        result["data_dir"] = str(tmp)
        print(f"database: {args.db} ({result['database']})")
        hejie_cli = Path(sys.executable).parent / "hejie"
        t = time.perf_counter()
        await asyncio.to_thread(
            subprocess.run,
            [str(hejie_cli), "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        mem_rooms = math.ceil(args.mem_conns / 3)
        participants = await chat_world.build(settings, max(args.rooms, mem_rooms))
        print(
            f"setup: {max(args.rooms, mem_rooms)} live rooms, {len(participants)} people "
            f"in {time.perf_counter() - t:.1f}s"
        )
        py = sys.executable
        hejie_env = env
        if args.wal_stall:
            hejie_env = {**env, **_slow_wal_env(args.wal_stall, tmp)}
            result["wal_stall"] = args.wal_stall
        servers = [
            Server("bare", [py, str(BENCH / "relay.py")], env, tmp / "bare.log"),
            Server(
                "hejie",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "app.main:create_app",
                    "--factory",
                    "--ws-per-message-deflate",
                    "false",
                    "--host",
                    "127.0.0.1",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                hejie_env,
                tmp / "hejie.log",
            ),
        ]
        for s in servers:
            s.start()
        await asyncio.gather(*(s.ready() for s in servers))

        # Everyone connects; the RSS growth for (at least) 1,000 idle connections is measured on
        # the way. The connections of the rooms are then kept open through every step.
        connections = max(people, args.mem_conns)
        order = list(range(people))
        random.Random(args.seed).shuffle(order)  # noqa: S311 - a reproducible send order
        result["memory"] = {}
        for s in servers:
            opened, m = await connect_measured(
                s,
                participants[:connections],
                sinks[s.name],
                measure=args.mem_conns > 0,
                settle=args.settle,
            )
            await close_peers(opened[people:])
            peers[s.name] = [opened[i] for i in order]
            result["memory"][s.name] = m
            line = f"{s.name:<5}: {connections} connections open in {m['open_seconds']}s"
            if "per_1000_mib" in m:
                line += (
                    f"; RSS {m['rss_before_kib'] / 1024:.1f} → {m['rss_after_kib'] / 1024:.1f} MiB,"
                    f" {m['per_1000_mib']:.2f} MiB per 1,000 idle connections"
                    f" (second half alone {m['marginal_per_1000_mib']:.2f})"
                )
            print(line, flush=True)
        if args.mem_conns:
            mem = result["memory"]
            mem["ratio"] = _ratio(mem["hejie"]["per_1000_mib"], mem["bare"]["per_1000_mib"])
            mem["marginal_ratio"] = _ratio(
                mem["hejie"]["marginal_per_1000_mib"], mem["bare"]["marginal_per_1000_mib"]
            )
        # What is alive now lives to the end: keep the collector from walking it again and again.
        gc.collect()
        gc.freeze()
        for s in servers:
            await run_step(
                s,
                sinks[s.name],
                peers[s.name],
                label="warm",
                rate=args.warmup_rate,
                duration=args.warmup,
                drain=args.drain,
            )
        await asyncio.sleep(args.pause)

        runs: list[StepRun] = []
        active = {s.name: True for s in servers}
        failures: Counter[str] = Counter()
        for i, rate in enumerate(rates):
            # Alternate who goes first, so drift over the run does not favour one server.
            for s in servers if i % 2 == 0 else servers[::-1]:
                if not active[s.name]:
                    continue
                label = f"r{rate:g}"
                step = await run_step(
                    s,
                    sinks[s.name],
                    peers[s.name],
                    label=label,
                    rate=rate,
                    duration=args.duration,
                    drain=args.drain,
                )
                runs.append(step)
                now = summarise(step, sinks[s.name].steps[label])
                print(
                    f"  {s.name:<5} {rate:>6.0f}/s  p50 {_fmt_ms(now.p50_ms).strip()} ms  "
                    f"p99 {_fmt_ms(now.p99_ms).strip()} ms  lost {now.lost}  "
                    f"err {sum(now.errors.values())}  client {now.client_cpu_pct:.0f}%  "
                    f"server {now.server_cpu_pct:.0f}%  {'ok' if now.sustained else now.note}"
                    + _slow_note(now),
                    flush=True,
                )
                if not now.sustained:
                    failures[s.name] += 1
                    if failures[s.name] >= args.patience:
                        active[s.name] = False
                await asyncio.sleep(args.pause)
            if not any(active.values()):
                break

        # Stragglers of the last steps have until now to arrive; then everything is counted.
        deadline = time.perf_counter() + args.final_drain
        for sink in sinks.values():
            await sink.wait_for(sink.drained, deadline)
        stats = [summarise(r, sinks[r.server].steps[r.label]) for r in runs]
        stored = await chat_world.stored(settings)
        result["steps"] = [asdict(s) for s in stats]
        result["comparison"] = compare(stats)
        result["accounting"] = {
            "hejie": accounting(sinks["hejie"], stored),
            "bare": accounting(sinks["bare"], None),
        }
        result["loadavg_end"] = os.getloadavg()
        for s in servers:
            if s.proc is not None and s.proc.poll() is not None:
                result.setdefault("server_exits", {})[s.name] = s.proc.returncode
        return result
    finally:
        for group in peers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_peers(group), 60)
        for s in servers:
            s.stop()
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _slow_syncs(s: StepStats) -> str:
    return f"{s.slow_syncs} (max {s.slow_sync_max_ms:.0f} ms)"


def _slow_note(s: StepStats) -> str:
    return f"  slow WAL syncs {_slow_syncs(s)}" if s.slow_syncs else ""


def _slow_lines(stats: Sequence[StepStats]) -> list[str]:
    """The disk's part: the WAL syncs the server logged as slow, step by step."""
    slow = [s for s in stats if s.slow_syncs]
    if not slow:
        return []
    return [
        f"slow WAL syncs (>= {SLOW_SYNC_SECONDS * 1000:g} ms, logged by the server; every message "
        "waits for its sync): " + "; ".join(f"{s.rate:g}/s {_slow_syncs(s)}" for s in slow)
    ]


def _stall_line(result: dict[str, Any]) -> list[str]:
    stall = result.get("wal_stall")
    if not stall:
        return []
    return [
        "slow disk (bench/slow_wal.c): each Hejie WAL sync {ms:g} ms longer for {for_s:g} s "
        "every {every_s:g} s (0 s: one sync)".format(**stall)
    ]


def report(result: dict[str, Any]) -> str:
    stats = [StepStats(**s) for s in result["steps"]]
    cmp = result["comparison"]
    lines = [
        f"Hejie chat benchmark — {result['started']}",
        f"command: {result['command']}",
        "machine: {nproc} cores, Python {python}, {platform}, websockets {websockets}, "
        "uvicorn {uvicorn}, SQLite {sqlite}".format(**result["machine"]),
        f"database: {result['database']}",
        *_stall_line(result),
        "",
        _table(stats),
        "",
        "late99: p99 of (actual − intended) send time in the client; lag99: p99 of the client's "
        "event-loop lag; cli%/srv%: CPU of the client / the server process over the step; "
        f"client-bound: late99 or lag99 over {CLIENT_BOUND_MS:g} ms (the client, not only the "
        "server, set the latency).",
        *_slow_lines(stats),
        "",
    ]
    best = cmp["max_sustained_rate"]
    lines.append(
        f"max sustained rate (p99 < 100 ms, nothing lost/duplicated/refused): hejie "
        f"{best.get('hejie')}/s, bare {best.get('bare')}/s"
        + (" (top of the ladder: a lower bound)" if cmp["bare_at_top_of_ladder"] else "")
        + (" (client-bound: a lower bound)" if cmp["bare_best_step_client_bound"] else "")
        + f"  → ratio {cmp['sustained_rate_ratio']}"
    )
    lines.append(
        f"at {cmp['reference_rate']}/s: p50 ratio {cmp['p50_ratio_at_reference']}×, "
        f"p99 ratio {cmp['p99_ratio_at_reference']}× (hejie / bare); "
        f"worst p99 ratio over Hejie's sustained steps {cmp['p99_ratio_worst_sustained_step']}×"
    )
    for p in cmp["per_step"]:
        lines.append(
            f"  {p['rate']:>6.0f}/s  p50 {p['p50_ratio']}×  p99 {p['p99_ratio']}×  "
            f"(hejie {_pct([p['hejie_p50_ms'], p['hejie_p99_ms']])} ms, "
            f"bare {_pct([p['bare_p50_ms'], p['bare_p99_ms']])} ms)"
        )
    mem = result.get("memory") or {}
    if "ratio" in mem:
        lines.append(
            f"memory per 1,000 idle connections: hejie {mem['hejie']['per_1000_mib']} MiB, "
            f"bare {mem['bare']['per_1000_mib']} MiB → ratio {mem['ratio']}× "
            f"(second half alone: hejie {mem['hejie']['marginal_per_1000_mib']} MiB, "
            f"bare {mem['bare']['marginal_per_1000_mib']} MiB → {mem['marginal_ratio']}×)"
        )
    for name, acc in result["accounting"].items():
        persisted = f", persisted {acc['persisted']}" if "persisted" in acc else ""
        lines.append(
            f"{name}: scheduled {acc['scheduled']}, sent {acc['sent']}{persisted}, delivered to "
            f"both others {acc['delivered_to_both']}; lost deliveries {acc['lost_deliveries']}, "
            f"duplicates {acc['duplicate_deliveries']}, errors {acc['errors'] or 0}, "
            f"unexpected closes {acc['unexpected_closes'] or 0} → "
            f"{'OK' if acc['ok'] else 'MISMATCH'}"
        )
    return "\n".join(lines)


def _wal_stall(text: str) -> dict[str, float]:
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("MS,EVERY[,FOR]: numbers") from None
    if len(numbers) not in (2, 3) or min(numbers) < 0 or numbers[1] <= 0:
        raise argparse.ArgumentTypeError("MS,EVERY[,FOR]: MS and FOR >= 0, EVERY > 0")
    return {"ms": numbers[0], "every_s": numbers[1], "for_s": numbers[2] if numbers[2:] else 0.0}


def _slow_wal_env(stall: dict[str, float], build_dir: Path) -> dict[str, str]:
    """Build bench/slow_wal.c and the environment that loads it into a server."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--wal-stall needs a C compiler (cc or gcc)")
    library = build_dir / "slow_wal.so"
    subprocess.run(  # noqa: S603 - the system's compiler on our own source
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            str(library),
            str(BENCH / "slow_wal.c"),
            "-ldl",
        ],
        check=True,
    )
    return {
        "LD_PRELOAD": str(library),
        "HEJIE_WAL_STALL_MS": f"{stall['ms']:g}",
        "HEJIE_WAL_STALL_EVERY": f"{stall['every_s']:g}",
        "HEJIE_WAL_STALL_FOR": f"{stall['for_s']:g}",
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/chat.py",
        description="Hejie's live room against a bare websockets relay (see bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="about a minute: short, coarse steps")
    parser.add_argument("--rooms", type=int, default=300, help="live rooms of 3 (default 300)")
    parser.add_argument(
        "--rates",
        default="",
        help="comma-separated offered rates, messages/s over all rooms "
        f"(default {','.join(map(str, DEFAULT_RATES))}; --quick {','.join(map(str, QUICK_RATES))})",
    )
    parser.add_argument("--duration", type=float, help="seconds per step (default 10, quick 3)")
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="max wait after a step for its last deliveries, so an overloaded server has caught "
        "up before the next step (s)",
    )
    parser.add_argument("--final-drain", type=float, default=20.0, help="max wait at the end (s)")
    parser.add_argument("--pause", type=float, default=1.0, help="idle between steps (s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up step length (s)")
    parser.add_argument("--warmup-rate", type=float, default=100.0, help="warm-up rate (msgs/s)")
    parser.add_argument(
        "--patience",
        type=int,
        help="stop a server's ladder after this many failed steps (default 2, quick 1)",
    )
    parser.add_argument(
        "--mem-conns", type=int, default=1000, help="idle connections for memory (0: skip)"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="wait before reading RSS (s)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="with --db postgresql: PostgreSQL's own durability (fsync, synchronous_commit and "
        "full_page_writes on), as deployed, instead of the test suite's server that skips syncs",
    )
    parser.add_argument("--data-dir", help="parent of the scratch directory (default: $TMPDIR)")
    parser.add_argument(
        "--wal-stall",
        type=_wal_stall,
        metavar="MS,EVERY[,FOR]",
        help="a slow disk on schedule (bench/slow_wal.c, built with the system's C compiler): "
        "Hejie's WAL syncs take MS ms longer for FOR s (default 0: one sync) every EVERY s; "
        "use with --data-dir /dev/shm",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (db, logs)")
    parser.add_argument("--out", help="JSON file (default bench/results/chat-<timestamp>.json)")
    args = parser.parse_args(argv)
    if args.pg_durable and args.db != "postgresql":
        parser.error("--pg-durable is for --db postgresql")
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.patience is None:
        args.patience = 1 if args.quick else 2
    if args.quick:
        args.warmup = min(args.warmup, 2.0)
        args.drain = min(args.drain, 10.0)
        args.final_drain = min(args.final_drain, 10.0)
        args.pause = min(args.pause, 0.5)
    return args


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(bench(args))
    text = report(result)
    print()
    print(text)
    out = (
        Path(args.out)
        if args.out
        else bench_io.RESULTS / f"chat-{datetime.now():%Y%m%d-%H%M%S}.json"
    )
    bench_io.save(out, result, text)
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    ok = all(a["ok"] for a in result["accounting"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Checking processes for a large portfolio import: the CPU work off the importing process.

Reading, checking and sealing a row (AES-GCM, keyed hashes, the ID number's check digit) costs
about as much as writing it. In a thread they would share the GIL with the writes; in `workers`
child processes they run beside them, on the machine's other cores.

Each child (`python -m app.batch.checker`) receives one job on stdin (the file, the secret, the
date, its share) and answers on stdout with length-prefixed pickles, one per message:

    ("batch", Batch)      the next batch of its share, in file order
    ("error", text)       the file cannot be read on (an `ImportFileError`'s text)
    ("end", None)         no more batches

Child k checks batches k, k + workers, k + 2·workers, …; the parent reads batch i from child
i mod workers, so batches arrive in file order. The parent reads each child's answers as they
come, up to `AHEAD` batches beyond the one being written; past that the child blocks writing into
its full pipe, so memory stays bounded. The pickles are trusted: they come from a child
this process started, over its own pipe. The secret travels on stdin, never on the command line
or in the environment. Nothing is logged about rows.
"""

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import app
from app import security
from app.batch import rows

_HEADER = struct.Struct("!Q")
# The package's own directory, first on the children's path wherever the parent was started.
_ROOT = str(Path(app.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Job:
    path: str
    secret: str
    today: date
    part: int
    parts: int
    batch_rows: int


class CheckerFailed(Exception):
    """A checking process stopped without finishing its share."""


# --- the child -----------------------------------------------------------------------------------


def _send(out: BinaryIO, kind: str, payload: Any) -> None:
    body = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(body)))
    out.write(body)
    out.flush()


def _serve(source: BinaryIO, out: BinaryIO) -> None:
    (size,) = _HEADER.unpack(source.read(_HEADER.size))
    job: Job = pickle.loads(source.read(size))  # noqa: S301 (from our own parent process)
    sealer = security.FieldSealer(job.secret)
    try:
        for batch in rows.batches(
            Path(job.path),
            sealer,
            today=job.today,
            part=job.part,
            parts=job.parts,
            batch_rows=job.batch_rows,
        ):
            _send(out, "batch", batch)
    except rows.ImportFileError as exc:
        _send(out, "error", str(exc))
        return
    _send(out, "end", None)


def main() -> None:
    # The protocol owns the real stdout; anything printed by accident goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    try:
        _serve(sys.stdin.buffer, out)
    except BrokenPipeError:  # the parent stopped reading (the import was cancelled)
        pass
    except Exception as exc:  # the type only: a message could quote a row
        print(f"checker stopped: {type(exc).__name__}", file=sys.stderr)
        sys.exit(1)


# --- the parent ----------------------------------------------------------------------------------


async def _start(job: Job) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.batch.checker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None
    body = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    process.stdin.write(_HEADER.pack(len(body)) + body)
    await process.stdin.drain()
    process.stdin.close()
    return process


async def _receive(process: asyncio.subprocess.Process) -> tuple[str, Any]:
    assert process.stdout is not None
    try:
        header = await process.stdout.readexactly(_HEADER.size)
        body = await process.stdout.readexactly(_HEADER.unpack(header)[0])
    except asyncio.IncompleteReadError:
        code = await process.wait()
        raise CheckerFailed(f"a checking process stopped (exit status {code})") from None
    message: tuple[str, Any] = pickle.loads(body)  # noqa: S301 (from our own child process)
    return message


async def checked_batches(
    path: Path,
    secret: str,
    *,
    today: date,
    workers: int,
    batch_rows: int = rows.BATCH_ROWS,
) -> AsyncGenerator[rows.Batch, None]:
    """The file's batches in order, checked and sealed by `workers` child processes.

    Raises `ImportFileError` as the file would inline, and `CheckerFailed` if a child dies.
    Leaving the iteration early (an error, a cancelled import) stops the children.
    """
    processes = [
        await _start(Job(str(path), secret, today, part, workers, batch_rows))
        for part in range(workers)
    ]
    # Each child's answers are read as they come, up to AHEAD batches, while the caller writes:
    # a child blocked on a full pipe (64 KiB, a fraction of a batch) would wait for every write.
    inboxes = [asyncio.Queue[tuple[str, Any] | CheckerFailed](AHEAD) for _ in processes]
    readers = [
        asyncio.create_task(_read_ahead(process, inbox))
        for process, inbox in zip(processes, inboxes, strict=True)
    ]
    try:
        index = 0
        while True:
            message = await inboxes[index % workers].get()
            if isinstance(message, CheckerFailed):
                raise message
            kind, payload = message
            if kind == "error":
                raise rows.ImportFileError(payload)
            if kind == "end":
                break
            yield payload
            index += 1
        # The others end at the same batch count.
        await asyncio.gather(*readers)
        for process in processes:
            await process.wait()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


# Batches read ahead from each child, in memory in the parent: 5,000 sealed rows are ~5 MiB.
AHEAD = 2


async def _read_ahead(
    process: asyncio.subprocess.Process,
    inbox: "asyncio.Queue[tuple[str, Any] | CheckerFailed]",
) -> None:
    """A child's messages into its inbox until its last; its failure as the last message."""
    while True:
        try:
            message = await _receive(process)
        except CheckerFailed as exc:
            await inbox.put(exc)
            return
        await inbox.put(message)
        if message[0] != "batch":
            return


if __name__ == "__main__":
    main()

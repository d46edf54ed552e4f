"""Work this process does in the background for a request (a portfolio import, a round of
invitations), by kind and id: tests await it, and shutting down stops it, so each job records
itself as interrupted instead of being found stale minutes later."""

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from fastapi import FastAPI


def running(app: FastAPI, kind: str) -> dict[str, "asyncio.Task[Any]"]:
    """The jobs of `kind` running in this process, by id."""
    jobs: dict[str, dict[str, asyncio.Task[Any]]] | None = getattr(app.state, "jobs", None)
    if jobs is None:
        jobs = app.state.jobs = {}
    return jobs.setdefault(kind, {})


def launch(
    app: FastAPI, kind: str, key: str, work: Coroutine[Any, Any, Any]
) -> "asyncio.Task[Any]":
    tasks = running(app, kind)
    task = asyncio.create_task(work, name=f"{kind}-{key}")
    tasks[key] = task
    task.add_done_callback(lambda _t: tasks.pop(key, None))
    return task


def every(app: FastAPI) -> list["asyncio.Task[Any]"]:
    """Every job running in this process, of every kind."""
    return [t for kind in getattr(app.state, "jobs", {}).values() for t in list(kind.values())]


async def stop_all(app: FastAPI) -> None:
    """Cancel every job and wait for each to record that it was interrupted."""
    tasks = every(app)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

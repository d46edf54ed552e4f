"""What the server writes about requests: never the query string, which can hold personal data.

A mediator's search (`/mediator/search?q=<phone>`) or any filter would otherwise put a phone
number or a name into uvicorn's access log, and from there into log shipping.
"""

import logging
from typing import Any


class DropQueryStrings(logging.Filter):
    """Replace the query of the request line in uvicorn's access log with `?…`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn: (client address, method, path with query, HTTP version, status code)
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _ = args[2].partition("?")
            if sep:
                redacted: list[Any] = list(args)
                redacted[2] = f"{path}?…"
                record.args = tuple(redacted)
        return True


def redact_access_log() -> None:
    """Install the filter once on uvicorn's access logger (idempotent: apps are made often)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropQueryStrings) for f in access.filters):
        access.addFilter(DropQueryStrings())

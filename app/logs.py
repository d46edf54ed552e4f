"""What the server writes about requests: never the query string, which can hold personal data.

A mediator's search (`/mediator/search?q=<phone>`) or any filter would otherwise put a phone
number or a name into uvicorn's access log, and from there into log shipping.

The audit events (`app.audit.chain`) also go to stdout, one JSON line each, for shipping; they
carry ids and codes only.
"""

import json
import logging
import sys
from datetime import UTC, datetime
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


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and the record's
    `json_fields` (what the caller chose to ship; never the request's personal data)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


class CurrentStream(logging.Handler):
    """Write to whatever `sys.stdout` (or `sys.stderr`) is when the record comes: servers and
    tests swap them after the handler is made."""

    def __init__(self, stream_name: str = "stdout") -> None:
        super().__init__()
        self.stream_name = stream_name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = getattr(sys, self.stream_name)
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


AUDIT_LOGGER = "hejie.audit"


def audit_json_lines(stream_name: str = "stdout") -> logging.Handler:
    """The audit events as JSON lines on stdout (or stderr), for shipping; idempotent.

    Only the `hejie.audit` logger is touched, and it does not pass its records on: uvicorn's
    access log and the other application loggers keep their own handlers and format.
    """
    audit = logging.getLogger(AUDIT_LOGGER)
    audit.setLevel(logging.INFO)
    audit.propagate = False
    for handler in audit.handlers:
        if isinstance(handler, CurrentStream) and handler.stream_name == stream_name:
            return handler
    added = CurrentStream(stream_name)
    added.setFormatter(JsonLines())
    audit.addHandler(added)
    return added


def audit_to_stdout() -> None:
    """The server's audit JSON lines go to stdout (apps are made often: once is enough)."""
    audit_json_lines("stdout")


def stop_audit_json_lines(handler: logging.Handler) -> None:
    logging.getLogger(AUDIT_LOGGER).removeHandler(handler)

"""Portfolio import schemas (the import's progress and counts)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class ImportRead(BaseModel):
    """One import: its progress (rows done of total) and what became of the rows."""

    id: str
    status: Literal["running", "done", "failed"]
    filename: str
    file_sha256: str
    rows_total: int | None
    rows_done: int
    rows_created: int
    rows_updated: int
    rows_unchanged: int
    rows_failed: int
    failure: str | None
    started_at: datetime
    finished_at: datetime | None

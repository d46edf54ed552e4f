"""Core statements compiled once and run on a driver's own connection, for the room's writers.

Each room message runs the same two statements (the claim of a seq, the insert). Through a
SQLAlchemy connection each execution pays for the statement's cache lookup, the parameters'
processing and the result's wrapping, per message; the writers compile them once here and apply
the same conversions (UTC times, JSON) SQLAlchemy would apply to the parameters and the results.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any] | None


class Prepared:
    """A statement compiled for one dialect: its SQL, its positional values, its converted rows."""

    def __init__(self, statement: UpdateBase, dialect: Dialect, keys: Sequence[str] = ()) -> None:
        self._compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
        self.sql = self._compiled.string
        names = self._compiled.positiontup or []
        if keys and not set(names) <= set(keys):
            raise ValueError(f"parameters without values: {sorted(set(names) - set(keys))}")
        binds = self._compiled.binds
        self._params: list[tuple[str, Processor]] = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        self._results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.exported_columns
        ]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The statement's positional values for `params` (its defaults filled in)."""
        values = self._compiled.construct_params(dict(params))
        return [values[n] if p is None else p(values[n]) for n, p in self._params]

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The driver's result rows with each column converted as SQLAlchemy would."""
        return [
            tuple(
                value if p is None else p(value)
                for p, value in zip(self._results, row, strict=True)
            )
            for row in raw
        ]

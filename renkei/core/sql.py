"""Lean execution of a hot statement: compiled once per dialect, run on the DB-API cursor.

Why: on the inquiry path a node runs about ten small statements per inquiry, and
``Session.execute`` spends several times the database's own time per statement in
SQLAlchemy's execution machinery (connection lookup, execution context, parameter
processing through dictionaries, the result object and its metadata). A `Prepared`
statement works that out once per process and dialect — the SQL text, where each
driver parameter comes from, each bind's type processor, each result column's
processor — and then only builds the driver's parameters, calls ``cursor.execute``
and converts the rows.

What stays as with ``Session.execute``:

- the statement runs on the session's connection, in the session's transaction
  (begun by it when none is: the engine's ``begin`` events fire, so
  `renkei.core.db.serialize_transactions` still holds);
- values go through the same type processors both ways (SQLAlchemy's own, taken from
  the compiled statement), so a `UtcDateTime`, a JSON column or a date reads and
  writes exactly as through Core;
- the engine's ``before_cursor_execute`` / ``after_cursor_execute`` listeners run
  (`renkei.core.db.forbid_event_loop_io` among them);
- a driver error becomes SQLAlchemy's exception (``IntegrityError`` …) through the
  connection's own handler, which also notices a lost connection.

What it does not do: ORM statements (no autoflush, no entities: give it Core
statements on tables), ``IN`` lists of varying length (expanding binds), Python-side
defaults other than constants, several rows of values in one call (`executemany` runs
driver-level rows), the engine's ``echo`` logging. All but the last are refused when
the statement is first prepared for a dialect, not silently run differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy.engine import BindTyping, Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Prepared", "executemany"]

_NO_PARAMS: Final[Mapping[str, Any]] = {}
_MAX_DIALECTS: Final = 64  # plans kept per statement (one per engine's dialect; tests make many)


class _Plan:
    """What running the statement on one dialect needs, worked out once."""

    __slots__ = ("sql", "slots", "positional", "result_types", "result_keys", "processors")

    def __init__(
        self,
        sql: str,
        slots: list[tuple[str, str | None, Any, Any]],
        positional: bool,
        result_types: list[Any] | None,
        result_keys: list[str],
    ) -> None:
        self.sql = sql
        # Per driver parameter: (its name for the driver, the caller's key or None for a
        # value fixed in the statement, that value already converted, the bind processor
        # of the caller's value or None).
        self.slots = slots
        self.positional = positional
        self.result_types = result_types
        self.result_keys = result_keys  # the columns' names, as a Core row mapping has them
        # Per result column, filled on the first run (the driver's column type codes are
        # needed): None when no column needs converting.
        self.processors: list[Any] | None = None


class Prepared:
    """A Core statement run lean (see the module docstring).

    ``keys`` are the names of the values each call passes: for an INSERT or UPDATE whose
    values come from the call they are also the columns written, as ``Session.execute``
    would take them from the first parameter dictionary. Every call must pass exactly
    these keys (a missing one is a KeyError, an extra one a ValueError: a column the
    caller means to write must not be dropped silently).

    ``statement`` may also be a mapping of dialect name → statement, for a statement
    written in each backend's own dialect (``INSERT … ON CONFLICT`` of
    ``sqlalchemy.dialects.sqlite`` / ``postgresql``); another dialect is refused.
    """

    __slots__ = ("statement", "keys", "_nkeys", "_plans")

    def __init__(
        self, statement: ClauseElement | Mapping[str, ClauseElement], keys: Iterable[str] = ()
    ) -> None:
        for one in statement.values() if isinstance(statement, Mapping) else [statement]:
            if one._propagate_attrs.get("compile_state_plugin") == "orm":
                raise TypeError("Prepared takes Core statements (on tables), not ORM ones")
        self.statement = statement
        self.keys: tuple[str, ...] = tuple(keys)
        self._nkeys = len(self.keys)
        self._plans: dict[Dialect, _Plan] = {}

    # --- running ----------------------------------------------------------------------

    def all(
        self, session: Session, params: Mapping[str, Any] = _NO_PARAMS
    ) -> list[tuple[Any, ...]]:
        """Every row, as tuples of Python values."""
        return self._run(session, params, 0)  # type: ignore[no-any-return]

    def first(
        self, session: Session, params: Mapping[str, Any] = _NO_PARAMS
    ) -> tuple[Any, ...] | None:
        """The first row, or None."""
        rows: list[tuple[Any, ...]] = self._run(session, params, 1)
        return rows[0] if rows else None

    def scalar(self, session: Session, params: Mapping[str, Any] = _NO_PARAMS) -> Any:
        """The first column of the first row, or None when there is no row."""
        rows: list[tuple[Any, ...]] = self._run(session, params, 1)
        return rows[0][0] if rows else None

    def scalars(self, session: Session, params: Mapping[str, Any] = _NO_PARAMS) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self._run(session, params, 0)]

    def first_mapping(
        self, session: Session, params: Mapping[str, Any] = _NO_PARAMS
    ) -> dict[str, Any] | None:
        """The first row as a dict by column name (as ``.mappings().first()``), or None."""
        rows: list[tuple[Any, ...]] = self._run(session, params, 1)
        if not rows:
            return None
        return dict(zip(self._keys(session), rows[0], strict=True))

    def mappings(
        self, session: Session, params: Mapping[str, Any] = _NO_PARAMS
    ) -> list[dict[str, Any]]:
        """Every row as a dict by column name (as ``.mappings().all()``)."""
        rows: list[tuple[Any, ...]] = self._run(session, params, 0)
        if not rows:
            return []
        keys = self._keys(session)
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def _keys(self, session: Session) -> list[str]:
        dialect = session.connection().dialect
        return (self._plans.get(dialect) or self._plan(dialect)).result_keys

    def run(self, session: Session, params: Mapping[str, Any] = _NO_PARAMS) -> int:
        """Run a statement returning no rows; the driver's count of rows it changed."""
        return self._run(session, params, -1)  # type: ignore[no-any-return]

    def _run(self, session: Session, params: Mapping[str, Any], want: int) -> Any:
        """``want``: 0 every row, 1 the first row (as a list of at most one), -1 the rowcount."""
        if len(params) != self._nkeys:
            raise ValueError(
                f"Prepared: expected the values {sorted(self.keys)}, got {sorted(params)}"
            )
        conn = session.connection()
        dialect = conn.dialect
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plan(dialect)
        sql = plan.sql
        try:
            if plan.positional:
                args: Any = tuple(
                    [
                        (proc(params[key]) if proc is not None else params[key])
                        if key is not None
                        else fixed
                        for _name, key, fixed, proc in plan.slots
                    ]
                )
            else:
                args = {
                    name: (
                        (proc(params[key]) if proc is not None else params[key])
                        if key is not None
                        else fixed
                    )
                    for name, key, fixed, proc in plan.slots
                }
        except Exception as e:
            # A value its type refuses (a naive datetime …): a StatementError naming the
            # statement, as through Core.
            conn._handle_dbapi_exception(e, sql, params, None, None)
        out, description = _execute(conn, dialect, sql, args, want)
        if want < 0 or not out:
            return out
        return self._convert(plan, dialect, description, out)

    @staticmethod
    def _convert(
        plan: _Plan, dialect: Dialect, description: Any, rows: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        procs = plan.processors
        if procs is None:
            procs = plan.processors = _result_processors(plan, dialect, description)
        if not procs:
            return list(rows)
        return [
            tuple([(p(v) if p is not None else v) for p, v in zip(procs, row, strict=True)])
            for row in rows
        ]

    # --- planning -----------------------------------------------------------------------

    def _plan(self, dialect: Dialect) -> _Plan:
        if dialect.bind_typing is BindTyping.SETINPUTSIZES:
            raise NotImplementedError(f"Prepared: {dialect.name} binds with setinputsizes")
        statement = self.statement
        if isinstance(statement, Mapping):
            if dialect.name not in statement:
                raise NotImplementedError(f"Prepared: no statement for {dialect.name}")
            statement = statement[dialect.name]
        compiled = statement.compile(dialect=dialect, column_keys=list(self.keys) or None)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise NotImplementedError("Prepared: expanding (IN list) or literal-execute binds")
        if compiled.update_prefetch:
            raise NotImplementedError("Prepared: Python-side onupdate defaults")
        fixed_defaults: dict[str, Any] = {}
        if compiled.insert_prefetch:
            key_of = compiled._within_exec_param_key_getter
            for col in compiled.insert_prefetch:
                default = col.default
                if default is None or not getattr(default, "is_scalar", False):
                    raise NotImplementedError(
                        f"Prepared: Python-side default of {col.name} is not a constant"
                    )
                fixed_defaults[key_of(col)] = default.arg  # type: ignore[attr-defined]
        wanted = set(self.keys)
        binds: dict[str, tuple[str | None, Any]] = {}  # bind name → (caller's key, fixed value)
        for bind, name in compiled.bind_names.items():
            if name in fixed_defaults:
                binds[name] = (None, fixed_defaults[name])
            elif bind.key in wanted:
                binds[name] = (bind.key, None)
            elif name in wanted:
                binds[name] = (name, None)
            elif bind.callable is not None:
                raise NotImplementedError(f"Prepared: bind {bind.key} has a callable value")
            elif bind.required:
                raise ValueError(
                    f"Prepared: no value for bind parameter {bind.key!r} among {sorted(wanted)}"
                )
            else:
                binds[name] = (None, bind.value)
        processors = compiled._bind_processors
        escaped = compiled.escaped_bind_names
        if compiled.positional:
            order = list(compiled.positiontup or ())
        else:
            order = list(binds)
        slots: list[tuple[str, str | None, Any, Any]] = []
        for name in order:
            key, fixed = binds[name]
            proc = processors.get(name)
            if proc is not None and not callable(proc):
                raise NotImplementedError("Prepared: tuple-typed binds")
            if key is None:  # a value fixed in the statement: converted once, here
                slots.append(
                    (
                        escaped.get(name, name),
                        None,
                        proc(fixed) if proc is not None else fixed,
                        None,
                    )
                )
            else:
                slots.append((escaped.get(name, name), key, None, proc))
        columns = compiled._result_columns or []
        result_types = [entry[3] for entry in columns] if columns else None
        result_keys = [entry[0] for entry in columns]
        plan = _Plan(compiled.string, slots, compiled.positional, result_types, result_keys)
        if len(self._plans) >= _MAX_DIALECTS:
            self._plans.clear()
        self._plans[dialect] = plan
        return plan


def _result_processors(plan: _Plan, dialect: Dialect, description: Sequence[Any]) -> list[Any]:
    """Each result column's processor, as a Core result would pick it (by position, with
    the driver's type code); an empty list when none converts anything."""
    types = plan.result_types
    if types is None or len(types) != len(description):
        raise NotImplementedError("Prepared: result columns do not match the statement's")
    procs = [
        t._cached_result_processor(dialect, d[1]) for t, d in zip(types, description, strict=True)
    ]
    return procs if any(p is not None for p in procs) else []


def _execute(
    conn: Connection, dialect: Dialect, sql: str, args: Any, want: int, many: bool = False
) -> tuple[Any, Any]:
    """Run driver-level ``sql`` on the connection's DB-API connection as Core would: the
    engine's ``before_cursor_execute`` / ``after_cursor_execute`` listeners around it, a
    driver error through the connection's handler. ``want``: 0 every row, 1 at most the
    first, -1 the rowcount. Returns (rows or rowcount, the cursor's description)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        events = conn._has_events or conn.engine._has_events
        if events:
            for fn in conn.dispatch.before_cursor_execute:
                sql, args = fn(conn, cursor, sql, args, None, many)
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
        if events:
            conn.dispatch.after_cursor_execute(conn, cursor, sql, args, None, many)
        description = cursor.description
        if want < 0:
            out: Any = cursor.rowcount
        elif description is None:
            out = []
        else:
            out = cursor.fetchall() if want == 0 else cursor.fetchmany(1)
        cursor.close()
    except BaseException as e:
        if isinstance(e, Exception) and not isinstance(e, dialect.loaded_dbapi.Error):
            # Not the driver's (a listener's refusal …): raised as it is, as through Core.
            cursor.close()
            raise
        # The driver's error as SQLAlchemy's (IntegrityError …), a lost connection
        # invalidated, the cursor closed: the connection's own handler.
        conn._handle_dbapi_exception(e, sql, args, cursor, None)
    return out, description


def executemany(session: Session, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Driver-level ``sql`` (the dialect's paramstyle) for each of ``rows`` in one
    executemany on the session's connection, in its transaction, with the engine's
    statement listeners and Core's error handling; the driver's rowcount. For bulk
    writes whose values are already in the driver's form (`Prepared` converts them)."""
    conn = session.connection()
    count: int = _execute(conn, conn.dialect, sql, rows, -1, many=True)[0]
    return count

"""The synchronous logger: one log_call() per tool call, committed before the
call returns (its own autocommit connection), or inside the caller's
transaction when asked for explicitly."""

import contextlib
import functools
import inspect
import logging
import threading
import time
from typing import Any, Callable, Optional

import psycopg

from ._record import (BEGIN_CALL_SQL, END_CALL_SQL, LOG_CALL_SQL, LOG_EVENT_SQL, CallRecord, ContextArg, LoggedCall,
                      bound_arguments, failure_result, is_event_id_conflict, jsonb,
                      resolve_context, utc_now_iso)

log = logging.getLogger("tool_audit_client")


class AuditError(Exception):
    """A call could not be recorded (fail-closed). record is the CallRecord;
    tool_exception the tool's own exception when the tool failed too."""

    def __init__(self, message: str, record: Optional[CallRecord] = None,
                 tool_exception: Optional[BaseException] = None):
        super().__init__(message)
        self.record = record
        self.tool_exception = tool_exception


class ToolCall:
    """The handle of `with logger.call(...) as call:`. Set call.result to what
    the tool returned; after the block, call.logged holds the stored row's id
    and event_id (None when fail-open swallowed a logging error).

    With durable=True: call.call_id is the call's id (begin_call()'s uuid, as
    a string; tool_audit.calls.call_id, data_changes.call_event_id) once the
    start is recorded, call.connection the connection whose transaction the
    block runs in, and call.logged the ended row (end_call())."""

    def __init__(self, tool_name: str, arguments: Any, context: dict):
        self.tool_name = tool_name
        self.arguments = arguments
        self.context = context
        self.result: Any = None
        self.logged: Any = None
        self.call_id: Optional[str] = None
        self.connection: Any = None
        self._start()

    def _start(self):
        self._t0 = time.perf_counter()
        self._started_at = utc_now_iso()    # the client's time: stored as started_at

    def _record(self, exc: Optional[BaseException]) -> CallRecord:
        duration = (time.perf_counter() - self._t0) * 1000.0
        result = failure_result(exc) if exc is not None else self.result
        context = self.context
        if "started_at" not in context:
            context = {**context, "started_at": self._started_at}
        return CallRecord(self.tool_name, self.arguments, result, duration, context)

    def _begun(self, begin: CallRecord, call_id: str):
        # the end's record (failure reports) names the call's own event_id
        self.call_id = call_id
        self.context = {**begin.context, "event_id": call_id}


class _Recorder:
    """call() and tool() on top of a _log(record) each logger defines."""

    def __init__(self, context: ContextArg, fail_open: bool,
                 on_error: Optional[Callable[[BaseException, CallRecord], None]]):
        self.context = context
        self.fail_open = fail_open
        self.on_error = on_error
        self.unlogged = 0          # calls fail-open let through without a row

    def _handle_failure(self, err: BaseException, record: CallRecord,
                        tool_exc: Optional[BaseException] = None):
        if self.on_error is not None:
            self.on_error(err, record)
        if self.fail_open:
            self.unlogged += 1
            log.error("tool_audit: call %s (event_id %s) not recorded: %s",
                      record.tool_name, record.event_id, err)
            return None
        raise AuditError(f"tool call {record.tool_name!r} (event_id {record.event_id}) "
                         f"was not recorded: {err}", record, tool_exc) from err

    def call(self, tool_name: str, arguments: Any = None, context: ContextArg = None, *,
             durable: bool = False, connection=None):
        """Context manager: times the block, logs the call when it ends (a
        failure with the exception's message if it raised, re-raised).

        durable=True: the begin/end pattern (see _durable_block): the block
        runs in a transaction on `connection` (or the logger's own
        connection=...), begin_call() first, end_call() after."""
        ctx = resolve_context(self.context, context)
        if durable:
            return _durable_block(self, ToolCall(tool_name, arguments, ctx),
                                  self._durable_connection(connection))
        return _CallBlock(self, tool_name, arguments, ctx)

    def _callers_connection(self):
        """The connection the caller gave the logger (None: none, or the
        logger's own)."""
        return None

    def _durable_connection(self, connection):
        if callable(connection):
            connection = connection()
        if connection is None:
            connection = self._callers_connection()
        if connection is None:
            raise ValueError("durable=True runs the tool in a transaction on the connection its "
                             "SQL uses: pass connection=... (or build the logger with "
                             "connection=...)")
        return connection

    def tool(self, name: Optional[str] = None, context: ContextArg = None, *,
             durable: bool = False, connection=None):
        """Decorator: logs every call of the function with its bound
        arguments as a JSON object and its return value as the result.
        durable and connection as in call() (connection may be a function
        that returns it, called per call)."""
        opts = {"durable": durable, "connection": connection} if durable else {}

        def wrap(fn):
            tool_name = name or fn.__name__

            if inspect.iscoroutinefunction(fn):
                # a coroutine tool: timed across its await; the row is then
                # written synchronously (AsyncAuditLogger does not block the
                # loop; BatchLogger with on_full="raise" only queues it)
                @functools.wraps(fn)
                async def ainner(*args, **kwargs):
                    with self.call(tool_name, bound_arguments(fn, args, kwargs), context,
                                   **opts) as c:
                        c.result = await fn(*args, **kwargs)
                        return c.result
                return ainner

            @functools.wraps(fn)
            def inner(*args, **kwargs):
                with self.call(tool_name, bound_arguments(fn, args, kwargs), context,
                               **opts) as c:
                    c.result = fn(*args, **kwargs)
                    return c.result
            return inner
        return wrap


class _CallBlock:
    def __init__(self, recorder: _Recorder, tool_name: str, arguments: Any, context: dict):
        self._recorder = recorder
        self._call = ToolCall(tool_name, arguments, context)

    def __enter__(self) -> ToolCall:
        self._call._start()
        return self._call

    def __exit__(self, exc_type, exc, tb):
        record = self._call._record(exc)
        try:
            self._call.logged = self._recorder._log(record)
        except Exception as err:  # noqa: BLE001 - reported or raised per fail_open
            self._recorder._handle_failure(err, record, exc)
        return False               # the tool's exception, if any, propagates


def _logged_end(row) -> LoggedCall:
    return LoggedCall(row[0], row[1])


@contextlib.contextmanager
def _durable_block(recorder: _Recorder, call: ToolCall, conn):
    """The begin/end pattern on the tool's own connection:

        transaction (BEGIN, or a savepoint inside the caller's transaction)
          begin_call()   autonomous: the started row is committed at once, and
                         tool_audit.call names the call for the transaction
          the block      the tool's SQL: tracked row changes carry the call
          end_call()     autonomous: the ended row, with the result
        COMMIT (or RELEASE)

    When the block raises: ROLLBACK (the tool's changes go), then end_call()
    with the failure (in a transaction of its own, or a savepoint), and the
    exception propagates. Both rows stay either way.

    Fail-closed: a start that cannot be recorded raises AuditError before the
    tool runs; an end that cannot be recorded raises AuditError and the
    tool's transaction is rolled back (its started row stays: "never_ended"
    in tool_audit.calls). Fail-open: the tool runs and commits as usual
    (begin_call() and end_call() in savepoints, so that their failure leaves
    the tool's transaction usable), the failure is reported and counted."""
    call.connection = conn
    call._start()
    begin = call._record(None)
    ended = False
    try:
        with conn.transaction():
            try:
                if recorder.fail_open:
                    with conn.transaction():
                        row = conn.execute(BEGIN_CALL_SQL, begin.begin_params()).fetchone()
                else:
                    row = conn.execute(BEGIN_CALL_SQL, begin.begin_params()).fetchone()
                call._begun(begin, row[0])
            except Exception as err:  # noqa: BLE001 - fail-closed raises, the tool unrun
                recorder._handle_failure(err, begin)
            yield call
            if call.call_id is not None:
                ended = True
                record = call._record(None)
                try:
                    if recorder.fail_open:
                        with conn.transaction():
                            row = conn.execute(END_CALL_SQL,
                                               record.end_params(call.call_id)).fetchone()
                    else:
                        row = conn.execute(END_CALL_SQL, record.end_params(call.call_id)).fetchone()
                    call.logged = _logged_end(row)
                except Exception as err:  # noqa: BLE001
                    recorder._handle_failure(err, record)
    except BaseException as exc:
        if call.call_id is None or ended:
            raise       # not begun, or the end (or the COMMIT after it) failed
        record = call._record(exc)
        try:
            with conn.transaction():    # after the ROLLBACK
                call.logged = _logged_end(
                    conn.execute(END_CALL_SQL, record.end_params(call.call_id)).fetchone())
        except Exception as err:  # noqa: BLE001
            recorder._handle_failure(err, record, exc)
        raise


class AuditLogger(_Recorder):
    """Logs each tool call with tool_audit.log_call() and returns when it is
    committed.

    AuditLogger(conninfo): opens its own connection in autocommit mode: every
    row is committed when log_call() returns, whatever the agent's own
    transactions do, and survives closing or losing the connection.

    AuditLogger(connection=conn, transactional=True): writes through your
    connection inside your transaction: the row commits (or rolls back) with
    it. A connection that is not in autocommit mode is refused without
    transactional=True, since a row that is never committed vanishes when the
    connection closes.

    fail_open=False (default, fail-closed): a call that cannot be recorded
    raises AuditError. fail_open=True: it is logged to the
    "tool_audit_client" logger, passed to on_error(exc, record), counted in
    .unlogged, and the tool's result is returned as if nothing happened.
    """

    def __init__(self, conninfo: Optional[str] = None, *, connection=None,
                 transactional: bool = False, context: ContextArg = None,
                 fail_open: bool = False, on_error=None, connect_timeout: int = 10):
        super().__init__(context, fail_open, on_error)
        self._lock = threading.Lock()
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        if connection is None:
            if transactional:
                raise ValueError("transactional=True needs your connection (connection=...)")
            self._own = True
            self._conn = None
            self._connect()
        else:
            if not connection.autocommit and not transactional:
                raise ValueError(
                    "this connection is not in autocommit mode: a logged call would be lost "
                    "unless you commit; pass transactional=True to write inside your "
                    "transactions, or give a conninfo for a connection of its own")
            self._own = False
            self._conn = connection

    def _callers_connection(self):
        return None if self._own else self._conn

    def _connect(self):
        self._conn = psycopg.connect(self._conninfo, autocommit=True,
                                     connect_timeout=self._connect_timeout)

    def _execute(self, sql: str, params: tuple):
        with self._lock:
            if self._own and (self._conn is None or self._conn.closed):
                self._connect()
            try:
                return self._conn.execute(sql, params).fetchone()
            except psycopg.OperationalError:
                if not self._own or not self._conn.closed:
                    raise
            # our own connection broke: once more on a new one.  If the first
            # attempt was in fact stored, log_call() returns that row (1.5);
            # a server before 1.5 refuses the event_id instead
            self._connect()
            try:
                return self._conn.execute(sql, params).fetchone()
            except psycopg.errors.UniqueViolation as err:
                if is_event_id_conflict(err):
                    return None
                raise

    def _log(self, record: CallRecord) -> LoggedCall:
        row = self._execute(LOG_CALL_SQL, record.params())
        if row is None:
            return LoggedCall(None, record.event_id, already_stored=True)
        return LoggedCall(row[0], row[1], bool(row[2]))

    def log_call(self, tool_name: str, arguments: Any = None, result: Any = None,
                 duration_ms: Optional[float] = None, context: ContextArg = None):
        """tool_audit.log_call() with Python values; returns a LoggedCall
        (or None when fail-open swallowed an error)."""
        record = CallRecord(tool_name, arguments, result, duration_ms,
                            resolve_context(self.context, context))
        try:
            return self._log(record)
        except Exception as err:  # noqa: BLE001
            return self._handle_failure(err, record)

    def log_event(self, event_type: str, actor: str, payload: Any = None,
                  context: Optional[dict] = None):
        """tool_audit.log_event(): an admin event (prompt.update, ...)."""
        row = self._execute(LOG_EVENT_SQL, (event_type, actor, jsonb(payload),
                                            jsonb(dict(context or {}))))
        return LoggedCall(row[0], row[1]) if row else None

    def close(self):
        if self._own and self._conn is not None:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

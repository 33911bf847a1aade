"""The asyncio logger: AuditLogger's shape on psycopg's AsyncConnection."""

import asyncio
import contextlib
import functools
from typing import Any, Optional

import psycopg

from ._record import (BEGIN_CALL_SQL, END_CALL_SQL, LOG_CALL_SQL, LOG_EVENT_SQL, CallRecord, ContextArg, LoggedCall,
                      bound_arguments, is_event_id_conflict, jsonb, resolve_context)
from ._sync import ToolCall, _logged_end, _Recorder


class AsyncAuditLogger(_Recorder):
    """Like AuditLogger, with await: `logger = await AsyncAuditLogger.connect(conninfo)`
    (its own autocommit connection: each row committed when log_call()
    returns), or AsyncAuditLogger(connection=aconn, transactional=True) inside
    your transactions. `async with logger.call(...)`, `@logger.tool()` on
    coroutine functions, `await logger.log_call(...)`. fail_open as in
    AuditLogger; durable=True as in AuditLogger.call(), on an
    AsyncConnection."""

    def __init__(self, *, connection=None, conninfo: Optional[str] = None,
                 transactional: bool = False, context: ContextArg = None,
                 fail_open: bool = False, on_error=None):
        super().__init__(context, fail_open, on_error)
        self._lock = asyncio.Lock()
        self._conninfo = conninfo
        self._own = connection is None
        if connection is not None and not connection.autocommit and not transactional:
            raise ValueError(
                "this connection is not in autocommit mode: a logged call would be lost "
                "unless you commit; pass transactional=True, or use AsyncAuditLogger.connect()")
        self._conn = connection

    @classmethod
    async def connect(cls, conninfo: str, **kwargs) -> "AsyncAuditLogger":
        self = cls(conninfo=conninfo, **kwargs)
        await self._connect()
        return self

    async def _connect(self):
        self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def _execute(self, sql: str, params: tuple):
        async with self._lock:
            if self._own and (self._conn is None or self._conn.closed):
                await self._connect()
            try:
                cur = await self._conn.execute(sql, params)
                return await cur.fetchone()
            except psycopg.OperationalError:
                if not self._own or not self._conn.closed:
                    raise
            await self._connect()
            try:
                cur = await self._conn.execute(sql, params)
                return await cur.fetchone()
            except psycopg.errors.UniqueViolation as err:
                if is_event_id_conflict(err):
                    return None
                raise

    async def _log(self, record: CallRecord) -> LoggedCall:
        row = await self._execute(LOG_CALL_SQL, record.params())
        if row is None:
            return LoggedCall(None, record.event_id, already_stored=True)
        return LoggedCall(row[0], row[1], bool(row[2]))

    async def log_call(self, tool_name: str, arguments: Any = None, result: Any = None,
                       duration_ms: Optional[float] = None, context: ContextArg = None):
        record = CallRecord(tool_name, arguments, result, duration_ms,
                            resolve_context(self.context, context))
        try:
            return await self._log(record)
        except Exception as err:  # noqa: BLE001
            return self._handle_failure(err, record)

    async def log_event(self, event_type: str, actor: str, payload: Any = None,
                        context: Optional[dict] = None):
        row = await self._execute(LOG_EVENT_SQL, (event_type, actor, jsonb(payload),
                                                  jsonb(dict(context or {}))))
        return LoggedCall(row[0], row[1]) if row else None

    def call(self, tool_name: str, arguments: Any = None, context: ContextArg = None, *,
             durable: bool = False, connection=None):
        ctx = resolve_context(self.context, context)
        if durable:
            return _async_durable_block(self, ToolCall(tool_name, arguments, ctx),
                                        self._durable_connection(connection))
        return _AsyncCallBlock(self, tool_name, arguments, ctx)

    def _callers_connection(self):
        return None if self._own else self._conn

    def tool(self, name: Optional[str] = None, context: ContextArg = None, *,
             durable: bool = False, connection=None):
        opts = {"durable": durable, "connection": connection} if durable else {}

        def wrap(fn):
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError("AsyncAuditLogger.tool() wraps coroutine functions")
            tool_name = name or fn.__name__

            @functools.wraps(fn)
            async def inner(*args, **kwargs):
                async with self.call(tool_name, bound_arguments(fn, args, kwargs), context,
                                     **opts) as c:
                    c.result = await fn(*args, **kwargs)
                    return c.result
            return inner
        return wrap

    async def close(self):
        if self._own and self._conn is not None:
            await self._conn.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
        return False


class _AsyncCallBlock:
    def __init__(self, recorder: AsyncAuditLogger, tool_name: str, arguments: Any, context: dict):
        self._recorder = recorder
        self._call = ToolCall(tool_name, arguments, context)

    async def __aenter__(self) -> ToolCall:
        self._call._start()
        return self._call

    async def __aexit__(self, exc_type, exc, tb):
        record = self._call._record(exc)
        try:
            self._call.logged = await self._recorder._log(record)
        except Exception as err:  # noqa: BLE001
            self._recorder._handle_failure(err, record, exc)
        return False


@contextlib.asynccontextmanager
async def _async_durable_block(recorder: AsyncAuditLogger, call: ToolCall, conn):
    """_sync._durable_block on an AsyncConnection: the same steps and the
    same fail-open / fail-closed behaviour."""
    call.connection = conn
    call._start()
    begin = call._record(None)
    ended = False
    try:
        async with conn.transaction():
            try:
                if recorder.fail_open:
                    async with conn.transaction():
                        cur = await conn.execute(BEGIN_CALL_SQL, begin.begin_params())
                else:
                    cur = await conn.execute(BEGIN_CALL_SQL, begin.begin_params())
                call._begun(begin, (await cur.fetchone())[0])
            except Exception as err:  # noqa: BLE001 - fail-closed raises, the tool unrun
                recorder._handle_failure(err, begin)
            yield call
            if call.call_id is not None:
                ended = True
                record = call._record(None)
                try:
                    if recorder.fail_open:
                        async with conn.transaction():
                            cur = await conn.execute(END_CALL_SQL, record.end_params(call.call_id))
                    else:
                        cur = await conn.execute(END_CALL_SQL, record.end_params(call.call_id))
                    call.logged = _logged_end(await cur.fetchone())
                except Exception as err:  # noqa: BLE001
                    recorder._handle_failure(err, record)
    except BaseException as exc:
        if call.call_id is None or ended:
            raise
        record = call._record(exc)
        try:
            async with conn.transaction():
                cur = await conn.execute(END_CALL_SQL, record.end_params(call.call_id))
                call.logged = _logged_end(await cur.fetchone())
        except Exception as err:  # noqa: BLE001
            recorder._handle_failure(err, record, exc)
        raise

"""Batching for high-volume agents: calls go into a bounded queue and a
background thread writes them, many per transaction. No call is dropped
without being reported: a full queue blocks the caller (backpressure) or
raises QueueFull, and a call that could not be written is handed to
on_failure, kept in .failed and its Future raises."""

import atexit
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import psycopg

from ._record import (LOG_CALL_SQL, CallRecord, ContextArg, LoggedCall, is_event_id_conflict,
                      resolve_context)
from ._sync import AuditError, _Recorder

log = logging.getLogger("tool_audit_client")


class QueueFull(AuditError):
    """The batch queue stayed full: the call was not accepted (nothing was
    queued; the caller still holds it)."""


class BatchClosed(AuditError):
    """submit() after close()."""


@dataclass
class FailedCall:
    """A call that was accepted but not acknowledged: record (with its
    event_id) and the error. When the connection dropped during COMMIT the
    row may in fact be stored: its event_id tells."""
    record: CallRecord
    error: BaseException


@dataclass
class BatchStats:
    submitted: int
    acknowledged: int
    failed: int
    refused: int            # submit() raised QueueFull or BatchClosed
    pending: int


class _Item:
    __slots__ = ("record", "future")

    def __init__(self, record: CallRecord):
        self.record = record
        self.future: Future = Future()


class BatchLogger(_Recorder):
    """BatchLogger(conninfo, max_queue=10000, batch_size=200, on_full="block",
    block_timeout=None, retry_for=30.0, on_failure=None)

    The writer sends what is queued (up to batch_size calls) as soon as it is
    free: a lone call is written at once, and batches grow with the load.

    submit(...) (and call()/tool(), which submit) returns at once with a
    concurrent.futures.Future that gives the LoggedCall once its batch is
    committed. A call is acknowledged only then.

    - Queue full: on_full="block" waits for room (backpressure), up to
      block_timeout seconds (None: for as long as it takes), then raises
      QueueFull; on_full="raise" raises QueueFull at once.
    - Database unreachable: the batch is retried (new connection, growing
      pauses) for retry_for seconds, the queue filling behind it; a retry
      after a connection lost at COMMIT is idempotent through each call's
      event_id. After retry_for the batch's calls fail: each Future raises,
      on_failure(list of FailedCall) is called, .failed keeps them.
    - A call the server refuses (a bad context value): that call alone fails
      the same way; the rest of its batch is written.
    - close() (or leaving `with`) writes everything still queued, then returns
      BatchStats; fail-closed (default) raises AuditError if any call failed.
    """

    def __init__(self, conninfo: str, *, max_queue: int = 10000, batch_size: int = 200,
                 on_full: str = "block",
                 block_timeout: Optional[float] = None, retry_for: float = 30.0,
                 on_failure: Optional[Callable[[List[FailedCall]], None]] = None,
                 context: ContextArg = None, fail_open: bool = False, on_error=None):
        super().__init__(context, fail_open, on_error)
        if on_full not in ("block", "raise"):
            raise ValueError('on_full is "block" or "raise"')
        self._conninfo = conninfo
        self._queue: "queue.Queue[_Item]" = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._on_full = on_full
        self._block_timeout = block_timeout
        self._retry_for = retry_for
        self._on_failure = on_failure
        self._conn = None
        self._outage_since: Optional[float] = None
        self._closing = threading.Event()
        self._stats_lock = threading.Lock()
        self.submitted = self.acknowledged = self.refused = 0
        self._putting = 0
        self.failed: List[FailedCall] = []
        self._worker = threading.Thread(target=self._run, name="tool_audit-batch", daemon=True)
        self._worker.start()
        # a process that exits without close() still writes (or reports) its queue
        atexit.register(self._close_at_exit)

    def _close_at_exit(self):
        try:
            self.close(timeout=self._retry_for + 10)
        except AuditError as err:
            log.error("tool_audit: at exit: %s", err)

    # ---- the caller's side ------------------------------------------------

    def submit(self, tool_name: str, arguments: Any = None, result: Any = None,
               duration_ms: Optional[float] = None, context: ContextArg = None) -> Future:
        return self._enqueue(CallRecord(tool_name, arguments, result, duration_ms,
                                        resolve_context(self.context, context)))

    def _enqueue(self, record: CallRecord) -> Future:
        # _putting (under _stats_lock with the closing check) keeps the writer
        # from exiting while a call that passed the check is still being put
        with self._stats_lock:
            if self._closing.is_set():
                self.refused += 1
                raise BatchClosed("the batch logger is closed", record)
            self._putting += 1
        item = _Item(record)
        try:
            if self._on_full == "block":
                self._queue.put(item, timeout=self._block_timeout)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            with self._stats_lock:
                self._putting -= 1
                self.refused += 1
            raise QueueFull(f"batch queue full ({self._queue.maxsize} calls waiting): "
                            f"call {record.tool_name!r} not accepted", record) from None
        with self._stats_lock:
            self._putting -= 1
            self.submitted += 1
        return item.future

    def _log(self, record: CallRecord) -> Future:
        # call() and tool(): a refusal is a logging failure (fail_open decides);
        # a later write failure goes to on_failure and .failed
        return self._enqueue(record)

    def stats(self) -> BatchStats:
        with self._stats_lock:
            return BatchStats(self.submitted, self.acknowledged, len(self.failed),
                              self.refused, self.submitted - self.acknowledged - len(self.failed))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every call submitted so far is acknowledged or failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.stats()
            if st.pending == 0:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def close(self, timeout: Optional[float] = None) -> BatchStats:
        """Stop accepting calls, write what is queued, close the connection."""
        with self._stats_lock:
            self._closing.set()
        atexit.unregister(self._close_at_exit)
        self._worker.join(timeout)
        st = self.stats()
        if self._worker.is_alive():
            raise AuditError(f"close() timed out with {st.pending} calls not yet written "
                             f"(the writer keeps trying for up to retry_for seconds)")
        if st.failed and not self.fail_open:
            raise AuditError(f"{st.failed} of {st.submitted} calls were not recorded "
                             f"(see .failed)")
        return st

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- the writer thread --------------------------------------------------

    def _take(self) -> Optional[List[_Item]]:
        batch: List[_Item] = []
        while not batch:
            try:
                # short: an idle writer notices close() quickly
                batch.append(self._queue.get(timeout=0.05))
            except queue.Empty:
                with self._stats_lock:
                    if self._closing.is_set() and self._putting == 0 and self._queue.empty():
                        return None
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self):
        try:
            while True:
                batch = self._take()
                if batch is None:
                    break
                self._write_with_retry(batch)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
        return self._conn

    def _write_with_retry(self, batch: List[_Item]):
        # retry_for counts from the start of an outage, not per batch: once
        # it is spent, each batch tries once and fails, so an agent that
        # keeps logging is told at once rather than after a wait per batch
        pause = 0.05
        retrying = False
        while True:
            try:
                self._write(self._connection(), batch, retrying)
                self._outage_since = None
                return
            except psycopg.OperationalError as err:
                # the connection is gone (server stopped, network): the batch
                # may or may not have committed; retry it idempotently
                if self._conn is not None and not self._conn.closed:
                    try:
                        self._conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                self._conn = None
                retrying = True
                now = time.monotonic()
                if self._outage_since is None:
                    self._outage_since = now
                    log.warning("tool_audit: batch of %d not written (%s); retrying for %.0f s",
                                len(batch), err, self._retry_for)
                deadline = self._outage_since + self._retry_for
                if now >= deadline:
                    self._fail(batch, err)
                    return
                time.sleep(min(pause, max(0.0, deadline - now)))
                pause = min(pause * 2, 1.0)
            except Exception as err:  # noqa: BLE001 - not ours to lose a batch over
                self._fail(batch, err)
                return

    def _write(self, conn, batch: List[_Item], retrying: bool):
        if not retrying:
            try:
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(LOG_CALL_SQL, [i.record.params() for i in batch])
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                pass        # one call refused: find it below, row by row
            else:
                self._ack([(i, LoggedCall(None, i.record.event_id)) for i in batch])
                return
        # row by row, each under a savepoint: a call the server refuses fails
        # alone; a call stored by an attempt whose COMMIT was lost is returned
        # by log_call() (1.5), or refused by its event_id (before 1.5)
        done, refused = [], []
        with conn.transaction():
            for item in batch:
                try:
                    with conn.transaction():
                        row = conn.execute(LOG_CALL_SQL, item.record.params()).fetchone()
                    done.append((item, LoggedCall(row[0], row[1], bool(row[2]))))
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as err:
                    if is_event_id_conflict(err):
                        done.append((item, LoggedCall(None, item.record.event_id, True)))
                    else:
                        refused.append((item, err))
        self._ack(done)
        if refused:
            self._fail([i for i, _ in refused], None, errors=[e for _, e in refused])

    def _ack(self, done):
        with self._stats_lock:
            self.acknowledged += len(done)
        for item, logged in done:
            item.future.set_result(logged)

    def _fail(self, items: List[_Item], err: Optional[BaseException], errors=None):
        errors = errors or [err] * len(items)
        failed = [FailedCall(i.record, e) for i, e in zip(items, errors)]
        with self._stats_lock:
            self.failed.extend(failed)
        log.error("tool_audit: %d calls not recorded: %s", len(items), errors[0])
        for item, e in zip(items, errors):
            item.future.set_exception(e)
        if self._on_failure is not None:
            try:
                self._on_failure(failed)
            except Exception:  # noqa: BLE001
                log.exception("tool_audit: on_failure raised")

"""Record AI agents' tool calls with the tool_audit PostgreSQL extension.

AuditLogger (each call committed before it returns), AsyncAuditLogger (the
same with asyncio), BatchLogger (a bounded queue written in batches by a
background thread), verify_export() (the links of a JSONL export
recomputed). call(..., durable=True) and tool(durable=True) record a call
with begin_call() and end_call() around a transaction on the tool's
connection: it survives the tool's rollback. See README.md.
"""

from ._async import AsyncAuditLogger
from ._batch import BatchClosed, BatchLogger, BatchStats, FailedCall, QueueFull
from ._export import verify_export
from ._record import CallRecord, LoggedCall, failure_result, jsonb
from ._sync import AuditError, AuditLogger, ToolCall

__all__ = ["AuditLogger", "AsyncAuditLogger", "BatchLogger", "BatchStats", "BatchClosed",
           "QueueFull", "FailedCall", "AuditError", "ToolCall", "CallRecord", "LoggedCall",
           "failure_result", "jsonb", "verify_export"]

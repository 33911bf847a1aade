// tool-audit-client: record AI agents' tool calls with the tool_audit
// PostgreSQL extension, through its SQL API (log_call, log_event).
export { AuditError, AuditLogger, Recorder } from "./logger";
export type {
  AuditLoggerOptions, DurableClient, DurableOptions, Queryable, RecorderOptions, WrapOptions,
} from "./logger";
export { BatchClosedError, BatchLogger, QueueFullError } from "./batch";
export type { BatchLoggerOptions, BatchStats, FailedCall, Pending } from "./batch";
export { verifyExport } from "./export";
export type { ExportCheck } from "./export";
export { callKeyEventId, failureResult, jsonText } from "./record";
export type { CallContext, CallRecord, LoggedCall } from "./record";

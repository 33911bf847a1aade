// What one call to tool_audit.log_call() carries, built the same way by
// every logger: JSON text for every jsonb parameter (node-postgres would send
// a JavaScript array as a PostgreSQL array: SQLSTATE 22P02), a client-made
// event_id, a failure result from an exception.
import { createHash, randomUUID } from "node:crypto";

/** Attribution for a call (doc/recording.md); other keys go to session_metadata. */
export interface CallContext {
  conversation_id?: string;
  turn_number?: number;
  user_id?: string;
  user_role?: string;
  model?: string;
  tenant_id?: string;
  call_trigger?: "user_request" | "proactive" | "retry" | "follow_up" | "system";
  purpose?: string;
  subject_id?: string;
  tool_call_id?: string;
  client_ip?: string;
  user_agent?: string;
  event_id?: string;
  /** When the call began, by the client's clock: ISO 8601 with its offset
   *  (Date.toISOString()); stored as started_at beside the server's recorded_at. */
  started_at?: string;
  [key: string]: unknown;
}

export type ContextArg = CallContext | (() => CallContext) | undefined | null;

/** What the database stored. ids are int8: a string, never a lossy number
 *  (BigInt(id) for arithmetic). alreadyStored: the row was written by an
 *  earlier attempt: log_call() returned it to this retry (or, on a server
 *  before 1.5, refused the retry's event_id: id is then null). */
export interface LoggedCall {
  id: string | null;
  eventId: string;
  alreadyStored: boolean;
}

export interface CallRecord {
  toolName: string;
  arguments: unknown;
  result: unknown;
  durationMs: number | null;
  context: CallContext & { event_id: string };
}

// already_stored: log_call() (1.5) returns the row stored first to a retry of
// the same call (same tool_call_id, or same event_id); that row was recorded
// before this statement began, a new one during it
export const LOG_CALL_SQL =
  "SELECT id::text AS id, event_id::text AS event_id, recorded_at < statement_timestamp() AS already_stored " +
  "FROM tool_audit.log_call($1, $2::jsonb, $3::jsonb, $4, $5::jsonb)";
export const LOG_EVENT_SQL =
  "SELECT id::text AS id, event_id::text AS event_id " +
  "FROM tool_audit.log_event($1, $2, $3::jsonb, $4::jsonb)";

// the begin/end pattern (1.5, doc/recording.md "Calls that survive rollback"):
// each half written autonomously (committed whatever the caller's transaction
// does); begin_call() sets tool_audit.call for the rest of the transaction
export const BEGIN_CALL_SQL =
  "SELECT tool_audit.begin_call($1, $2::jsonb, $3::jsonb)::text AS call_id";
export const END_CALL_SQL =
  "SELECT id::text AS id, event_id::text AS event_id FROM tool_audit.end_call($1::uuid, $2::jsonb, $3)";

/** JSON text for a jsonb parameter: objects and arrays alike; a BigInt as
 *  its decimal string; undefined and null as SQL NULL. */
export function jsonText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

export function resolveContext(...parts: ContextArg[]): CallContext {
  const out: CallContext = {};
  for (let part of parts) {
    if (typeof part === "function") part = part();
    if (part) Object.assign(out, part);
  }
  return out;
}

// event ids of calls that have a tool_call_id: a UUID v5 of the call key in
// this namespace (uuid5(NAMESPACE_URL, "urn:tool_audit:tool_call_id")), the
// same in the Python helper
const CALL_KEY_NAMESPACE = Buffer.from("8d77e3ef4350511aac8fad3dac6fda6d", "hex");

/** The event_id of a call with a tool_call_id: derived from its key
 *  (tenant_id, conversation_id, tool_call_id), so that logging the same call
 *  again, from this process or another, brings the same event_id and gets the
 *  stored row back; null without a tool_call_id. */
export function callKeyEventId(context: CallContext): string | null {
  const callId = context.tool_call_id;
  if (callId === undefined || callId === null || callId === "") return null;
  const str = (v: unknown) => (v === undefined || v === null ? null : String(v));
  const name = JSON.stringify([str(context.tenant_id), str(context.conversation_id), String(callId)]);
  const h = createHash("sha1").update(CALL_KEY_NAMESPACE).update(name, "utf8").digest();
  h[6] = (h[6] & 0x0f) | 0x50;        // version 5
  h[8] = (h[8] & 0x3f) | 0x80;        // RFC 4122 variant
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export function makeRecord(toolName: string, args: unknown, result: unknown,
                           durationMs: number | null | undefined, context: CallContext): CallRecord {
  const ctx = { ...context } as CallContext & { event_id: string };
  if (!ctx.event_id) ctx.event_id = callKeyEventId(ctx) ?? randomUUID();
  return { toolName, arguments: args, result, durationMs: durationMs ?? null, context: ctx };
}

/** log_call()'s parameters. Arguments that are not a JSON object (log_call
 *  refuses an array or a scalar) are wrapped as {"value": ...}, as its hint says. */
export function recordParams(r: CallRecord): unknown[] {
  let args = r.arguments;
  if (args !== undefined && args !== null && (typeof args !== "object" || Array.isArray(args))) {
    args = { value: args };
  }
  const duration = r.durationMs === null ? null : Math.round(r.durationMs * 1000) / 1000;
  return [r.toolName, jsonText(args), jsonText(r.result), duration, jsonText(r.context)];
}

/** begin_call()'s parameters: tool name, arguments, context. */
export function beginParams(r: CallRecord): unknown[] {
  const p = recordParams(r);
  return [p[0], p[1], p[4]];
}

/** end_call()'s parameters: the call, result, duration. */
export function endParams(r: CallRecord, callId: string): unknown[] {
  const p = recordParams(r);
  return [callId, p[2], p[3]];
}

/** The result logged for a tool that threw: log_call() reads "success":
 *  false and "error" from it. */
export function failureResult(err: unknown): Record<string, unknown> {
  if (err instanceof Error) {
    return { success: false, error: err.message || err.name, error_type: err.name };
  }
  return { success: false, error: String(err), error_type: typeof err };
}

interface PgLikeError { code?: string; constraint?: string; detail?: string; message?: string }

/** A unique violation on event_id: the row is already stored. */
export function isEventIdConflict(err: unknown): boolean {
  const e = err as PgLikeError;
  return e?.code === "23505" &&
    [e.constraint, e.detail, e.message].some((s) => typeof s === "string" && s.includes("event_id"));
}

/** The connection is gone or the server is going away: worth a retry on a new
 *  connection. Anything the server refused on its merits (a SQLSTATE outside
 *  classes 08 and 57P) is not. */
export function isConnectionError(err: unknown): boolean {
  const e = err as PgLikeError;
  if (!e || typeof e !== "object") return false;
  const code = e.code;
  if (typeof code === "string") {
    if (/^[0-9A-Z]{5}$/.test(code)) return code.startsWith("08") || code.startsWith("57P");
    return true;                       // ECONNREFUSED, ENOENT, ECONNRESET, EPIPE ...
  }
  return /connection|terminat|timeout|not queryable|closed/i.test(e.message ?? "");
}

/** The arguments of a wrapped function as a JSON object: a single plain
 *  object argument as it is; otherwise the names given, or {"args": [...]}. */
export function argumentsObject(args: unknown[], names?: string[]): unknown {
  if (names && names.length) {
    const out: Record<string, unknown> = {};
    names.forEach((n, i) => { if (i < args.length) out[n] = args[i]; });
    if (args.length > names.length) out.rest = args.slice(names.length);
    return out;
  }
  if (args.length === 1 && args[0] !== null && typeof args[0] === "object" && !Array.isArray(args[0])) {
    return args[0];
  }
  return { args };
}

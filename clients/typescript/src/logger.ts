// The logger: one log_call() per tool call, committed before the promise
// resolves (a pool of its own: every statement outside BEGIN commits on its
// own), or inside the caller's transaction when it gives its own client.
import { Pool, PoolConfig } from "pg";
import {
  CallContext, CallRecord, ContextArg, LOG_CALL_SQL, LOG_EVENT_SQL, LoggedCall, argumentsObject,
  failureResult, isConnectionError, isEventIdConflict, jsonText, makeRecord, recordParams,
  resolveContext,
} from "./record";

/** Anything with node-postgres's query(): a Pool, a Client, a PoolClient. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

/** A call could not be recorded (fail-closed). */
export class AuditError extends Error {
  constructor(message: string, public readonly record?: CallRecord,
              public readonly cause?: unknown, public readonly toolError?: unknown) {
    super(message);
    this.name = "AuditError";
  }
}

export interface RecorderOptions {
  /** Merged into every call's context (a function is called per call). */
  context?: ContextArg;
  /** false (default, fail-closed): a call that cannot be recorded rejects
   *  with AuditError. true: it is reported to onError, counted in
   *  .unlogged, and the tool's result is returned as if nothing happened. */
  failOpen?: boolean;
  onError?: (err: unknown, record: CallRecord) => void;
}

export interface WrapOptions {
  /** The tool's name in the log (default: the function's name). */
  name?: string;
  /** Parameter names, to log positional arguments as an object. */
  argNames?: string[];
  context?: ContextArg;
}

/** call() and wrap() on top of the log(record) each logger defines. */
export abstract class Recorder {
  unlogged = 0;
  protected readonly baseContext: ContextArg;
  readonly failOpen: boolean;
  private readonly onError?: (err: unknown, record: CallRecord) => void;

  constructor(opts: RecorderOptions = {}) {
    this.baseContext = opts.context;
    this.failOpen = opts.failOpen ?? false;
    this.onError = opts.onError;
  }

  protected abstract log(record: CallRecord): Promise<LoggedCall | null>;

  protected handleFailure(err: unknown, record: CallRecord, toolError?: unknown): null {
    this.onError?.(err, record);
    if (this.failOpen) {
      this.unlogged += 1;
      return null;
    }
    const msg = err instanceof Error ? err.message : String(err);
    throw new AuditError(`tool call ${JSON.stringify(record.toolName)} (event_id ${record.context.event_id}) ` +
                         `was not recorded: ${msg}`, record, err, toolError);
  }

  protected async logOrHandle(record: CallRecord, toolError?: unknown): Promise<LoggedCall | null> {
    try {
      return await this.log(record);
    } catch (err) {
      return this.handleFailure(err, record, toolError);
    }
  }

  /** Runs fn, times it, logs the call (a failure with the error's message if
   *  it threw, rethrown), returns fn's result. onLogged receives the stored
   *  row's id and event_id. */
  async call<T>(toolName: string, args: unknown, fn: () => T | Promise<T>,
                context?: ContextArg, onLogged?: (logged: LoggedCall | null) => void): Promise<T> {
    const ctx = resolveContext(this.baseContext, context);
    // the client's time, stored as started_at (a retry repeats the record, this included)
    if (ctx.started_at === undefined) ctx.started_at = new Date().toISOString();
    const t0 = performance.now();
    let result: T;
    try {
      result = await fn();
    } catch (toolError) {
      const rec = makeRecord(toolName, args, failureResult(toolError), performance.now() - t0, ctx);
      const logged = await this.logOrHandle(rec, toolError);   // not inside ?.(): it must run
      onLogged?.(logged);
      throw toolError;
    }
    const rec = makeRecord(toolName, args, result, performance.now() - t0, ctx);
    const logged = await this.logOrHandle(rec);
    onLogged?.(logged);
    return result;
  }

  /** A function that logs every call of fn (the decorator). */
  wrap<A extends unknown[], R>(fn: (...args: A) => R | Promise<R>,
                               opts: WrapOptions = {}): (...args: A) => Promise<R> {
    const name = opts.name ?? fn.name;
    if (!name) throw new TypeError("wrap(): an anonymous function needs opts.name");
    return (...args: A) =>
      this.call(name, argumentsObject(args, opts.argNames), () => fn(...args), opts.context);
  }
}

export interface AuditLoggerOptions extends RecorderOptions {
  /** Your client or pool. Without it the logger makes a pool of its own. */
  queryable?: Queryable;
  /** Must be true when `queryable` is a client that may be inside BEGIN:
   *  the rows then commit (or roll back) with your transaction. */
  transactional?: boolean;
}

/**
 * Logs each tool call with tool_audit.log_call(); the promise resolves once
 * the row is committed.
 *
 *   const audit = new AuditLogger("postgresql:///app", { context: { tenant_id: "acme" } });
 *
 * With a connection string or pool configuration it uses a pool of its own:
 * each log_call() is a statement of its own, committed when it returns, and
 * a broken connection is replaced (the retry is idempotent: log_call()
 * returns the row an attempt already stored, found by the call's
 * tool_call_id or by the event_id the logger makes for every call).
 */
export class AuditLogger extends Recorder {
  private readonly db: Queryable;
  private readonly ownPool: Pool | null;

  constructor(config: string | PoolConfig | null, opts: AuditLoggerOptions = {}) {
    super(opts);
    if (opts.queryable) {
      this.db = opts.queryable;
      this.ownPool = null;
      const isPool = opts.queryable instanceof Pool;
      if (!isPool && !opts.transactional) {
        throw new TypeError(
          "a client of yours may be inside a transaction: a logged call would vanish with a ROLLBACK " +
          "or an unclosed BEGIN; pass transactional: true to write inside your transactions, " +
          "or give a pool or a connection string");
      }
    } else {
      const poolConfig: PoolConfig = typeof config === "string" ? { connectionString: config } : { ...(config ?? {}) };
      this.ownPool = new Pool({ max: 4, ...poolConfig });
      // an idle client whose server went away: the pool drops it; no crash
      this.ownPool.on("error", () => undefined);
      this.db = this.ownPool;
    }
  }

  protected async log(record: CallRecord): Promise<LoggedCall> {
    const rows = await this.execute(LOG_CALL_SQL, recordParams(record));
    if (rows === null) return { id: null, eventId: record.context.event_id, alreadyStored: true };
    return { id: rows[0].id, eventId: rows[0].event_id, alreadyStored: rows[0].already_stored === true };
  }

  private async execute(sql: string, params: unknown[]): Promise<any[] | null> {
    try {
      return (await this.db.query(sql, params)).rows;
    } catch (err) {
      if (!this.ownPool || !isConnectionError(err)) throw err;
    }
    // once more, on another connection of the pool: if the first attempt was
    // in fact stored, log_call() returns that row (1.5); a server before 1.5
    // refuses the event_id instead
    try {
      return (await this.db.query(sql, params)).rows;
    } catch (err) {
      if (isEventIdConflict(err)) return null;
      throw err;
    }
  }

  /** tool_audit.log_call() with JavaScript values: objects and arrays as JSON. */
  async logCall(toolName: string, args?: unknown, result?: unknown, durationMs?: number | null,
                context?: ContextArg): Promise<LoggedCall | null> {
    const rec = makeRecord(toolName, args, result, durationMs, resolveContext(this.baseContext, context));
    return this.logOrHandle(rec);
  }

  /** tool_audit.log_event(): an admin event (prompt.update, ...). */
  async logEvent(eventType: string, actor: string, payload?: unknown,
                 context?: Record<string, unknown>): Promise<LoggedCall> {
    const rows = await this.execute(LOG_EVENT_SQL, [eventType, actor, jsonText(payload), jsonText(context ?? {})]);
    if (rows === null) return { id: null, eventId: String(context?.event_id ?? ""), alreadyStored: true };
    return { id: rows[0].id, eventId: rows[0].event_id, alreadyStored: false };
  }

  async close(): Promise<void> {
    if (this.ownPool) await this.ownPool.end();
  }
}

export type { CallContext };

// The logger: one log_call() per tool call, committed before the promise
// resolves (a pool of its own: every statement outside BEGIN commits on its
// own), or inside the caller's transaction when it gives its own client.
import { Pool, PoolClient, PoolConfig } from "pg";
import {
  BEGIN_CALL_SQL, CallContext, CallRecord, ContextArg, END_CALL_SQL, LOG_CALL_SQL, LOG_EVENT_SQL,
  LoggedCall, argumentsObject, beginParams, endParams, failureResult, isConnectionError,
  isEventIdConflict, jsonText, makeRecord, recordParams, resolveContext,
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

/** Where a durable call's transaction runs: a Client or PoolClient (one
 *  connection: the one the tool's SQL uses), or a Pool (a client is checked
 *  out for the call and handed to the tool), or a function returning one. */
export type DurableClient = Queryable | Pool | (() => Queryable | Pool);

export interface WrapOptions {
  /** The tool's name in the log (default: the function's name). */
  name?: string;
  /** Parameter names, to log positional arguments as an object. */
  argNames?: string[];
  context?: ContextArg;
  /** The begin/end pattern (see durableCall()): the wrapped function runs in
   *  a transaction on `client` (a Client or PoolClient its SQL uses; default:
   *  the client the logger was given). */
  durable?: boolean;
  client?: DurableClient;
}

export interface DurableOptions {
  /** Default: the logger's own pool, or the client or pool it was given. */
  client?: DurableClient;
  context?: ContextArg;
  /** Receives the ended row (end_call()'s id and event_id), or null when
   *  fail-open let a failure through. */
  onLogged?: (logged: LoggedCall | null) => void;
}

let savepoints = 0;

/** "T" or "E": inside a transaction block; "I": not; null: cannot tell
 *  (not a node-postgres client). */
function transactionStatus(db: Queryable): string | null {
  const f = (db as { getTransactionStatus?: () => string | null }).getTransactionStatus;
  return typeof f === "function" ? f.call(db) : null;
}

const endedRow = (rows: any[]): LoggedCall => ({ id: rows[0].id, eventId: rows[0].event_id, alreadyStored: false });

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
    if (opts.durable) {
      return (...args: A) => {
        const source = this.durableSource(opts.client);
        if (source instanceof Pool) {
          throw new TypeError("wrap({ durable: true }) needs the Client or PoolClient the tool's SQL runs on " +
                              "(a pool's client would not be the tool's): pass { client }, or use durableCall()");
        }
        return this.durableCall(name, argumentsObject(args, opts.argNames), () => fn(...args),
                                { client: source, context: opts.context });
      };
    }
    return (...args: A) =>
      this.call(name, argumentsObject(args, opts.argNames), () => fn(...args), opts.context);
  }

  /** What durable calls run on by default (null: nothing: they need { client }). */
  protected callersQueryable(): Queryable | Pool | null {
    return null;
  }

  private durableSource(client?: DurableClient): Queryable | Pool {
    let source: Queryable | Pool | null | undefined = typeof client === "function" ? client() : client;
    source ??= this.callersQueryable();
    if (!source) {
      throw new TypeError("a durable call runs the tool in a transaction on the connection its SQL uses: " +
                          "pass { client }");
    }
    return source;
  }

  /**
   * The begin/end pattern: survives the tool's rollback, and links the
   * tool's row changes to the call.
   *
   *   BEGIN (or SAVEPOINT, when the client is already inside a transaction)
   *     tool_audit.begin_call()  autonomous: the started row is committed at
   *                              once; tool_audit.call names the call
   *     fn(db, callId)           the tool's SQL on db: tracked row changes
   *                              carry the call's id
   *     tool_audit.end_call()    autonomous: the ended row, with the result
   *   COMMIT (or RELEASE)
   *
   * When fn throws: ROLLBACK (the tool's changes go), then end_call() with
   * the failure, and the error is rethrown. Both rows stay either way.
   *
   * Fail-closed: a start that cannot be recorded rejects with AuditError
   * before fn runs; an end that cannot be recorded rejects with AuditError
   * and the transaction is rolled back (the started row stays: never_ended
   * in tool_audit.calls). Fail-open: fn runs and commits as usual (begin and
   * end in savepoints of their own), the failure is reported and counted;
   * callId is then null.
   */
  async durableCall<T>(toolName: string, args: unknown,
                       fn: (db: Queryable, callId: string | null) => T | Promise<T>,
                       opts: DurableOptions = {}): Promise<T> {
    const ctx = resolveContext(this.baseContext, opts.context);
    if (ctx.started_at === undefined) ctx.started_at = new Date().toISOString();
    const source = this.durableSource(opts.client);
    if (!(source instanceof Pool)) return this.runDurable(toolName, args, fn, ctx, source, opts.onLogged);
    const client: PoolClient = await source.connect();
    let ok = false;
    try {
      const result = await this.runDurable(toolName, args, fn, ctx, client, opts.onLogged);
      ok = true;
      return result;
    } finally {
      // a client left inside a transaction (a ROLLBACK that failed) is not reused
      const clean = ok || transactionStatus(client) === "I";
      client.release(clean ? undefined : new Error("left inside a transaction"));
    }
  }

  private async inSavepoint<R>(db: Queryable, use: boolean, fn: () => Promise<R>): Promise<R> {
    if (!use) return fn();
    const sp = `tool_audit_call_${++savepoints}`;
    await db.query(`SAVEPOINT ${sp}`);
    try {
      const r = await fn();
      await db.query(`RELEASE SAVEPOINT ${sp}`);
      return r;
    } catch (err) {
      await db.query(`ROLLBACK TO SAVEPOINT ${sp}; RELEASE SAVEPOINT ${sp}`).catch(() => undefined);
      throw err;
    }
  }

  private async runDurable<T>(toolName: string, args: unknown,
                              fn: (db: Queryable, callId: string | null) => T | Promise<T>,
                              ctx: CallContext, db: Queryable,
                              onLogged?: (logged: LoggedCall | null) => void): Promise<T> {
    const status = transactionStatus(db);
    const nested = status === "T" || status === "E";
    const sp = nested ? `tool_audit_call_${++savepoints}` : null;
    const begin = makeRecord(toolName, args, undefined, null, ctx);
    const t0 = performance.now();
    await db.query(sp ? `SAVEPOINT ${sp}` : "BEGIN");
    let open = true;
    const finish = async (commit: boolean) => {
      open = false;
      await db.query(sp ? (commit ? `RELEASE SAVEPOINT ${sp}` : `ROLLBACK TO SAVEPOINT ${sp}; RELEASE SAVEPOINT ${sp}`)
                        : (commit ? "COMMIT" : "ROLLBACK"));
    };
    try {
      let callId: string | null = null;
      try {
        const rows = (await this.inSavepoint(db, this.failOpen,
                                             () => db.query(BEGIN_CALL_SQL, beginParams(begin)))).rows;
        callId = rows[0].call_id as string;
      } catch (err) {
        this.handleFailure(err, begin);          // fail-closed: throws, fn does not run
      }
      const record = (result: unknown) =>
        makeRecord(toolName, args, result, performance.now() - t0, { ...begin.context, event_id: callId ?? begin.context.event_id });
      let result: T;
      try {
        result = await fn(db, callId);
      } catch (toolError) {
        await finish(false).catch(() => undefined);   // a broken connection: the end fails too, reported
        if (callId !== null) {
          const rec = record(failureResult(toolError));
          let logged: LoggedCall | null;
          try {
            // after the ROLLBACK: a statement of its own, or a savepoint in the caller's transaction
            logged = endedRow((await this.inSavepoint(db, nested,
                                                      () => db.query(END_CALL_SQL, endParams(rec, callId!)))).rows);
          } catch (err) {
            logged = this.handleFailure(err, rec, toolError);
          }
          onLogged?.(logged);
        }
        throw toolError;
      }
      if (callId !== null) {
        const rec = record(result);
        let logged: LoggedCall | null;
        try {
          logged = endedRow((await this.inSavepoint(db, this.failOpen,
                                                    () => db.query(END_CALL_SQL, endParams(rec, callId!)))).rows);
        } catch (err) {
          logged = this.handleFailure(err, rec);   // fail-closed: throws, the transaction rolls back
        }
        onLogged?.(logged);
      }
      await finish(true);
      return result;
    } catch (err) {
      if (open) await finish(false).catch(() => undefined);
      throw err;
    }
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

  protected callersQueryable(): Queryable | Pool | null {
    return this.db;     // its own pool included: durableCall() checks a client out of it
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

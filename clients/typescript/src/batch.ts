// Batching for high-volume agents: calls go into a bounded queue and one
// writer sends them, a batch per statement. No call is dropped without being
// reported: a full queue makes submit() wait (backpressure) or reject with
// QueueFullError, and a call that could not be written is handed to
// onFailure, kept in .failed, and its `written` promise rejects.
import { Client, ClientConfig } from "pg";
import { AuditError, Recorder, RecorderOptions } from "./logger";
import {
  CallRecord, ContextArg, LOG_CALL_SQL, LoggedCall, isConnectionError, isEventIdConflict,
  makeRecord, recordParams, resolveContext,
} from "./record";

export class QueueFullError extends AuditError {
  constructor(message: string, record: CallRecord) { super(message, record); this.name = "QueueFullError"; }
}
export class BatchClosedError extends AuditError {
  constructor(record: CallRecord) { super("the batch logger is closed", record); this.name = "BatchClosedError"; }
}

/** An accepted call: `written` resolves when its batch is committed (the
 *  call is acknowledged only then) or rejects when it could not be written. */
export interface Pending {
  eventId: string;
  written: Promise<LoggedCall>;
}

export interface FailedCall { record: CallRecord; error: unknown }

export interface BatchStats {
  submitted: number;
  acknowledged: number;
  failed: number;
  refused: number;      // submit() rejected: QueueFullError or BatchClosedError
  pending: number;
}

export interface BatchLoggerOptions extends RecorderOptions {
  maxQueue?: number;          // default 10000
  batchSize?: number;         // default 200
  flushIntervalMs?: number;   // default 100: how long a lone call may wait for company
  onFull?: "wait" | "reject"; // default "wait"
  waitTimeoutMs?: number;     // "wait": reject with QueueFullError after this long (default: never)
  retryForMs?: number;        // default 30000: how long an outage is retried
  onFailure?: (failed: FailedCall[]) => void;
}

interface Item {
  record: CallRecord;
  resolve: (l: LoggedCall) => void;
  reject: (e: unknown) => void;
}

// The batch in one statement: a JSON array of calls, log_call() once per
// element, in order (atomic: it commits or not as a whole).
const BATCH_SQL =
  "SELECT lc.id::text AS id, lc.event_id::text AS event_id, " +
  "lc.recorded_at < statement_timestamp() AS already_stored " +
  "FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (n text, a jsonb, r jsonb, d float8, c jsonb)) " +
  "WITH ORDINALITY AS t(n, a, r, d, c, i) " +
  "CROSS JOIN LATERAL tool_audit.log_call(t.n, t.a, t.r, t.d, t.c) lc ORDER BY t.i";

/**
 * new BatchLogger(config, { maxQueue, batchSize, flushIntervalMs, onFull,
 * waitTimeoutMs, retryForMs, onFailure, failOpen })
 *
 * `await submit(...)` resolves when the call is accepted into the queue
 * (with "wait", once there is room); its `written` resolves when the call is
 * committed. While the database is unreachable the batch is retried on new
 * connections for retryForMs from the start of the outage (idempotent
 * through each call's event_id), the queue filling behind it; after that
 * each batch is tried once and its calls fail. A call the server refuses (a
 * bad context value) fails alone. close() writes what is queued and resolves
 * with BatchStats; fail-closed (default) rejects with AuditError if any call
 * failed.
 */
export class BatchLogger extends Recorder {
  readonly failed: FailedCall[] = [];
  private readonly queue: Item[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly opts: Required<Omit<BatchLoggerOptions, keyof RecorderOptions | "onFailure" | "waitTimeoutMs">>;
  private readonly waitTimeoutMs?: number;
  private readonly onFailure?: (failed: FailedCall[]) => void;
  private readonly clientConfig: ClientConfig;
  private client: Client | null = null;
  private closing = false;
  private wake: (() => void) | null = null;
  private readonly worker: Promise<void>;
  private outageSince: number | null = null;
  private submitted = 0;
  private acknowledged = 0;
  private refused = 0;

  constructor(config: string | ClientConfig, opts: BatchLoggerOptions = {}) {
    super(opts);
    this.clientConfig = typeof config === "string" ? { connectionString: config } : config;
    this.opts = {
      maxQueue: opts.maxQueue ?? 10000, batchSize: opts.batchSize ?? 200,
      flushIntervalMs: opts.flushIntervalMs ?? 100, onFull: opts.onFull ?? "wait",
      retryForMs: opts.retryForMs ?? 30000,
    };
    this.waitTimeoutMs = opts.waitTimeoutMs;
    this.onFailure = opts.onFailure;
    this.worker = this.run();
  }

  // ---- the caller's side ----------------------------------------------------

  async submit(toolName: string, args?: unknown, result?: unknown, durationMs?: number | null,
               context?: ContextArg): Promise<Pending> {
    return this.enqueue(makeRecord(toolName, args, result, durationMs,
                                   resolveContext(this.baseContext, context)));
  }

  private async enqueue(record: CallRecord): Promise<Pending> {
    if (this.closing) { this.refused++; throw new BatchClosedError(record); }
    if (this.queue.length >= this.opts.maxQueue) {
      if (this.opts.onFull === "reject") return this.refuse(record);
      const deadline = this.waitTimeoutMs === undefined ? Infinity : Date.now() + this.waitTimeoutMs;
      while (this.queue.length >= this.opts.maxQueue) {
        const left = deadline - Date.now();
        if (left <= 0) return this.refuse(record);
        await new Promise<void>((res) => {
          const t = left === Infinity ? null : setTimeout(res, left);
          this.waiters.push(() => { if (t) clearTimeout(t); res(); });
        });
        if (this.closing) { this.refused++; throw new BatchClosedError(record); }
      }
    }
    let item!: Item;
    const written = new Promise<LoggedCall>((resolve, reject) => { item = { record, resolve, reject }; });
    written.catch(() => undefined);   // reported through onFailure/.failed; no unhandled rejection
    this.queue.push(item);
    this.submitted++;
    if (this.queue.length >= this.opts.batchSize) this.wake?.();
    return { eventId: record.context.event_id, written };
  }

  private refuse(record: CallRecord): never {
    this.refused++;
    throw new QueueFullError(`batch queue full (${this.opts.maxQueue} calls waiting): ` +
                             `call ${JSON.stringify(record.toolName)} not accepted`, record);
  }

  /** call() and wrap(): the call is queued; a refusal is a logging failure
   *  (failOpen decides), a later write failure goes to onFailure. */
  protected async log(record: CallRecord): Promise<LoggedCall | null> {
    await this.enqueue(record);
    return null;
  }

  stats(): BatchStats {
    return {
      submitted: this.submitted, acknowledged: this.acknowledged, failed: this.failed.length,
      refused: this.refused, pending: this.submitted - this.acknowledged - this.failed.length,
    };
  }

  /** Resolves once every call submitted so far is acknowledged or failed. */
  async flush(): Promise<void> {
    this.wake?.();
    while (this.stats().pending > 0) await new Promise((r) => setTimeout(r, 5));
  }

  async close(): Promise<BatchStats> {
    this.closing = true;
    this.wake?.();
    for (const w of this.waiters.splice(0)) w();
    await this.worker;
    const st = this.stats();
    if (st.failed && !this.failOpen) {
      throw new AuditError(`${st.failed} of ${st.submitted} calls were not recorded (see .failed)`);
    }
    return st;
  }

  // ---- the writer -------------------------------------------------------------

  private async take(): Promise<Item[] | null> {
    while (this.queue.length === 0) {
      if (this.closing) return null;
      await new Promise<void>((res) => {
        const t = setTimeout(() => { this.wake = null; res(); }, this.opts.flushIntervalMs);
        this.wake = () => { clearTimeout(t); this.wake = null; res(); };
      });
    }
    const batch = this.queue.splice(0, this.opts.batchSize);
    for (const w of this.waiters.splice(0)) w();
    return batch;
  }

  private async run(): Promise<void> {
    for (;;) {
      const batch = await this.take();
      if (batch === null) break;
      await this.writeWithRetry(batch);
    }
    await this.dropClient();
  }

  private async connection(): Promise<Client> {
    if (this.client) return this.client;
    const c = new Client({ connectionTimeoutMillis: 5000, ...this.clientConfig });
    c.on("error", () => { if (this.client === c) this.client = null; });   // the server went away
    await c.connect();
    this.client = c;
    return c;
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c) await c.end().catch(() => undefined);
  }

  private async writeWithRetry(batch: Item[]): Promise<void> {
    let pause = 50;
    let retrying = false;
    for (;;) {
      try {
        await this.write(await this.connection(), batch, retrying);
        this.outageSince = null;
        return;
      } catch (err) {
        if (!isConnectionError(err)) { this.fail(batch.map((i) => [i, err])); return; }
        await this.dropClient();
        retrying = true;
        const now = Date.now();
        if (this.outageSince === null) this.outageSince = now;
        const deadline = this.outageSince + this.opts.retryForMs;
        if (now >= deadline) { this.fail(batch.map((i) => [i, err])); return; }
        await new Promise((r) => setTimeout(r, Math.min(pause, deadline - now)));
        pause = Math.min(pause * 2, 1000);
      }
    }
  }

  private async write(c: Client, batch: Item[], retrying: boolean): Promise<void> {
    if (!retrying) {
      const payload = JSON.stringify(batch.map((i) => {
        const [n, a, r, d, ctx] = recordParams(i.record) as [string, string | null, string | null, number | null, string];
        return { n, a: a === null ? null : JSON.parse(a), r: r === null ? null : JSON.parse(r), d,
                 c: JSON.parse(ctx) };
      }));
      try {
        const res = await c.query(BATCH_SQL, [payload]);
        this.ack(batch.map((item, k) => [item, { id: res.rows[k].id, eventId: res.rows[k].event_id,
                                                  alreadyStored: res.rows[k].already_stored === true }]));
        return;
      } catch (err) {
        if (isConnectionError(err)) throw err;
        // one call refused: find it, call by call
      }
    }
    // call by call, each committed on its own: a refused call fails alone,
    // and a call stored by an attempt whose COMMIT was lost is returned by
    // log_call() (1.5), or refused by its event_id (before 1.5)
    for (let k = 0; k < batch.length; k++) {
      const item = batch[k];
      try {
        const res = await c.query(LOG_CALL_SQL, recordParams(item.record));
        this.ack([[item, { id: res.rows[0].id, eventId: res.rows[0].event_id,
                           alreadyStored: res.rows[0].already_stored === true }]]);
      } catch (err) {
        if (isConnectionError(err)) {
          batch.splice(0, k);          // the rest is retried
          throw err;
        }
        if (isEventIdConflict(err)) {
          this.ack([[item, { id: null, eventId: item.record.context.event_id, alreadyStored: true }]]);
        } else {
          this.fail([[item, err]]);
        }
      }
    }
  }

  private ack(done: Array<[Item, LoggedCall]>): void {
    this.acknowledged += done.length;
    for (const [item, logged] of done) item.resolve(logged);
  }

  private fail(items: Array<[Item, unknown]>): void {
    const failed = items.map(([i, e]) => ({ record: i.record, error: e }));
    this.failed.push(...failed);
    for (const [item, err] of items) item.reject(err);
    try { this.onFailure?.(failed); } catch { /* the report is the callback's business */ }
  }
}

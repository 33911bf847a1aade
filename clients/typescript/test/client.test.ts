// tool-audit-client against a real cluster (test/cluster.ts starts it).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Client, Pool } from "pg";
import {
  AuditError, AuditLogger, BatchLogger, FailedCall, Pending, QueueFullError, callKeyEventId, verifyExport,
} from "../src/index";
import { Cluster } from "./cluster";

let cluster: Cluster;

before(async () => { cluster = await Cluster.create(); });
after(() => cluster?.destroy());

async function query(sql: string, params: unknown[] = []): Promise<any[]> {
  const c = new Client(cluster.config);
  await c.connect();
  try { return (await c.query(sql, params)).rows; } finally { await c.end(); }
}

const byEvent = async (eventId: string) =>
  (await query("SELECT * FROM tool_audit.tool_calls WHERE event_id = $1", [eventId]))[0];

const count = async (where: string, params: unknown[] = []) =>
  Number((await query(`SELECT count(*) AS n FROM tool_audit.tool_calls WHERE ${where}`, params))[0].n);

test("an object and an array are passed as they are (no 22P02)", async () => {
  const audit = new AuditLogger(cluster.config, { context: { tenant_id: "t_ts" } });
  try {
    const logged = await audit.logCall("search_orders", { customer: "c_1", tags: ["a", "b"] },
                                       [{ order_id: 1 }, { order_id: 2 }], 12.5);
    assert.ok(logged);
    assert.equal(typeof logged.id, "string");
    assert.match(logged.id!, /^[0-9]+$/);
    const row = await byEvent(logged.eventId);
    assert.deepEqual(row.arguments, { customer: "c_1", tags: ["a", "b"] });
    assert.equal(row.success, true);
    // arguments that are not an object are wrapped, as log_call()'s hint says
    const wrapped = await audit.logCall("sum", [1, 2, 3], 6);
    assert.deepEqual((await byEvent(wrapped!.eventId)).arguments, { value: [1, 2, 3] });
    // a BigInt in a result is written as its decimal string
    const big = await audit.logCall("big", {}, { order_id: 2n ** 63n - 1n });
    assert.equal((await byEvent(big!.eventId)).result_summary.order_id, "9223372036854775807");
  } finally { await audit.close(); }
});

test("wrap(): arguments, duration and result logged, the result returned", async () => {
  const audit = new AuditLogger(cluster.config, { context: { conversation_id: "conv_wrap" } });
  try {
    const getOrder = audit.wrap(async function getOrder(orderId: string, verbose: boolean) {
      await new Promise((r) => setTimeout(r, 10));
      return { order_id: orderId, status: "shipped", verbose };
    }, { argNames: ["orderId", "verbose"], context: { turn_number: 3 } });
    assert.deepEqual(await getOrder("o_9", false), { order_id: "o_9", status: "shipped", verbose: false });
    const [row] = await query("SELECT * FROM tool_audit.tool_calls WHERE conversation_id = 'conv_wrap'");
    assert.equal(row.tool_name, "getOrder");
    assert.deepEqual(row.arguments, { orderId: "o_9", verbose: false });
    assert.equal(row.result_summary.status, "shipped");
    assert.ok(row.duration_ms >= 9, `duration ${row.duration_ms}`);
    assert.equal(row.turn_number, 3);
  } finally { await audit.close(); }
});

test("an exception inside a tool is logged as a failure and rethrown", async () => {
  const audit = new AuditLogger(cluster.config, { context: { conversation_id: "conv_throw" } });
  try {
    const refund = audit.wrap(function refund(_args: { order_id: string }): string {
      throw new RangeError("order o_7 is locked");
    });
    await assert.rejects(refund({ order_id: "o_7" }), RangeError);
    let logged: any;
    await assert.rejects(audit.call("lookup", { q: "y" }, async () => { throw new Error("no index"); },
                                    undefined, (l) => { logged = l; }), /no index/);
    const rows = await query("SELECT * FROM tool_audit.tool_calls WHERE conversation_id = 'conv_throw' ORDER BY id");
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[0].arguments, { order_id: "o_7" });
    assert.equal(rows[0].success, false);
    assert.match(rows[0].error, /locked/);
    assert.equal(rows[0].result_summary.error_type, "RangeError");
    assert.equal(rows[1].event_id, logged.eventId);
  } finally { await audit.close(); }
});

test("commit behaviour: own pool commits each call; a client of yours needs transactional", async () => {
  const other = new AuditLogger(cluster.connectionString);
  const logged = await other.logCall("ping", {}, { ok: true });
  await other.close();
  assert.ok(await byEvent(logged!.eventId));

  const client = new Client(cluster.config);
  await client.connect();
  try {
    assert.throws(() => new AuditLogger(null, { queryable: client }), /transactional/);
    const tx = new AuditLogger(null, { queryable: client, transactional: true });
    await client.query("BEGIN");
    const rolledBack = await tx.logCall("in_tx", {}, {});
    await client.query("ROLLBACK");
    await client.query("BEGIN");
    const committed = await tx.logCall("in_tx", {}, {});
    await client.query("COMMIT");
    assert.equal(await byEvent(rolledBack!.eventId), undefined);
    assert.ok(await byEvent(committed!.eventId));
  } finally { await client.end(); }
  // a pool of yours: each statement commits on its own
  const pool = new Pool(cluster.config);
  const viaPool = await new AuditLogger(null, { queryable: pool }).logCall("pooled", {}, {});
  await pool.end();
  assert.ok(await byEvent(viaPool!.eventId));
});

test("a retry returns the stored row (same tool_call_id)", async () => {
  const audit = new AuditLogger(cluster.config, { context: { tenant_id: "t_ts", conversation_id: "conv_ts_retry" } });
  try {
    const ctx = { tool_call_id: "toolu_ts_retry_1", turn_number: 2 };
    const first = await audit.logCall("get_order", { order_id: "o_1" }, { status: "shipped" }, 5, ctx);
    const again = await audit.logCall("get_order", { order_id: "o_1" }, { status: "shipped" }, 5, ctx);
    assert.equal(first!.alreadyStored, false);
    assert.equal(again!.alreadyStored, true);
    assert.deepEqual([again!.id, again!.eventId], [first!.id, first!.eventId]);
    assert.equal(await count("tool_call_id = $1", ["toolu_ts_retry_1"]), 1);
    // a different call under that id is refused, not stored
    await assert.rejects(audit.logCall("get_order", { order_id: "o_2" }, {}, 1, ctx),
                         (e: unknown) => e instanceof AuditError && /already recorded for another call/.test(e.message));
    assert.equal(await count("tool_call_id = $1", ["toolu_ts_retry_1"]), 1);
    // the event_id of a keyed call is the one the Python helper derives
    assert.equal(callKeyEventId({ tenant_id: "t", tool_call_id: "c1" }), "db84d52c-a975-5941-8075-4dab333c23c3");
  } finally { await audit.close(); }
});

test("a concurrent retry waits for the first attempt, then returns its row", async () => {
  const audit = new AuditLogger(cluster.config, { context: { tenant_id: "t_ts" } });
  try {
    for (const outcome of ["COMMIT", "ROLLBACK"]) {
      const ctx = { tool_call_id: `toolu_ts_concurrent_${outcome}` };
      const client = new Client(cluster.config);
      await client.connect();
      const tx = new AuditLogger(null, { queryable: client, transactional: true, context: { tenant_id: "t_ts" } });
      await client.query("BEGIN");
      const first = await tx.logCall("lookup", { q: 1 }, { n: 1 }, 2, ctx);
      let settled = false;
      const retry = audit.logCall("lookup", { q: 1 }, { n: 1 }, 2, ctx).finally(() => { settled = true; });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(settled, false, "the retry waits for the first attempt");
      await client.query(outcome);
      const got = await retry;
      await client.end();
      assert.equal(await count("tool_call_id = $1", [ctx.tool_call_id]), 1);
      if (outcome === "COMMIT") assert.deepEqual([got!.id, got!.alreadyStored], [first!.id, true]);
      else { assert.notEqual(got!.id, first!.id); assert.equal(got!.alreadyStored, false); }
    }
  } finally { await audit.close(); }
});

test("call() sends the client's start time as started_at", async () => {
  const audit = new AuditLogger(cluster.config, { context: { tenant_id: "t_ts" } });
  try {
    let logged: any = null;
    await audit.call("timed_tool", { a: 1 }, async () => ({ ok: true }), { tool_call_id: "toolu_ts_started" },
                     (l) => { logged = l; });
    const [row] = await query("SELECT started_at, recorded_at FROM tool_audit.tool_calls WHERE id = $1", [logged.id]);
    assert.ok(row.started_at instanceof Date);
    assert.ok(row.started_at.getTime() <= row.recorded_at.getTime());
  } finally { await audit.close(); }
});

test("fail-closed rejects with AuditError; fail-open reports and carries on", async () => {
  const closed = new AuditLogger(cluster.config);
  try {
    await assert.rejects(closed.logCall("t", {}, {}, null, { turn_number: "seven" as any }),
                         (e: any) => e instanceof AuditError && (e.cause as any)?.code === "22P02");
    const tool = closed.wrap(function ok() { return 1; }, { context: { turn_number: "seven" as any } });
    await assert.rejects(tool(), AuditError);
  } finally { await closed.close(); }
  const seen: Array<[unknown, unknown]> = [];
  const open = new AuditLogger(cluster.config, { failOpen: true, onError: (e, r) => seen.push([e, r]) });
  try {
    const tool = open.wrap(function toolOk() { return 41 + 1; }, { context: { turn_number: "seven" as any } });
    assert.equal(await tool(), 42);
  } finally { await open.close(); }
  assert.equal(open.unlogged, 1);
  assert.equal((seen[0][0] as any).code, "22P02");
  assert.equal((seen[0][1] as any).toolName, "toolOk");
});

test("concurrent calls (async) all recorded", async () => {
  const audit = new AuditLogger(cluster.config, { context: { conversation_id: "conv_async" } });
  try {
    const fetchPage = audit.wrap(async function fetchPage(url: string, n: number) {
      await new Promise((r) => setTimeout(r, 1));
      if (n === 3) throw new Error("timeout");
      return [url, n];
    });
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, n) => fetchPage("https://x.test", n)));
    assert.equal(results.filter((r) => r.status === "rejected").length, 1);
    assert.equal(await count("conversation_id = 'conv_async'"), 20);
    assert.equal(await count("conversation_id = 'conv_async' AND NOT success"), 1);
    const ev = await audit.logEvent("prompt.update", "admin_1", { before: { v: 1 }, after: { v: 2 } }, { reason: "tone" });
    assert.match(ev.id!, /^[0-9]+$/);
  } finally { await audit.close(); }
});

test("batching writes everything and isolates a call the server refuses", { timeout: 120_000 }, async () => {
  const failures: FailedCall[] = [];
  const batch = new BatchLogger(cluster.config, { batchSize: 50, context: { conversation_id: "conv_b1" },
                                                   onFailure: (f) => failures.push(...f) });
  const pending: Pending[] = [];
  for (let n = 0; n < 500; n++) {
    pending.push(await batch.submit("bulk", { n }, [n, n + 1], 0.5, { turn_number: (n === 137 ? "bad" : n) as any }));
  }
  await assert.rejects(batch.close(), AuditError);      // fail-closed: a call failed
  assert.equal(batch.stats().acknowledged, 499);
  assert.equal(failures.length, 1);
  assert.equal(failures[0].record.context.turn_number, "bad");
  assert.equal((failures[0].error as any).code, "22P02");
  await assert.rejects(pending[137].written);
  assert.match((await pending[0].written).id!, /^[0-9]+$/);
  assert.equal(await count("conversation_id = 'conv_b1'"), 499);
});

test("batching: a full queue rejects when asked, every accepted call reported", { timeout: 120_000 }, async () => {
  cluster.kill();
  let accepted = 0, refused = 0;
  const batch = new BatchLogger(cluster.config, { maxQueue: 5, batchSize: 1, onFull: "reject", retryForMs: 500, failOpen: true });
  try {
    for (let n = 0; n < 20; n++) {
      try { await batch.submit("q", { n }); accepted++; } catch (e) { assert.ok(e instanceof QueueFullError); refused++; }
    }
  } finally {
    const st = await batch.close();
    cluster.start();
    assert.ok(refused > 0);
    assert.equal(st.refused, refused);
    assert.equal(st.submitted, accepted);
    assert.equal(st.failed + st.acknowledged, accepted);
    assert.equal(st.pending, 0);
  }
});

test("batching under a kill of the database: nothing acknowledged lost, the rest reported", { timeout: 120_000 }, async () => {
  const conv = "conv_kill";
  const failed: FailedCall[] = [];
  const batch = new BatchLogger(cluster.config, { maxQueue: 300, batchSize: 25, flushIntervalMs: 5,
    waitTimeoutMs: 500, retryForMs: 1500, failOpen: true, onFailure: (f) => failed.push(...f),
    context: { conversation_id: conv } });
  const pending: Pending[] = [];
  let refused = 0, killed = false;
  let st;
  try {
    for (let n = 0; n < 3000; n++) {
      try { pending.push(await batch.submit("bulk", { n }, { n })); } catch (e) {
        assert.ok(e instanceof QueueFullError); refused++;          // backpressure: the caller is told
      }
      if (!killed && batch.stats().acknowledged >= 200) { cluster.kill(); killed = true; }
      if (n % 50 === 0) await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    st = await batch.close();
    cluster.start();
  }
  assert.ok(killed, "the server was killed mid-stream");
  const outcomes = await Promise.allSettled(pending.map((p) => p.written));
  const acked = outcomes.filter((o) => o.status === "fulfilled").map((o) => (o as PromiseFulfilledResult<any>).value.eventId);
  assert.equal(acked.length, st.acknowledged);
  assert.ok(st.acknowledged >= 200);
  assert.ok(st.failed > 0, "the kill left calls unwritten, and they are reported");
  assert.equal(failed.length, st.failed);
  assert.equal(st.acknowledged + st.failed, st.submitted);
  assert.equal(st.submitted + refused, 3000);
  const stored = new Set((await query("SELECT event_id::text AS e FROM tool_audit.tool_calls WHERE conversation_id = $1", [conv]))
    .map((r) => r.e as string));
  assert.deepEqual(acked.filter((e) => !stored.has(e)), [], "every acknowledged call survived");
  const reported = new Set(failed.map((f) => f.record.context.event_id));
  const ackedSet = new Set(acked);
  assert.deepEqual([...stored].filter((e) => !ackedSet.has(e) && !reported.has(e)), [],
                   "nothing stored that was neither acknowledged nor reported");
});

test("batching: a restart within retryForMs writes everything once", { timeout: 120_000 }, async () => {
  const conv = "conv_restart";
  const batch = new BatchLogger(cluster.config, { batchSize: 20, flushIntervalMs: 5, retryForMs: 30000,
                                                   context: { conversation_id: conv } });
  for (let n = 0; n < 100; n++) await batch.submit("a", { n });
  await batch.flush();
  cluster.kill();
  const pending: Pending[] = [];
  for (let n = 0; n < 100; n++) pending.push(await batch.submit("b", { n }));
  await new Promise((r) => setTimeout(r, 500));
  cluster.start();
  const st = await batch.close();
  assert.deepEqual([st.acknowledged, st.failed], [200, 0]);
  await Promise.all(pending.map((p) => p.written));
  assert.equal(await count("conversation_id = $1", [conv]), 200);
  assert.equal(await count("conversation_id = $1 AND tool_name = 'b'", [conv]), 100);
});

test("the export self-check passes from Node (chain_id read exactly)", async () => {
  const audit = new AuditLogger(cluster.config);
  for (let n = 0; n < 5; n++) await audit.logCall("exported", { n }, { ok: true }, null, { tenant_id: "t_export" });
  await audit.logEvent("prompt.update", "admin_1", { after: "v2" });
  await audit.close();
  const lines = cluster.psql("SELECT doc FROM tool_audit.export_jsonl('-infinity', 'infinity') doc").split("\n").filter(Boolean);
  assert.ok(lines.length > 5);
  assert.ok(lines.every((l) => typeof JSON.parse(l).chain_id === "string"));
  // at least one chain_id is beyond 2^53: as a JSON number it would not survive JSON.parse
  assert.ok(lines.some((l) => { const v = BigInt(JSON.parse(l).chain_id); return v > 2n ** 53n || v < -(2n ** 53n); }));
  const check = verifyExport(lines);
  assert.deepEqual(check.problems, []);
  assert.equal(check.linksChecked, lines.length);
  // a changed link is found
  const doc = JSON.parse(lines[lines.length - 1]);
  doc.chain_hash = (doc.chain_hash[0] === "0" ? "1" : "0") + doc.chain_hash.slice(1);
  assert.equal(verifyExport([...lines.slice(0, -1), JSON.stringify(doc)]).ok, false);
  // an export of 1.3 (chain_id as a number) is refused, not silently wrong
  const old = lines.map((l) => l.replace(/"chain_id": "(-?[0-9]+)"/, '"chain_id": $1'));
  assert.equal(verifyExport(old).ok, false);
});

test("the agent loop example runs", async () => {
  const out = execFileSync(process.execPath, [join(__dirname, "..", "examples", "agent-loop.js")],
    { env: { ...process.env, TOOL_AUDIT_DSN: cluster.connectionString }, encoding: "utf8" });
  assert.match(out, /answer:/);
  assert.equal(await count("conversation_id = 'example_conv_ts'"), 3);
  assert.equal(await count("conversation_id = 'example_conv_ts' AND NOT success"), 1);
});

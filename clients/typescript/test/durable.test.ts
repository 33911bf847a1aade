// durableCall() and wrap({ durable: true }) (begin_call() / end_call())
// against a real cluster: the call's two rows survive the tool's rollback,
// and the tool's tracked row changes carry the call's id.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Client, Pool } from "pg";
import { AuditError, AuditLogger, LoggedCall } from "../src/index";
import { Cluster } from "./cluster";

let cluster: Cluster;

before(async () => {
  cluster = await Cluster.create();
  cluster.psql("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);" +
               "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 20) g;" +
               "SELECT tool_audit.track('accounts')");
});
after(() => cluster?.destroy());

async function query(sql: string, params: unknown[] = []): Promise<any[]> {
  const c = new Client(cluster.config);
  await c.connect();
  try { return (await c.query(sql, params)).rows; } finally { await c.end(); }
}

const balance = async (id: number) => (await query("SELECT balance FROM accounts WHERE id = $1", [id]))[0].balance;

const calls = (callId: string) =>
  query("SELECT state, success, error, caller_committed FROM tool_audit.calls WHERE call_id = $1", [callId]);

const phases = async (callId: string) =>
  (await query("SELECT call_phase FROM tool_audit.tool_calls WHERE event_id = $1 OR call_event_id = $1 ORDER BY id",
               [callId])).map((r) => r.call_phase);

const changes = (callId: string) =>
  query("SELECT operation, row_key, new_values FROM tool_audit.data_changes WHERE call_event_id = $1 ORDER BY id",
        [callId]);

test("a tool that changes a tracked row and throws: rolled back, started and ended kept, failed", async () => {
  const audit = new AuditLogger(cluster.config, { context: { tenant_id: "t_dur" } });   // its own pool
  let callId: string | null = null;
  let logged: LoggedCall | null = null;
  try {
    await assert.rejects(audit.durableCall("debit", { account: 1, amount: 30 }, async (db, id) => {
      callId = id;
      await db.query("UPDATE accounts SET balance = balance - 30 WHERE id = 1");
      throw new Error("payment gateway down");
    }, { onLogged: (l) => { logged = l; } }), /payment gateway down/);
  } finally { await audit.close(); }
  assert.ok(callId);
  assert.deepEqual(await calls(callId!), [{ state: "ended", success: false, error: "payment gateway down",
                                            caller_committed: false }]);   // the tool's transaction did not commit
  assert.deepEqual(await phases(callId!), ["started", "ended"]);
  assert.deepEqual(await changes(callId!), []);                  // the change rolled back
  assert.equal(await balance(1), 100);
  const [ended] = await query("SELECT id::text FROM tool_audit.tool_calls WHERE call_event_id = $1", [callId]);
  assert.equal(logged!.id, ended.id);
});

test("a tool that succeeds: its data_changes rows carry the call's id", async () => {
  const client = new Client(cluster.config);
  await client.connect();
  const audit = new AuditLogger(null, { queryable: client, transactional: true, context: { tenant_id: "t_dur" } });
  try {
    let callId: string | null = null;
    const out = await audit.durableCall("transfer", { from: 2, to: 3, amount: 25 }, async (db, id) => {
      callId = id;
      const [{ call }] = (await db.query("SELECT current_setting('tool_audit.call') AS call")).rows;
      assert.equal(call, id);
      await db.query("UPDATE accounts SET balance = balance - 25 WHERE id = 2");
      await db.query("UPDATE accounts SET balance = balance + 25 WHERE id = 3");
      return { transferred: 25 };
    }, { context: { tool_call_id: "toolu_dur_ts_1" } });
    assert.deepEqual(out, { transferred: 25 });
    assert.equal(client.getTransactionStatus(), "I");            // committed, nothing left open
    assert.deepEqual(await calls(callId!), [{ state: "ended", success: true, error: null, caller_committed: true }]);
    assert.deepEqual(await phases(callId!), ["started", "ended"]);
    assert.deepEqual(await changes(callId!), [
      { operation: "UPDATE", row_key: { id: 2 }, new_values: { balance: 75 } },
      { operation: "UPDATE", row_key: { id: 3 }, new_values: { balance: 125 } },
    ]);
    assert.deepEqual([await balance(2), await balance(3)], [75, 125]);
    // a change after the call is no longer the call's
    await client.query("UPDATE accounts SET balance = 99 WHERE id = 4");
    assert.deepEqual(await query("SELECT call_event_id FROM tool_audit.data_changes WHERE row_key = '{\"id\": 4}'"),
                     [{ call_event_id: null }]);
  } finally { await client.end(); }
});

test("wrap({ durable: true, client }) and a pool", async () => {
  const client = new Client(cluster.config);
  await client.connect();
  const pool = new Pool(cluster.config);
  const audit = new AuditLogger(null, { queryable: pool });
  try {
    const closeAccount = audit.wrap(async function closeAccount(account: number) {
      await client.query("UPDATE accounts SET balance = 0 WHERE id = $1", [account]);
      if (account === 6) throw new Error("account 6 is frozen");
      return { closed: account };
    }, { argNames: ["account"], durable: true, client });
    assert.deepEqual(await closeAccount(5), { closed: 5 });
    await assert.rejects(closeAccount(6), /frozen/);
    // wrap() on the logger's pool: the tool could not see the pool's client
    await assert.rejects(async () => audit.wrap(async function t() { return 1; }, { durable: true })(), TypeError);
    // durableCall() on the pool: the tool gets the client
    await audit.durableCall("closeAccount", { account: 15 }, (db) =>
      db.query("UPDATE accounts SET balance = 0 WHERE id = 15"));
  } finally { await client.end(); await pool.end(); }
  const rows = await query(
    "SELECT c.arguments, c.success, c.state, (SELECT count(*)::int FROM tool_audit.data_changes d " +
    "WHERE d.call_event_id = c.call_id) AS changes FROM tool_audit.calls c WHERE c.tool_name = 'closeAccount' ORDER BY c.id");
  assert.deepEqual(rows, [
    { arguments: { account: 5 }, success: true, state: "ended", changes: 1 },
    { arguments: { account: 6 }, success: false, state: "ended", changes: 0 },
    { arguments: { account: 15 }, success: true, state: "ended", changes: 1 },
  ]);
  assert.deepEqual([await balance(5), await balance(6), await balance(15)], [0, 100, 0]);
});

test("inside the caller's transaction: a savepoint each, the caller decides", async () => {
  const client = new Client(cluster.config);
  await client.connect();
  const audit = new AuditLogger(null, { queryable: client, transactional: true });
  const ids: (string | null)[] = [];
  try {
    await client.query("BEGIN");
    await client.query("UPDATE accounts SET balance = 1 WHERE id = 7");
    await assert.rejects(audit.durableCall("lookup", { k: 1 }, async (db, id) => {
      ids.push(id);
      await db.query("UPDATE accounts SET balance = 2 WHERE id = 8");
      throw new Error("k");
    }));
    await audit.durableCall("lookup", { k: 2 }, async (db, id) => {
      ids.push(id);
      await db.query("UPDATE accounts SET balance = 3 WHERE id = 9");
    });
    assert.equal(client.getTransactionStatus(), "T");           // still the caller's
    await client.query("ROLLBACK");
  } finally { await client.end(); }
  assert.deepEqual([await balance(7), await balance(8), await balance(9)], [100, 100, 100]);
  assert.deepEqual((await calls(ids[0]!)).map((r) => [r.state, r.success]), [["ended", false]]);
  assert.deepEqual(await calls(ids[1]!), [{ state: "ended", success: true, error: null, caller_committed: false }]);
  assert.deepEqual([...await changes(ids[0]!), ...await changes(ids[1]!)], []);
});

test("fail-closed: a start that cannot be recorded stops the tool; fail-open runs it unlinked", async () => {
  const client = new Client(cluster.config);
  await client.connect();
  try {
    const closed = new AuditLogger(null, { queryable: client, transactional: true });
    let ran = false;
    const err = await closed.durableCall("debit", { account: 10 }, () => { ran = true; },
                                         { context: { turn_number: "seven" as unknown as number } })
      .then(() => null, (e) => e);
    assert.ok(err instanceof AuditError, String(err));
    assert.equal((err.cause as { code?: string }).code, "22P02");
    assert.equal(ran, false);
    assert.equal(client.getTransactionStatus(), "I");

    const errors: unknown[] = [];
    const open = new AuditLogger(null, { queryable: client, transactional: true, failOpen: true,
                                         onError: (e) => errors.push(e) });
    let seen: string | null = "unset";
    await open.durableCall("debit", { account: 11 }, async (db, id) => {
      seen = id;
      await db.query("UPDATE accounts SET balance = 11 WHERE id = 11");
    }, { context: { turn_number: "seven" as unknown as number } });
    assert.equal(seen, null);
    assert.deepEqual([open.unlogged, errors.length], [1, 1]);
    assert.equal(await balance(11), 11);                        // committed all the same
    assert.deepEqual(await query("SELECT call_event_id FROM tool_audit.data_changes WHERE row_key = '{\"id\": 11}'"),
                     [{ call_event_id: null }]);
  } finally { await client.end(); }
});

test("an end that fails: fail-closed rolls the tool back, fail-open commits it", async () => {
  // the tool ends its own call first: durableCall()'s end_call() is then a second end (23505)
  const client = new Client(cluster.config);
  await client.connect();
  const endedTwice = (audit: AuditLogger, account: number) =>
    audit.durableCall("debit", { account }, async (db, id) => {
      await db.query("UPDATE accounts SET balance = 1 WHERE id = $1", [account]);
      await db.query("SELECT tool_audit.end_call($1, '{}')", [id]);
      return id;
    });
  try {
    const closed = new AuditLogger(null, { queryable: client, transactional: true });
    const err = await endedTwice(closed, 16).then(() => null, (e) => e);
    assert.ok(err instanceof AuditError, String(err));
    assert.equal((err.cause as { code?: string }).code, "23505");
    assert.equal(await balance(16), 100);
    assert.equal(client.getTransactionStatus(), "I");

    const codes: unknown[] = [];
    const open = new AuditLogger(null, { queryable: client, transactional: true, failOpen: true,
                                         onError: (e) => codes.push((e as { code?: string }).code) });
    const id = await endedTwice(open, 17);
    assert.deepEqual([open.unlogged, codes], [1, ["23505"]]);
    assert.equal(await balance(17), 1);
    assert.equal((await changes(id!)).length, 1);
  } finally { await client.end(); }
});

test("the durable agent loop example runs", async () => {
  const out = execFileSync(process.execPath, [join(__dirname, "..", "examples", "durable-agent-loop.js")],
    { env: { ...process.env, TOOL_AUDIT_DSN: cluster.connectionString }, encoding: "utf8" });
  assert.match(out, /answer:/);
  assert.deepEqual(await query(
    "SELECT c.tool_call_id, c.state, c.success, count(d.id)::int AS changes FROM tool_audit.calls c " +
    "LEFT JOIN tool_audit.data_changes d ON d.call_event_id = c.call_id " +
    "WHERE c.conversation_id = 'example_conv_durable_ts' GROUP BY 1, 2, 3, c.id ORDER BY c.id"), [
    { tool_call_id: "call_d1", state: "ended", success: false, changes: 0 },
    { tool_call_id: "call_d2", state: "ended", success: true, changes: 1 },
  ]);
  assert.deepEqual(await query("SELECT id, status FROM example_orders_ts ORDER BY id"),
                   [{ id: "o_1", status: "cancelled" }, { id: "o_2", status: "delivered" }]);
});

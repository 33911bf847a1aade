// agent-loop.ts's loop with a tool that writes to the database, recorded
// with durableCall() (tool_audit's begin_call() and end_call()): the tool
// runs in a transaction on a client of the pool; when it throws, its change
// is rolled back but the call stays recorded (started and ended, failed);
// when it succeeds, the change it made to a tracked table carries the call's id.
//
//   TOOL_AUDIT_DSN=postgresql://app@localhost/app node dist/examples/durable-agent-loop.js
import { Pool } from "pg";
import { AuditLogger, Queryable } from "../src/index";

const pool = new Pool({ connectionString: process.env.TOOL_AUDIT_DSN ?? "" });
const audit = new AuditLogger(null, {
  queryable: pool,
  context: { conversation_id: "example_conv_durable_ts", user_id: "usr_42", model: "stub-model-1", tenant_id: "acme" },
});

/** An admin's job, done here so that the example runs on its own: the table
 *  the tool changes, tracked by tool_audit (doc/changes.md). */
async function setup(): Promise<void> {
  const [{ t }] = (await pool.query("SELECT to_regclass('example_orders_ts') AS t")).rows;
  if (t !== null) return;
  await pool.query("CREATE TABLE example_orders_ts (id text PRIMARY KEY, status text NOT NULL)");
  await pool.query("INSERT INTO example_orders_ts VALUES ('o_1', 'shipped'), ('o_2', 'delivered')");
  await pool.query("SELECT tool_audit.track('example_orders_ts')");
}

type Args = { order_id: string };
const TOOLS: Record<string, (db: Queryable, args: Args) => Promise<unknown>> = {
  cancel_order: async (db, { order_id }) => {
    const [{ status }] = (await db.query("SELECT status FROM example_orders_ts WHERE id = $1 FOR UPDATE",
                                         [order_id])).rows;
    await db.query("UPDATE example_orders_ts SET status = 'cancelled' WHERE id = $1", [order_id]);
    // after the UPDATE: rolled back, the call recorded as failed
    if (status === "delivered") throw new Error(`order ${order_id} was delivered: it cannot be cancelled`);
    return { order_id, status: "cancelled" };
  },
};

type ToolCall = { name: string; arguments: Args; id: string };
type Message = { role: "user" | "tool"; content: unknown };

/** Stands in for an LLM: a fixed plan of tool calls, then an answer. */
function stubModel(messages: Message[]): { toolCall?: ToolCall; content?: string } {
  const plan: ToolCall[] = [
    { name: "cancel_order", arguments: { order_id: "o_2" }, id: "call_d1" },
    { name: "cancel_order", arguments: { order_id: "o_1" }, id: "call_d2" },
  ];
  const done = messages.filter((m) => m.role === "tool").length;
  if (done < plan.length) return { toolCall: plan[done] };
  return { content: `Cancelled: ${JSON.stringify(messages[messages.length - 1].content)}` };
}

async function execute(call: ToolCall, turn: number): Promise<unknown> {
  try {
    return await audit.durableCall(call.name, call.arguments, (db) => TOOLS[call.name](db, call.arguments),
                                   { context: { turn_number: turn, tool_call_id: call.id } });
  } catch (err) {
    return { error: String(err) };
  }
}

async function run(question: string): Promise<string> {
  const messages: Message[] = [{ role: "user", content: question }];
  for (let turn = 1; ; turn++) {
    const reply = stubModel(messages);
    if (!reply.toolCall) return reply.content!;
    messages.push({ role: "tool", content: await execute(reply.toolCall, turn) });
  }
}

async function main(): Promise<void> {
  await setup();
  console.log("answer:", await run("Cancel my orders"));
  // each call: its two rows paired, and what it changed
  const rows = (await pool.query(
    "SELECT c.tool_call_id, c.state, c.success, c.error, count(d.id)::int AS changes " +
    "FROM tool_audit.calls c LEFT JOIN tool_audit.data_changes d ON d.call_event_id = c.call_id " +
    "WHERE c.conversation_id = 'example_conv_durable_ts' GROUP BY 1, 2, 3, 4, c.id ORDER BY c.id")).rows;
  for (const r of rows) {
    console.log(`call ${r.tool_call_id}: ${r.state}, success ${r.success}, error ${r.error}, ${r.changes} row changes`);
  }
}

main()
  .finally(() => pool.end())
  .catch((err) => { console.error(err); process.exitCode = 1; });

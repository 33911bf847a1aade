// A tool-calling agent loop wired to tool_audit, with a stub model (no
// network): the model asks for tools, the loop runs them, every call is
// recorded with who asked, in which conversation and turn.
//
//   TOOL_AUDIT_DSN=postgresql://app@localhost/app node dist/examples/agent-loop.js
import { AuditLogger } from "../src/index";

const audit = new AuditLogger(process.env.TOOL_AUDIT_DSN ?? "", {
  context: { conversation_id: "example_conv_ts", user_id: "usr_42", model: "stub-model-1", tenant_id: "acme" },
});

interface Order { order_id: string; status: string; items: string[] }
const ORDERS: Record<string, Order> = { o_1: { order_id: "o_1", status: "shipped", items: ["lamp", "bulb"] } };

const TOOLS: Record<string, (args: { order_id: string }) => unknown> = {
  get_order: ({ order_id }) => {
    const o = ORDERS[order_id];
    if (!o) throw new Error(`no order ${order_id}`);    // logged as a failure
    return o;
  },
  list_items: ({ order_id }) => ORDERS[order_id].items,  // an array: stored as JSON, as it is
};

type ToolCall = { name: string; arguments: { order_id: string }; id: string };
type Message = { role: "user" | "tool"; content: unknown };

/** Stands in for an LLM: a fixed plan of tool calls, then an answer. */
function stubModel(messages: Message[]): { toolCall?: ToolCall; content?: string } {
  const plan: ToolCall[] = [
    { name: "get_order", arguments: { order_id: "o_1" }, id: "call_1" },
    { name: "get_order", arguments: { order_id: "o_404" }, id: "call_2" },
    { name: "list_items", arguments: { order_id: "o_1" }, id: "call_3" },
  ];
  const done = messages.filter((m) => m.role === "tool").length;
  if (done < plan.length) return { toolCall: plan[done] };
  return { content: `Order o_1 has shipped: ${(messages[messages.length - 1].content as string[]).join(", ")}` };
}

/** Runs one tool call and records it, with the turn and the model's own call
 *  id; a tool that throws is recorded as a failure and the model is told. */
async function execute(call: ToolCall, turn: number): Promise<unknown> {
  try {
    return await audit.call(call.name, call.arguments, () => TOOLS[call.name](call.arguments),
                            { turn_number: turn, tool_call_id: call.id });
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

run("Where is my order o_1?")
  .then((answer) => console.log("answer:", answer))
  .finally(() => audit.close())
  .catch((err) => { console.error(err); process.exitCode = 1; });

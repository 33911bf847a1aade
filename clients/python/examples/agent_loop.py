"""A tool-calling agent loop wired to tool_audit, with a stub model (no
network): the model asks for tools, the loop runs them, every call is
recorded with who asked, in which conversation and turn.

    TOOL_AUDIT_DSN="host=/var/run/postgresql dbname=app" python3 agent_loop.py
"""

import os

from tool_audit_client import AuditLogger

audit = AuditLogger(os.environ.get("TOOL_AUDIT_DSN", ""),
                    context={"conversation_id": "example_conv_1", "user_id": "usr_42",
                             "model": "stub-model-1", "tenant_id": "acme"})

ORDERS = {"o_1": {"order_id": "o_1", "status": "shipped", "items": ["lamp", "bulb"]}}


def get_order(order_id):
    return ORDERS[order_id]            # KeyError for an unknown order: logged as a failure


def list_items(order_id):
    return ORDERS[order_id]["items"]   # a list: stored as JSON, as it is


def stub_model(messages):
    """Stands in for an LLM: a fixed plan of tool calls, then an answer."""
    plan = [("get_order", {"order_id": "o_1"}, "call_1"),
            ("get_order", {"order_id": "o_404"}, "call_2"),
            ("list_items", {"order_id": "o_1"}, "call_3")]
    done = sum(1 for m in messages if m["role"] == "tool")
    if done < len(plan):
        name, args, call_id = plan[done]
        return {"tool_call": {"name": name, "arguments": args, "id": call_id}}
    return {"content": "Order o_1 has shipped: " + ", ".join(messages[-1]["content"])}


TOOLS = {"get_order": get_order, "list_items": list_items}


def execute(call, turn):
    """Run one tool call and record it: the turn and the model's own call id
    as attribution; a tool that raises is recorded as a failure (the
    context manager re-raises) and the model is told."""
    try:
        with audit.call(call["name"], call["arguments"],
                        context={"turn_number": turn, "tool_call_id": call["id"]}) as rec:
            rec.result = TOOLS[call["name"]](**call["arguments"])
        return rec.result
    except Exception as exc:  # noqa: BLE001 - the model sees the error
        return {"error": f"{type(exc).__name__}: {exc}"}


def run(question):
    messages = [{"role": "user", "content": question}]
    turn = 0
    while True:
        turn += 1
        reply = stub_model(messages)
        if "tool_call" not in reply:
            return reply["content"]
        messages.append({"role": "tool", "content": execute(reply["tool_call"], turn)})


if __name__ == "__main__":
    try:
        print("answer:", run("Where is my order o_1?"))
    finally:
        audit.close()

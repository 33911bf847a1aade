"""agent_loop.py's loop with a tool that writes to the database, recorded
with durable=True (tool_audit's begin_call() and end_call()): the tool runs
in a transaction on the agent's connection; when it raises, its change is
rolled back but the call stays recorded (started and ended, failed); when it
succeeds, the change it made to a tracked table carries the call's id.

    TOOL_AUDIT_DSN="host=/var/run/postgresql dbname=app" python3 durable_agent_loop.py
"""

import os

import psycopg

from tool_audit_client import AuditLogger

conn = psycopg.connect(os.environ.get("TOOL_AUDIT_DSN", ""), autocommit=True)  # the tools' SQL
audit = AuditLogger(connection=conn,
                    context={"conversation_id": "example_conv_durable", "user_id": "usr_42",
                             "model": "stub-model-1", "tenant_id": "acme"})


def setup():
    """An admin's job, done here so that the example runs on its own: the
    table the tool changes, tracked by tool_audit (doc/changes.md)."""
    if conn.execute("SELECT to_regclass('example_orders')").fetchone()[0] is None:
        conn.execute("CREATE TABLE example_orders (id text PRIMARY KEY, status text NOT NULL)")
        conn.execute("INSERT INTO example_orders VALUES ('o_1', 'shipped'), ('o_2', 'delivered')")
        conn.execute("SELECT tool_audit.track('example_orders')")


def cancel_order(order_id):
    (status,) = conn.execute("SELECT status FROM example_orders WHERE id = %s FOR UPDATE",
                             (order_id,)).fetchone()
    conn.execute("UPDATE example_orders SET status = 'cancelled' WHERE id = %s", (order_id,))
    if status == "delivered":        # after the UPDATE: rolled back, the call recorded as failed
        raise ValueError(f"order {order_id} was delivered: it cannot be cancelled")
    return {"order_id": order_id, "status": "cancelled"}


TOOLS = {"cancel_order": cancel_order}


def stub_model(messages):
    """Stands in for an LLM: a fixed plan of tool calls, then an answer."""
    plan = [("cancel_order", {"order_id": "o_2"}, "call_d1"),
            ("cancel_order", {"order_id": "o_1"}, "call_d2")]
    done = sum(1 for m in messages if m["role"] == "tool")
    if done < len(plan):
        name, args, call_id = plan[done]
        return {"tool_call": {"name": name, "arguments": args, "id": call_id}}
    return {"content": f"Cancelled: {messages[-1]['content']}"}


def execute(call, turn):
    try:
        with audit.call(call["name"], call["arguments"], durable=True,
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
        setup()
        print("answer:", run("Cancel my orders"))
        # each call: its two rows paired, and what it changed
        for row in conn.execute(
                "SELECT c.tool_call_id, c.state, c.success, c.error, count(d.id) "
                "FROM tool_audit.calls c LEFT JOIN tool_audit.data_changes d "
                "ON d.call_event_id = c.call_id WHERE c.conversation_id = 'example_conv_durable' "
                "GROUP BY 1, 2, 3, 4, c.id ORDER BY c.id"):
            print("call %s: %s, success %s, error %s, %d row changes" % row)
    finally:
        audit.close()
        conn.close()

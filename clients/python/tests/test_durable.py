"""durable=True (begin_call() / end_call()) against a real cluster: the call's
two rows survive the tool's rollback, and the tool's tracked row changes
carry the call's id (tests/cluster.py starts the cluster)."""

import asyncio
import os
import subprocess
import sys
import unittest

import psycopg

from tool_audit_client import AsyncAuditLogger, AuditError, AuditLogger

from cluster import Cluster

HERE = os.path.dirname(os.path.abspath(__file__))
cluster = None


def setUpModule():
    global cluster
    cluster = Cluster()
    cluster.psql("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);"
                 "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 20) g;"
                 "SELECT tool_audit.track('accounts')")


def tearDownModule():
    if cluster is not None:
        cluster.destroy()


def query(sql, params=()):
    with psycopg.connect(cluster.conninfo) as conn:
        return conn.execute(sql, params).fetchall()


def call_state(call_id):
    """(state, success, error) of the call in tool_audit.calls, and the
    phases of its rows in tool_calls."""
    state = query("SELECT state, success, error FROM tool_audit.calls WHERE call_id = %s",
                  (call_id,))
    phases = query("SELECT call_phase FROM tool_audit.tool_calls "
                   "WHERE event_id = %s OR call_event_id = %s ORDER BY id", (call_id, call_id))
    return state, [p for (p,) in phases]


def changes(call_id):
    return query("SELECT operation, row_key, old_values, new_values "
                 "FROM tool_audit.data_changes WHERE call_event_id = %s ORDER BY id", (call_id,))


def balance(account):
    return query("SELECT balance FROM accounts WHERE id = %s", (account,))[0][0]


class Durable(unittest.TestCase):
    def setUp(self):
        self.conn = psycopg.connect(cluster.conninfo, autocommit=True)
        self.audit = AuditLogger(connection=self.conn, context={"tenant_id": "t_dur"})

    def tearDown(self):
        self.audit.close()
        self.conn.close()

    def test_failing_tool_rolled_back_call_kept(self):
        with self.assertRaises(RuntimeError):
            with self.audit.call("debit", {"account": 1, "amount": 30}, durable=True) as call:
                call.connection.execute("UPDATE accounts SET balance = balance - 30 WHERE id = 1")
                raise RuntimeError("payment gateway down")
        self.assertIsNotNone(call.call_id)
        state, phases = call_state(call.call_id)
        self.assertEqual(state, [("ended", False, "payment gateway down")])
        self.assertEqual(phases, ["started", "ended"])
        self.assertEqual(changes(call.call_id), [])         # the change rolled back
        self.assertEqual(balance(1), 100)
        # the tool's transaction, which the started row names, did not commit
        self.assertEqual(query("SELECT caller_committed FROM tool_audit.calls WHERE call_id = %s",
                               (call.call_id,)), [(False,)])
        self.assertEqual(call.logged.id, query(
            "SELECT id FROM tool_audit.tool_calls WHERE call_event_id = %s", (call.call_id,))[0][0])
        # the connection is usable, outside any transaction, tool_audit.call cleared
        self.assertEqual(self.conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)
        self.assertEqual(self.conn.execute("SELECT current_setting('tool_audit.call', true)")
                         .fetchone()[0] or "", "")

    def test_succeeding_tool_changes_carry_the_call(self):
        with self.audit.call("transfer", {"from": 2, "to": 3, "amount": 25},
                             context={"tool_call_id": "toolu_dur_1"}, durable=True) as call:
            db = call.connection
            self.assertEqual(db.execute("SELECT current_setting('tool_audit.call')").fetchone()[0],
                             call.call_id)
            db.execute("UPDATE accounts SET balance = balance - 25 WHERE id = 2")
            db.execute("UPDATE accounts SET balance = balance + 25 WHERE id = 3")
            call.result = {"transferred": 25}
        state, phases = call_state(call.call_id)
        self.assertEqual(state, [("ended", True, None)])
        self.assertEqual(phases, ["started", "ended"])
        self.assertEqual([(op, key, new) for op, key, _, new in changes(call.call_id)],
                         [("UPDATE", {"id": 2}, {"balance": 75}),
                          ("UPDATE", {"id": 3}, {"balance": 125})])
        self.assertEqual((balance(2), balance(3)), (75, 125))
        self.assertEqual(query("SELECT caller_committed, tool_call_id FROM tool_audit.calls "
                               "WHERE call_id = %s", (call.call_id,)),
                         [(True, "toolu_dur_1")])
        # a change after the block is no longer the call's
        self.conn.execute("UPDATE accounts SET balance = 99 WHERE id = 4")
        self.assertEqual(query("SELECT call_event_id FROM tool_audit.data_changes "
                               "WHERE row_key = '{\"id\": 4}'"), [(None,)])

    def test_decorator_with_connection(self):
        other = psycopg.connect(cluster.conninfo)            # not autocommit: BEGIN ... COMMIT
        own = AuditLogger(cluster.conninfo)                  # its own connection for log_call()
        try:
            @own.tool(durable=True, connection=other)
            def close_account(account):
                other.execute("UPDATE accounts SET balance = 0 WHERE id = %s", (account,))
                if account == 6:
                    raise ValueError("account 6 is frozen")
                return {"closed": account}

            self.assertEqual(close_account(5), {"closed": 5})
            with self.assertRaises(ValueError):
                close_account(6)
            # the block committed its own transaction: nothing left open
            self.assertEqual(other.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)
        finally:
            own.close()
            other.close()
        rows = query("SELECT c.arguments, c.success, c.state, "
                     "(SELECT count(*) FROM tool_audit.data_changes d "
                     " WHERE d.call_event_id = c.call_id) "
                     "FROM tool_audit.calls c WHERE c.tool_name = 'close_account' ORDER BY c.id")
        self.assertEqual(rows, [({"account": 5}, True, "ended", 1),
                                ({"account": 6}, False, "ended", 0)])
        self.assertEqual((balance(5), balance(6)), (0, 100))

    def test_inside_the_callers_transaction(self):
        conn = psycopg.connect(cluster.conninfo)
        audit = AuditLogger(connection=conn, transactional=True)
        try:
            conn.execute("UPDATE accounts SET balance = 1 WHERE id = 7")   # BEGIN, the caller's
            with self.assertRaises(KeyError):
                with audit.call("lookup", {"k": 1}, durable=True) as failed:
                    conn.execute("UPDATE accounts SET balance = 2 WHERE id = 8")
                    raise KeyError("k")
            with audit.call("lookup", {"k": 2}, durable=True) as ok:
                conn.execute("UPDATE accounts SET balance = 3 WHERE id = 9")
            # a savepoint each: the caller's transaction is still open
            self.assertEqual(conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS)
            conn.rollback()
        finally:
            conn.close()
        # the caller rolled back: nothing changed, both calls recorded
        self.assertEqual((balance(7), balance(8), balance(9)), (100, 100, 100))
        self.assertEqual(call_state(failed.call_id)[0][0][:2], ("ended", False))
        self.assertEqual(query("SELECT state, success, caller_committed FROM tool_audit.calls "
                               "WHERE call_id = %s", (ok.call_id,)), [("ended", True, False)])
        self.assertEqual(changes(failed.call_id) + changes(ok.call_id), [])

    def test_fail_closed_does_not_run_the_tool(self):
        ran = []
        with self.assertRaises(AuditError) as cm:
            with self.audit.call("debit", {"account": 10}, context={"turn_number": "seven"},
                                 durable=True):
                ran.append(1)
        self.assertEqual(cm.exception.__cause__.sqlstate, "22P02")
        self.assertEqual(ran, [])
        self.assertEqual(self.conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)

    def test_an_end_that_fails(self):
        # the tool ends its own call first: the block's end_call() is then a
        # second end (23505). Fail-closed: AuditError, the tool's change
        # rolled back; fail-open: reported, the change committed
        def ended_twice(audit, account):
            with audit.call("debit", {"account": account}, durable=True) as call:
                self.conn.execute("UPDATE accounts SET balance = 1 WHERE id = %s", (account,))
                self.conn.execute("SELECT tool_audit.end_call(%s, '{}')", (call.call_id,))
            return call

        with self.assertRaises(AuditError) as cm:
            ended_twice(self.audit, 16)
        self.assertEqual(cm.exception.__cause__.sqlstate, "23505")
        self.assertEqual(balance(16), 100)
        self.assertEqual(self.conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)

        errors = []
        audit = AuditLogger(connection=self.conn, fail_open=True,
                            on_error=lambda err, rec: errors.append(err.sqlstate))
        call = ended_twice(audit, 17)
        self.assertEqual((audit.unlogged, errors, call.logged), (1, ["23505"], None))
        self.assertEqual(balance(17), 1)
        self.assertEqual(len(changes(call.call_id)), 1)

    def test_fail_open_runs_the_tool_unlinked(self):
        errors = []
        audit = AuditLogger(connection=self.conn, fail_open=True,
                            on_error=lambda err, rec: errors.append(err))
        with audit.call("debit", {"account": 11}, context={"turn_number": "seven"},
                        durable=True) as call:
            self.conn.execute("UPDATE accounts SET balance = 11 WHERE id = 11")
        self.assertIsNone(call.call_id)
        self.assertEqual((audit.unlogged, len(errors)), (1, 1))
        self.assertEqual(balance(11), 11)                    # committed all the same
        self.assertEqual(query("SELECT call_event_id FROM tool_audit.data_changes "
                               "WHERE row_key = '{\"id\": 11}'"), [(None,)])

    def test_durable_needs_the_tools_connection(self):
        own = AuditLogger(cluster.conninfo)
        try:
            with self.assertRaises(ValueError):
                own.call("x", {}, durable=True)
        finally:
            own.close()


class AsyncDurable(unittest.TestCase):
    def test_async_begin_end(self):
        async def main():
            conn = await psycopg.AsyncConnection.connect(cluster.conninfo, autocommit=True)
            audit = AsyncAuditLogger(connection=conn, context={"tenant_id": "t_dur"})

            @audit.tool(durable=True)
            async def credit(account, amount):
                await conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                                   (amount, account))
                if amount < 0:
                    raise ValueError("negative credit")
                return {"credited": amount}

            self.assertEqual(await credit(12, 5), {"credited": 5})
            with self.assertRaises(ValueError):
                await credit(13, -5)
            async with audit.call("credit", {"account": 14}, durable=True) as call:
                await call.connection.execute("UPDATE accounts SET balance = 1 WHERE id = 14")
            await audit.close()
            await conn.close()
            return call.call_id

        last = asyncio.run(main())
        rows = query("SELECT c.arguments->>'account', c.success, c.state, "
                     "(SELECT count(*) FROM tool_audit.data_changes d "
                     " WHERE d.call_event_id = c.call_id) "
                     "FROM tool_audit.calls c WHERE c.tool_name = 'credit' ORDER BY c.id")
        self.assertEqual(rows, [("12", True, "ended", 1), ("13", False, "ended", 0),
                                ("14", True, "ended", 1)])
        self.assertEqual((balance(12), balance(13), balance(14)), (105, 100, 1))
        self.assertEqual(call_state(last)[1], ["started", "ended"])


class DurableExample(unittest.TestCase):
    def test_durable_agent_loop_example(self):
        out = subprocess.run([sys.executable,
                              os.path.join(HERE, "..", "examples", "durable_agent_loop.py")],
                             env={**os.environ, "TOOL_AUDIT_DSN": cluster.conninfo},
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("answer:", out.stdout)
        rows = query("SELECT c.tool_call_id, c.state, c.success, count(d.id) "
                     "FROM tool_audit.calls c LEFT JOIN tool_audit.data_changes d "
                     "ON d.call_event_id = c.call_id "
                     "WHERE c.conversation_id = 'example_conv_durable' "
                     "GROUP BY 1, 2, 3, c.id ORDER BY c.id")
        self.assertEqual(rows, [("call_d1", "ended", False, 0), ("call_d2", "ended", True, 1)])
        self.assertEqual(query("SELECT id, status FROM example_orders ORDER BY id"),
                         [("o_1", "cancelled"), ("o_2", "delivered")])


if __name__ == "__main__":
    unittest.main()

"""tool_audit_client against a real cluster (tests/cluster.py starts it)."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import unittest

import psycopg

from tool_audit_client import (AsyncAuditLogger, AuditError, AuditLogger, BatchLogger,
                               QueueFull, verify_export)

from cluster import Cluster

HERE = os.path.dirname(os.path.abspath(__file__))
cluster = None


def setUpModule():
    global cluster
    cluster = Cluster()


def tearDownModule():
    if cluster is not None:
        cluster.destroy()


def row(event_id):
    """The stored row of an event_id, read on a connection of its own."""
    with psycopg.connect(cluster.conninfo) as conn:
        cur = conn.execute(
            "SELECT tool_name, arguments, result_summary, success, error, duration_ms, "
            "conversation_id, turn_number FROM tool_audit.tool_calls WHERE event_id = %s",
            (event_id,))
        return cur.fetchone()


def count(where="true", params=()):
    with psycopg.connect(cluster.conninfo) as conn:
        return conn.execute(f"SELECT count(*) FROM tool_audit.tool_calls WHERE {where}",
                            params).fetchone()[0]


class Logging(unittest.TestCase):
    def setUp(self):
        self.audit = AuditLogger(cluster.conninfo, context={"tenant_id": "t_py",
                                                            "conversation_id": "conv_py"})

    def tearDown(self):
        self.audit.close()

    def test_dict_and_array_as_they_are(self):
        logged = self.audit.log_call("search_orders", {"customer": "c_1", "tags": ["a", "b"]},
                                     [{"order_id": 1}, {"order_id": 2}], 12.5)
        self.assertIsInstance(logged.id, int)
        tool, args, summary, success, *_ = row(logged.event_id)
        self.assertEqual(args, {"customer": "c_1", "tags": ["a", "b"]})
        self.assertTrue(success)
        self.assertEqual(summary.get("success"), True)

    def test_arguments_not_an_object_are_wrapped(self):
        logged = self.audit.log_call("sum", [1, 2, 3], 6)
        self.assertEqual(row(logged.event_id)[1], {"value": [1, 2, 3]})

    def test_decorator_logs_bound_arguments_duration_and_result(self):
        @self.audit.tool(context={"turn_number": 3})
        def get_order(order_id, verbose=False):
            time.sleep(0.01)
            return {"order_id": order_id, "status": "shipped"}

        self.assertEqual(get_order("o_9"), {"order_id": "o_9", "status": "shipped"})
        with psycopg.connect(cluster.conninfo) as conn:
            args, summary, duration, turn = conn.execute(
                "SELECT arguments, result_summary, duration_ms, turn_number FROM tool_audit.tool_calls "
                "WHERE tool_name = 'get_order' ORDER BY id DESC LIMIT 1").fetchone()
        self.assertEqual(args, {"order_id": "o_9", "verbose": False})
        self.assertEqual(summary.get("status"), "shipped")
        self.assertGreaterEqual(duration, 10.0)
        self.assertEqual(turn, 3)

    def test_exception_in_tool_logged_as_failure_and_reraised(self):
        @self.audit.tool()
        def refund(order_id):
            raise ValueError("order o_7 is locked")

        with self.assertRaises(ValueError):
            refund("o_7")
        with psycopg.connect(cluster.conninfo) as conn:
            success, error, summary = conn.execute(
                "SELECT success, error, result_summary FROM tool_audit.tool_calls "
                "WHERE tool_name = 'refund' ORDER BY id DESC LIMIT 1").fetchone()
        self.assertFalse(success)
        self.assertIn("locked", error)
        self.assertEqual(summary.get("error_type"), "ValueError")

    def test_context_manager(self):
        with self.audit.call("lookup", {"q": "x"}) as call:
            call.result = {"count": 2}
        self.assertEqual(row(call.logged.event_id)[2].get("count"), 2)
        with self.assertRaises(KeyError):
            with self.audit.call("lookup", {"q": "y"}) as failing:
                raise KeyError("y")
        self.assertFalse(row(failing.logged.event_id)[3])

    def test_own_connection_commits_each_call(self):
        # a second logger, closed right after logging: the row was committed
        other = AuditLogger(cluster.conninfo)
        logged = other.log_call("ping", {}, {"ok": True})
        other.close()
        self.assertIsNotNone(row(logged.event_id))

    def test_transaction_mode_is_explicit(self):
        conn = psycopg.connect(cluster.conninfo)     # not autocommit
        with self.assertRaises(ValueError):
            AuditLogger(connection=conn)
        tx = AuditLogger(connection=conn, transactional=True)
        rolled_back = tx.log_call("in_tx", {}, {})
        conn.rollback()
        committed = tx.log_call("in_tx", {}, {})
        conn.commit()
        conn.close()
        self.assertIsNone(row(rolled_back.event_id))
        self.assertIsNotNone(row(committed.event_id))

    def test_fail_closed_raises(self):
        with self.assertRaises(AuditError) as cm:
            self.audit.log_call("t", {}, {}, context={"turn_number": "seven"})
        self.assertEqual(cm.exception.__cause__.sqlstate, "22P02")

        @self.audit.tool(context={"turn_number": "seven"})
        def tool_ok():
            return 1
        with self.assertRaises(AuditError):
            tool_ok()

    def test_fail_open_reports_and_carries_on(self):
        seen = []
        audit = AuditLogger(cluster.conninfo, fail_open=True,
                            on_error=lambda exc, rec: seen.append((exc, rec)))
        try:
            @audit.tool(context={"turn_number": "seven"})
            def tool_ok():
                return 41 + 1
            self.assertEqual(tool_ok(), 42)
        finally:
            audit.close()
        self.assertEqual(audit.unlogged, 1)
        self.assertEqual(seen[0][0].sqlstate, "22P02")
        self.assertEqual(seen[0][1].tool_name, "tool_ok")

    def test_retry_returns_the_stored_row(self):
        # the same call logged again (same tool_call_id): the row stored first
        args, ctx = {"order_id": "o_r1"}, {"tool_call_id": "toolu_py_retry_1", "turn_number": 4}
        first = self.audit.log_call("get_order", args, {"status": "shipped"}, 5.0, ctx)
        again = self.audit.log_call("get_order", args, {"status": "shipped"}, 5.0, ctx)
        self.assertFalse(first.already_stored)
        self.assertTrue(again.already_stored)
        self.assertEqual((again.id, again.event_id), (first.id, first.event_id))
        self.assertEqual(count("tool_call_id = %s", ("toolu_py_retry_1",)), 1)
        # a different call under that id is refused, not stored, not returned
        with self.assertRaises(AuditError) as cm:
            self.audit.log_call("get_order", {"order_id": "o_other"}, {}, 1.0, ctx)
        self.assertIn("already recorded for another call", str(cm.exception))
        self.assertEqual(count("tool_call_id = %s", ("toolu_py_retry_1",)), 1)
        # without a tool_call_id, the same record sent twice (the logger's own
        # retry after a lost connection) also gets the stored row back
        from tool_audit_client._record import CallRecord
        rec = CallRecord("ping", {}, {}, 1.0, {"tenant_id": "t_py"})
        a, b = self.audit._log(rec), self.audit._log(rec)
        self.assertEqual((a.id, a.already_stored, b.id, b.already_stored), (a.id, False, a.id, True))

    def test_concurrent_retry_waits_for_the_first(self):
        # the first attempt still in flight (its transaction open): the retry
        # waits, then returns the first's row; if the first rolls back, the
        # retry stores its own
        for outcome in ("commit", "rollback"):
            call_id = f"toolu_py_concurrent_{outcome}"
            ctx = {"tool_call_id": call_id}
            conn = psycopg.connect(cluster.conninfo)
            first_audit = AuditLogger(connection=conn, transactional=True,
                                      context={"tenant_id": "t_py", "conversation_id": "conv_py"})
            first = first_audit.log_call("lookup", {"q": 1}, {"n": 1}, 2.0, ctx)
            got = {}
            t = threading.Thread(target=lambda: got.update(
                r=self.audit.log_call("lookup", {"q": 1}, {"n": 1}, 2.0, ctx)))
            t.start()
            time.sleep(0.5)
            self.assertTrue(t.is_alive(), "the retry waits for the first attempt")
            getattr(conn, outcome)()
            t.join(30)
            conn.close()
            retry = got["r"]
            self.assertEqual(count("tool_call_id = %s", (call_id,)), 1)
            if outcome == "commit":
                self.assertEqual((retry.id, retry.already_stored), (first.id, True))
            else:
                self.assertNotEqual(retry.id, first.id)
                self.assertFalse(retry.already_stored)

    def test_started_at_is_the_client_time(self):
        with self.audit.call("timed_tool", {"a": 1}, {"tool_call_id": "toolu_py_started"}) as c:
            c.result = {"ok": True}
        with psycopg.connect(cluster.conninfo) as conn:
            started, recorded = conn.execute(
                "SELECT started_at, recorded_at FROM tool_audit.tool_calls WHERE id = %s",
                (c.logged.id,)).fetchone()
        self.assertIsNotNone(started)
        self.assertLessEqual(started, recorded)
        # a retry of the block's record (same started_at) is the same call
        self.assertEqual(count("tool_call_id = %s", ("toolu_py_started",)), 1)

    def test_log_event(self):
        logged = self.audit.log_event("prompt.update", "admin_1",
                                      {"before": {"v": 1}, "after": {"v": 2}},
                                      {"reason": "tone"})
        self.assertIsInstance(logged.id, int)


class Async(unittest.TestCase):
    def test_async_logger(self):
        async def main():
            audit = await AsyncAuditLogger.connect(cluster.conninfo,
                                                   context={"conversation_id": "conv_async"})

            @audit.tool()
            async def fetch_page(url, n):
                await asyncio.sleep(0.001)
                if n == 3:
                    raise RuntimeError("timeout")
                return [url, n]

            results = await asyncio.gather(*(fetch_page("https://x.test", n) for n in range(10)),
                                           return_exceptions=True)
            async with audit.call("summarize", {"pages": 9}) as call:
                call.result = {"words": 120}
            await audit.close()
            return results, call

        results, call = asyncio.run(main())

        # a coroutine tool under the batch logger: timed across its await, queued
        batch = BatchLogger(cluster.conninfo, on_full="raise",
                            context={"conversation_id": "conv_async_batch"})

        @batch.tool()
        async def slow(n):
            await asyncio.sleep(0.01)
            return [n]

        self.assertEqual(asyncio.run(slow(5)), [5])
        batch.close()
        with psycopg.connect(cluster.conninfo) as conn:
            args, duration = conn.execute(
                "SELECT arguments, duration_ms FROM tool_audit.tool_calls "
                "WHERE conversation_id = 'conv_async_batch'").fetchone()
        self.assertEqual(args, {"n": 5})
        self.assertGreaterEqual(duration, 10.0)
        self.assertIsInstance(results[3], RuntimeError)
        self.assertEqual(results[4], ["https://x.test", 4])
        self.assertEqual(count("conversation_id = 'conv_async' AND tool_name = 'fetch_page'"), 10)
        self.assertEqual(count("conversation_id = 'conv_async' AND NOT success"), 1)
        self.assertIsNotNone(row(call.logged.event_id))


class Batching(unittest.TestCase):
    def test_batch_writes_everything_and_isolates_a_bad_call(self):
        failures = []
        with self.assertRaises(AuditError):        # fail-closed: close() says a call failed
            with BatchLogger(cluster.conninfo, batch_size=50, context={"conversation_id": "conv_b1"},
                             on_failure=failures.extend) as batch:
                futures = [batch.submit("bulk", {"n": n}, [n, n + 1], 0.5,
                                        {"turn_number": "bad" if n == 137 else n})
                           for n in range(500)]
        self.assertEqual(batch.stats().acknowledged, 499)
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0].record.context["turn_number"], "bad")
        self.assertEqual(failures[0].error.sqlstate, "22P02")
        self.assertIsNotNone(futures[137].exception())
        self.assertEqual(futures[0].result().event_id, futures[0].result().event_id)
        self.assertEqual(count("conversation_id = 'conv_b1'"), 499)

    def test_full_queue_raises_when_asked(self):
        cluster.kill()
        try:
            batch = BatchLogger(cluster.conninfo, max_queue=5, batch_size=1, on_full="raise",
                                retry_for=0.5, fail_open=True)
            accepted, refused = 0, 0
            for n in range(20):
                try:
                    batch.submit("q", {"n": n})
                    accepted += 1
                except QueueFull:
                    refused += 1
            st = batch.close()
        finally:
            cluster.start()
        self.assertGreater(refused, 0)
        self.assertEqual(st.refused, refused)
        self.assertEqual(st.submitted, accepted)
        # accepted calls were all reported: none left pending, none silently gone
        self.assertEqual(st.failed + st.acknowledged, accepted)
        self.assertEqual(st.pending, 0)

    def test_kill_mid_batch_loses_nothing_acknowledged(self):
        conv = "conv_kill"
        failed = []
        batch = BatchLogger(cluster.conninfo, max_queue=300, batch_size=25,
                            block_timeout=0.5, retry_for=1.5, fail_open=True,
                            on_failure=failed.extend, context={"conversation_id": conv})
        futures, refused = [], 0
        killed = threading.Event()

        def killer():
            while batch.stats().acknowledged < 200:
                time.sleep(0.001)
            cluster.kill()              # pg_ctl stop -m immediate, batches in flight
            killed.set()

        k = threading.Thread(target=killer)
        k.start()
        try:
            for n in range(3000):
                try:
                    futures.append(batch.submit("bulk", {"n": n}, {"n": n}))
                except QueueFull:
                    refused += 1     # backpressure: the caller is told, keeps the call
                if n % 50 == 0:
                    time.sleep(0.002)
            k.join()
            st = batch.close()
        finally:
            k.join()
            cluster.start()
        self.assertTrue(killed.is_set())
        self.assertEqual([f for f in futures if not f.done()], [], "every accepted call settled")
        acked = [f.result().event_id for f in futures if f.exception() is None]
        not_acked = [f for f in futures if f.exception() is not None]
        self.assertEqual(len(acked), st.acknowledged)
        self.assertGreater(st.acknowledged, 199)
        self.assertGreater(st.failed, 0, "the kill left calls unwritten, and they are reported")
        self.assertEqual(len(not_acked), st.failed)
        self.assertEqual(len(failed), st.failed)
        self.assertEqual(st.acknowledged + st.failed, st.submitted)
        self.assertEqual(st.submitted + refused, 3000)
        # every acknowledged call survived the crash
        with psycopg.connect(cluster.conninfo) as conn:
            stored = {r[0] for r in conn.execute(
                "SELECT event_id::text FROM tool_audit.tool_calls WHERE conversation_id = %s",
                (conv,))}
        self.assertEqual(set(acked) - stored, set())
        # and nothing is stored that the client neither acknowledged nor reported
        reported = {f.record.event_id for f in failed}
        self.assertEqual(stored - set(acked) - reported, set())

    def test_restart_within_retry_writes_everything_once(self):
        conv = "conv_restart"
        batch = BatchLogger(cluster.conninfo, batch_size=20, retry_for=30,
                            context={"conversation_id": conv})
        for n in range(100):
            batch.submit("a", {"n": n})
        batch.flush(10)
        cluster.kill()
        futures = [batch.submit("b", {"n": n}) for n in range(100)]
        time.sleep(0.5)
        cluster.start()
        st = batch.close(60)
        self.assertEqual((st.acknowledged, st.failed), (200, 0))
        self.assertTrue(all(f.done() and f.exception() is None for f in futures))
        self.assertEqual(count("conversation_id = %s", (conv,)), 200)
        self.assertEqual(count("conversation_id = %s AND tool_name = 'b'", (conv,)), 100)


    def test_exit_without_close_writes_the_queue(self):
        script = ("import sys\nfrom tool_audit_client import BatchLogger\n"
                  "b = BatchLogger(sys.argv[1], batch_size=10, "
                  "context={'conversation_id': 'conv_exit'})\n"
                  "for n in range(50): b.submit('at_exit', {'n': n})\n")
        out = subprocess.run([sys.executable, "-c", script, cluster.conninfo],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(count("conversation_id = 'conv_exit'"), 50)


class Export(unittest.TestCase):
    def test_export_self_check(self):
        audit = AuditLogger(cluster.conninfo)
        for n in range(5):
            audit.log_call("exported", {"n": n}, {"ok": True}, context={"tenant_id": "t_export"})
        audit.log_event("prompt.update", "admin_1", {"after": "v2"})
        audit.close()
        text = cluster.psql("SELECT doc FROM tool_audit.export_jsonl('-infinity', 'infinity') doc")
        lines = text.splitlines()
        self.assertTrue(all(isinstance(json.loads(l)["chain_id"], str) for l in lines))
        report = verify_export(lines)
        self.assertTrue(report["ok"], report["problems"])
        self.assertEqual(report["links_checked"], len(lines))
        self.assertGreater(len(lines), 5)
        # a changed link is found
        doc = json.loads(lines[-1])
        doc["chain_hash"] = ("0" if doc["chain_hash"][0] != "0" else "1") + doc["chain_hash"][1:]
        bad = verify_export(lines[:-1] + [json.dumps(doc)])
        self.assertFalse(bad["ok"])


class Example(unittest.TestCase):
    def test_agent_loop_example(self):
        out = subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "agent_loop.py")],
                             env={**os.environ, "TOOL_AUDIT_DSN": cluster.conninfo},
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("answer:", out.stdout)
        self.assertEqual(count("conversation_id = 'example_conv_1'"), 3)
        self.assertEqual(count("conversation_id = 'example_conv_1' AND NOT success"), 1)


if __name__ == "__main__":
    unittest.main()

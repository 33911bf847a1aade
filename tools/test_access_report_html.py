#!/usr/bin/python3
"""tools/access_report_html.py against a real cluster, its page rendered in
headless Chromium (Debian: chromium, chromium-driver, python3-selenium).

Starts a throwaway cluster (clients/python/tests/cluster.py) with a signing
key, writes accesses to one customer over three weeks in two tenants (some
break-the-glass, some failed, one with markup in its purpose), and checks, in
the rendered page, as a reader bound to one tenant: the table's rows are
access_report()'s accesses (count and call ids, in order), break-the-glass
rows are highlighted (computed background) and tagged, the figures and the
chart add up to the report's, the verdict is shown with the digest's
fingerprint, the page's re-check commands run and agree, nothing is loaded
from anywhere and no markup from the data became an element.  Then a
superuser's edit: the page says NOT VERIFIED and names the row, and the digest
saved before it no longer matches.  Prints TAP; exits 1 on any failure.

    TA_SCREENSHOT=doc/access-report.png: also keep the screenshot there.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python", "tests"))
sys.path.insert(0, HERE)

import psycopg  # noqa: E402
from cluster import Cluster  # noqa: E402  (the Python client tests' throwaway cluster)
import access_report_html  # noqa: E402

PROGRAM = os.path.join(HERE, "access_report_html.py")
CHROMIUM = os.environ.get("TA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TA_CHROMEDRIVER", "/usr/bin/chromedriver")
SUBJECT = "cus_42"

n_tests = 0
n_failed = 0


def ok(cond, name, diag=None):
    global n_tests, n_failed
    n_tests += 1
    if not cond:
        n_failed += 1
    print(f"{'ok' if cond else 'not ok'} {n_tests} - html report: {name}", flush=True)
    if not cond and diag:
        print("# " + str(diag).replace("\n", "\n# "), flush=True)
    return cond


def fixture(cluster):
    """Accesses to cus_42 (and others) every few hours over three weeks, in
    time order, with their times: restored rows (tool_audit.restoring), hashed
    and chained by the insert trigger like any other."""
    cluster.psql(r"""
        SET tool_audit.restoring = on;
        INSERT INTO tool_audit.tool_calls
            (id, event_id, recorded_at, recorded_by, tenant_id, conversation_id, turn_number, user_id, user_role,
             model, tool_name, tool_call_id, purpose, subject_id, arguments, result_summary, success, error,
             duration_ms, session_metadata)
        SELECT g, gen_random_uuid(), timestamptz '2025-03-01 08:00+00' + g * interval '5 hours 13 minutes',
               'app', (ARRAY['acme', 'acme', 'globex'])[1 + g % 3], 'conv_' || g / 4, g % 4, 'agent_' || g % 5,
               CASE WHEN g % 5 = 0 THEN 'supervisor' ELSE 'support' END, 'gpt-4.1',
               (ARRAY['get_account', 'list_orders', 'update_address', 'refund_order'])[1 + g % 4], 'call_' || g,
               CASE WHEN g = 40 THEN '<img src=x onerror="document.title=1">fraud check'
                    WHEN g % 11 = 0 THEN 'emergency' ELSE 'support ticket ' || g % 7 END,
               CASE WHEN g % 6 = 5 THEN 'cus_7' ELSE 'cus_42' END,
               jsonb_build_object('account', 'A-42', 'fields', jsonb_build_array('address', 'orders')),
               jsonb_build_object('success', g % 9 <> 0), g % 9 <> 0, CASE WHEN g % 9 = 0 THEN 'timeout' END,
               10 + g % 17,
               jsonb_build_object('subject_type', 'customer') ||
                   CASE WHEN g % 13 = 0 THEN '{"break_glass": true}'::jsonb ELSE '{}' END
          FROM generate_series(1, 100) g;
        RESET tool_audit.restoring;
        SELECT setval('tool_audit.tool_calls_id_seq', 100);
        CREATE ROLE auditor_acme LOGIN IN ROLE tool_audit_reader;
        SELECT tool_audit.bind_tenant('auditor_acme', 'acme');
        CREATE ROLE auditor_verify LOGIN IN ROLE tool_audit_verifier;
        CREATE ROLE auditor_all LOGIN IN ROLE tool_audit_reader;
    """)


def conninfo(cluster, user):
    return f"host={cluster.dir} port={cluster.port} user={user} dbname=postgres"


def report_as(cluster, user, subject=SUBJECT):
    with psycopg.connect(conninfo(cluster, user), autocommit=True) as c:
        return c.execute("SELECT tool_audit.access_report(%s, '-infinity', 'infinity')", (subject,)).fetchone()[0]


def run_program(*args):
    return subprocess.run([sys.executable, PROGRAM, *args], capture_output=True, text=True)


def browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1600", f"--user-data-dir={profile}", "--no-first-run",
              "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def main():
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            print(f"1..1\nnot ok 1 - html report: {path} missing: install the Debian package {what} "
                  "(scripts/test.sh does, run as root)")
            return 1
    from selenium.webdriver.common.by import By

    cluster = Cluster()
    work = tempfile.mkdtemp(prefix="ta_html_")
    driver = None
    try:
        # a signing key, so that the digest is signed
        key = os.path.join(cluster.dir, "signing_key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True,
                       capture_output=True)
        os.chmod(key, 0o600)
        with open(os.path.join(cluster.data, "postgresql.conf"), "a") as f:
            f.write(f"tool_audit.signing_key_file = '{key}'\n")
        cluster.psql("SELECT pg_reload_conf()")
        fixture(cluster)

        reader, verifier = conninfo(cluster, "auditor_acme"), conninfo(cluster, "auditor_verify")
        page = os.path.join(work, "report.html")
        r = run_program("--dsn", reader, "--verify-dsn", verifier, "--subject", SUBJECT, "-o", page)
        ok(r.returncode == 0 and os.path.getsize(page) > 0,
           "the program writes the page as a tenant-bound reader, the digest checked as the verifier",
           r.stderr)
        expected = report_as(cluster, "auditor_acme")
        admin_view = report_as(cluster, "postgres")
        ok(0 < expected["total_accesses"] < admin_view["total_accesses"]
           and {a["tenant_id"] for a in expected["accesses"]} == {"acme"},
           f"the reader's report is acme's only ({expected['total_accesses']} of "
           f"{admin_view['total_accesses']} accesses)")
        ok(expected["break_glass_accesses"] > 0, f"with break-the-glass accesses ({expected['break_glass_accesses']})")

        driver = browser(os.path.join(work, "profile"))
        driver.get("file://" + page)
        rows = driver.find_elements(By.CSS_SELECTOR, "#accesses tr.access")
        ok(len(rows) == expected["total_accesses"],
           f"the rendered table has access_report()'s {expected['total_accesses']} rows ({len(rows)})")
        ok([r.get_attribute("data-call-id") for r in rows] == [str(a["call_id"]) for a in expected["accesses"]],
           "the same accesses, in the report's order")
        ok(all(r.is_displayed() for r in rows), "every row is displayed")

        def figure(i):
            return driver.find_element(By.ID, i).text

        ok((figure("total-accesses"), figure("unique-users"), figure("break-glass-accesses")) ==
           (str(expected["total_accesses"]), str(expected["unique_users"]), str(expected["break_glass_accesses"])),
           "the figures shown are the report's (accesses, users, break-the-glass)")

        glass = [r for r in rows if r.get_attribute("data-break-glass") == "true"]
        plain = [r for r in rows if r.get_attribute("data-break-glass") == "false"]
        ok([r.get_attribute("data-call-id") for r in glass] ==
           [str(a["call_id"]) for a in expected["accesses"] if a["break_glass"]],
           f"the break-the-glass rows are the report's ({len(glass)})")

        def bg(row):
            return row.find_element(By.CSS_SELECTOR, "td:nth-child(2)").value_of_css_property("background-color")

        glass_colours = {bg(r) for r in glass}
        plain_colours = {bg(r) for r in plain}
        ok(len(glass_colours) == 1 and not glass_colours & plain_colours,
           f"break-the-glass rows are highlighted: background {glass_colours} against {plain_colours}")
        tags = [r.find_elements(By.CSS_SELECTOR, ".tag") for r in rows]
        ok(all(t and t[0].is_displayed() and "BREAK-THE-GLASS" in t[0].text for t, r in zip(tags, rows)
               if r in glass) and not any(t for t, r in zip(tags, rows) if r in plain),
           "and tagged BREAK-THE-GLASS, the others not")

        verdict = driver.find_element(By.ID, "verdict")
        ok(verdict.is_displayed() and verdict.get_attribute("data-verdict") == "ok"
           and "Integrity: VERIFIED" in verdict.text,
           "the verdict is shown: VERIFIED", verdict.text)
        ok(driver.find_element(By.ID, "digest-verdict").text == "matches" and "signed, key" in verdict.text,
           "the digest matches and is signed", verdict.text)
        digest_text = driver.find_element(By.ID, "digest").text
        digest = json.loads(digest_text)
        ok(digest.get("format") == "tool_audit digest 1" and digest.get("signature"),
           "the digest checked is in the page")

        bars = driver.find_elements(By.CSS_SELECTOR, "#chart rect.bar")
        counted = sum(int(b.get_attribute("data-count")) for b in bars)
        glass_bars = sum(int(b.get_attribute("data-count")) for b in bars
                         if "break-glass" in b.get_attribute("class"))
        chart = driver.find_element(By.ID, "chart")
        ok(counted == expected["total_accesses"] and glass_bars == expected["break_glass_accesses"]
           and chart.size["width"] > 400 and chart.size["height"] > 100,
           f"the chart's bars add up to the report ({counted} accesses, {glass_bars} break-the-glass, "
           f"{len(bars)} bars, {chart.size['width']}x{chart.size['height']} px)")

        # the data's markup stayed text; nothing is loaded from anywhere
        purpose_cells = [r.find_element(By.CSS_SELECTOR, "td:nth-child(4)").text for r in rows]
        ok(any("<img src=x" in t for t in purpose_cells) and not driver.find_elements(By.TAG_NAME, "img")
           and not driver.find_elements(By.TAG_NAME, "script") and driver.title.startswith("Access report"),
           "markup in the data is shown as text, not made an element")
        linked = driver.execute_script(
            "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))")
        resources = driver.execute_script("return performance.getEntriesByType('resource').length")
        ok(not linked and resources == 0, f"no external asset: {linked}, {resources} resources loaded")

        shot = os.path.join(work, "report.png")
        driver.set_window_size(1100, 1450)
        driver.save_screenshot(shot)
        ok(os.path.getsize(shot) > 10000, f"a screenshot ({os.path.getsize(shot)} bytes)")
        if os.environ.get("TA_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["TA_SCREENSHOT"])

        # the page's re-check commands, run as printed (host and port from the environment)
        pre = [p.text for p in driver.find_elements(By.CSS_SELECTOR, "ol pre")]
        digest_file = os.path.join(work, "digest.json")
        with open(digest_file, "w") as f:
            f.write(digest_text)
        env = dict(os.environ, PGHOST=cluster.dir, PGPORT=str(cluster.port),
                   PATH=cluster.bindir + os.pathsep + os.environ.get("PATH", ""))

        def run_shown(cmd):
            return subprocess.run(["bash", "-c", cmd.replace("user=VERIFIER", "user=auditor_verify")],
                                  cwd=work, env=env, capture_output=True, text=True)

        check = run_shown(next(p for p in pre if "verify_digest" in p))
        ok(check.returncode == 0 and "(0 rows)" in check.stdout,
           "the page's verify_digest command runs: no problem", check.stdout + check.stderr)
        fp = run_shown(next(p for p in pre if "canonical_json" in p))
        ok(fp.stdout.strip() == driver.find_element(By.ID, "digest-sha256").text,
           "the page's fingerprint command gives the fingerprint shown", fp.stdout + fp.stderr)

        # a reader bound to a tenant checks its tenant's digest itself (1.5)
        alone = os.path.join(work, "alone.html")
        r = run_program("--dsn", reader, "--subject", SUBJECT, "-o", alone)
        driver.get("file://" + alone)
        v = driver.find_element(By.ID, "verdict")
        ok(r.returncode == 0 and v.get_attribute("data-verdict") == "ok" and "VERIFIED" in v.text,
           "the bound reader alone: its tenant's digest taken and checked", v.text)

        # an unbound reader may not check a digest: the page says so
        partial = os.path.join(work, "partial.html")
        r = run_program("--dsn", conninfo(cluster, "auditor_all"), "--subject", SUBJECT, "-o", partial)
        driver.get("file://" + partial)
        v = driver.find_element(By.ID, "verdict")
        ok(r.returncode == 0 and v.get_attribute("data-verdict") == "partial"
           and "NO DIGEST CHECKED" in v.text and "--verify-dsn" in v.text,
           "without a role that may check a digest, the verdict says no digest was checked", v.text)

        # a superuser's edit of one of the reader's rows (triggers off through
        # the catalog, on a server restarted without the preload hooks)
        victim = expected["accesses"][2]["call_id"]
        with open(os.path.join(cluster.data, "postgresql.conf"), "a") as f:
            f.write("shared_preload_libraries = ''\n")
        cluster.pg_ctl("-w", "-m", "fast", "restart")
        cluster.psql(f"""
            UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;
            UPDATE tool_audit.tool_calls SET purpose = 'routine' WHERE id = {victim};
            UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'tool_audit.tool_calls'::regclass;""")
        tampered = os.path.join(work, "tampered.html")
        r = run_program("--dsn", reader, "--verify-dsn", verifier, "--subject", SUBJECT,
                        "--digest", digest_file, "-o", tampered)
        driver.get("file://" + tampered)
        v = driver.find_element(By.ID, "verdict")
        problems = driver.find_elements(By.CSS_SELECTOR, "#problems tr")
        ok(r.returncode == 0 and v.get_attribute("data-verdict") == "bad" and "NOT VERIFIED" in v.text
           and any(re.search(rf"\brow\b.*\b{victim}\b.*row altered", p.text) for p in problems),
           f"after the edit the page says NOT VERIFIED and names row {victim}", v.text)
        ok(driver.find_element(By.ID, "digest-verdict").text == "DOES NOT MATCH",
           "and the digest saved before the edit no longer matches", v.text)
        after = report_as(cluster, "auditor_acme")
        ok(len(driver.find_elements(By.CSS_SELECTOR, "#accesses tr.access")) == after["total_accesses"]
           and after["integrity_verified"] is False, "its table is still the report's")

        # the program refuses a report that does not add up
        bad = dict(expected, total_accesses=expected["total_accesses"] + 1)
        ok(access_report_html.check_consistent(bad) and not access_report_html.check_consistent(expected),
           "a report whose accesses do not add up is refused")
        r = run_program("--dsn", reader, "--subject", SUBJECT, "--from", "2025-03-10", "--to", "2025-03-01")
        ok(r.returncode == 1 and "22023" in r.stderr and "start_time is after end_time" in r.stderr,
           "a database error is reported with its SQLSTATE", r.stderr)
    finally:
        if driver is not None:
            driver.quit()
        cluster.destroy()
        if not os.environ.get("TA_KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept {work}")
    print(f"1..{n_tests}")
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())

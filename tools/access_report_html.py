#!/usr/bin/python3
"""access_report_html.py: tool_audit's access report for one data subject and
period as one self-contained HTML file an auditor can hand over.

    tools/access_report_html.py --dsn "dbname=app user=auditor" --subject P-1001 \\
        --from 2025-03-01 --to 2025-04-01 [--digest digests/2025-04-01.json] \\
        [--verify-dsn "dbname=app user=verifier"] -o P-1001-2025-03.html

What it shows, all of it from the SQL API (tool_audit.access_report(),
tool_audit.verify_digest(), tool_audit.digest(), tool_audit.bound_tenants()):
the accesses as a table (who, when, why, which tool, what was accessed as far
as the report says), break-the-glass accesses highlighted, a chart of the
accesses over time (inline SVG), and the integrity verdict: the report's own
row checks and a digest's check, with the digest itself and the commands that
re-check it.  The figures are the report's: the program refuses to write a
page whose table does not add up to them.

The report runs as the --dsn role: a tool_audit_reader (or admin), bound to a
tenant or not; row-level security decides what it sees.  The digest is checked
as the --verify-dsn role (default: the same), which needs verify_digest():
tool_audit_verifier or tool_audit_admin, or (1.5) a reader bound to tenants, whose
digest and check cover its tenants' chains only.  With --digest FILE the digest is one
kept outside the database (the check that matters against a superuser:
doc/tamper-evidence.md); without it a digest is taken now, checked, and
embedded in the page, so that a later check tells whether anything it covers
changed after the page was made.  When no role may check a digest the page
says so, and the verdict covers the report's rows only.

Nothing but Python 3 and psycopg 3 (Debian: python3-psycopg).  The page loads
nothing from anywhere (its Content-Security-Policy forbids it) and runs no
script.  Exit status: 0 written, 1 a database error, 2 usage, 3 the report did
not add up.
"""

import argparse
import datetime as dt
import html
import json
import math
import sys

import psycopg

EXIT_DB, EXIT_USAGE, EXIT_INCONSISTENT = 1, 2, 3
MAX_PROBLEMS_SHOWN = 50


def esc(value):
    """Text for HTML: None as an empty string, everything else escaped."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return html.escape(value, quote=True)


def parse_time(text):
    """An ISO 8601 UTC time from the report ("...Z"); None for the open
    ends (infinity, -infinity)."""
    if text is None or text in ("infinity", "-infinity"):
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------
# Reading from the database
# ---------------------------------------------------------------------------

def read_report(conn, subject, start, end):
    with conn.cursor() as cur:
        cur.execute("SELECT tool_audit.access_report(%s, %s::timestamptz, %s::timestamptz)",
                    (subject, start, end))
        report = cur.fetchone()[0]
        cur.execute("""SELECT current_user, current_database(),
                              (SELECT extversion FROM pg_extension WHERE extname = 'tool_audit'),
                              tool_audit.iso8601_utc(now())""")
        who, database, version, now = cur.fetchone()
        # what row-level security lets this session see: its tenant bindings,
        # or the tool_audit.tenant setting (PGOPTIONS='-c tool_audit.tenant=acme')
        cur.execute("""SELECT tool_audit.bound_tenants(),
                              nullif(current_setting('tool_audit.tenant', true), '')""")
        bound, setting = cur.fetchone()
        tenants = bound or ([setting] if setting else None)
    return report, {"role": who, "database": database, "version": version, "generated_at": now,
                    "bound_tenants": tenants}


def check_digest(conn, digest):
    """verify_digest() on the digest given, or on one taken now when digest
    is None.  Returns (digest, problems, taken_now, sha256 of its canonical
    JSON) or raises InsufficientPrivilege."""
    taken_now = digest is None
    with conn.cursor() as cur:
        if taken_now:
            cur.execute("SELECT tool_audit.digest()")
            digest = cur.fetchone()[0]
        cur.execute("""SELECT table_name, chain, position, row_id, problem
                         FROM tool_audit.verify_digest(%s::jsonb)""", (json.dumps(digest),))
        problems = [dict(zip(("table", "chain", "position", "row_id", "problem"), r)) for r in cur.fetchall()]
        # its fingerprint: SHA-256 of its canonical JSON (doc/canonical-encoding.md)
        cur.execute("SELECT encode(sha256(convert_to(tool_audit.canonical_json(%s::jsonb), 'UTF8')), 'hex')",
                    (json.dumps(digest),))
        sha256 = cur.fetchone()[0]
    return digest, problems, taken_now, sha256


def check_consistent(report):
    """The page's figures are the report's: every access is in the table,
    and the break-glass count is the rows flagged."""
    accesses = report.get("accesses") or []
    problems = []
    if len(accesses) != report.get("total_accesses"):
        problems.append(f"the report lists {len(accesses)} accesses but counts {report.get('total_accesses')}")
    flagged = sum(1 for a in accesses if a.get("break_glass"))
    if flagged != report.get("break_glass_accesses"):
        problems.append(f"{flagged} accesses are flagged break-glass but the report counts "
                        f"{report.get('break_glass_accesses')}")
    users = len({a.get("accessed_by") for a in accesses if a.get("accessed_by") is not None})
    if users != report.get("unique_users"):
        problems.append(f"the accesses name {users} users but the report counts {report.get('unique_users')}")
    return problems


# ---------------------------------------------------------------------------
# The chart: accesses per hour, day, week or month, break-glass stacked on top
# ---------------------------------------------------------------------------

def bucket_start(t, unit):
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        d = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return d - dt.timedelta(days=d.weekday())
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_bucket(t, unit):
    if unit == "hour":
        return t + dt.timedelta(hours=1)
    if unit == "day":
        return t + dt.timedelta(days=1)
    if unit == "week":
        return t + dt.timedelta(days=7)
    return (t.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def chart_svg(report):
    times = [(parse_time(a["timestamp"]), bool(a.get("break_glass"))) for a in report.get("accesses") or []]
    if not times:
        return '<p class="empty">No access in this period: nothing to chart.</p>'
    period = report.get("report_period") or {}
    lo, hi = parse_time(period.get("start")), parse_time(period.get("end"))
    first, last = min(t for t, _ in times), max(t for t, _ in times)
    # the period's own bounds when they are finite and not far wider than the data
    lo = lo if lo is not None and (last - lo) <= 3 * max(last - first, dt.timedelta(days=1)) else first
    hi = hi if hi is not None and (hi - first) <= 3 * max(last - first, dt.timedelta(days=1)) else last
    span = hi - lo
    unit = ("hour" if span <= dt.timedelta(days=2) else "day" if span <= dt.timedelta(days=92)
            else "week" if span <= dt.timedelta(days=730) else "month")
    starts = []
    b = bucket_start(lo, unit)
    while b <= hi and len(starts) < 2000:
        starts.append(b)
        b = next_bucket(b, unit)
    index = {s: i for i, s in enumerate(starts)}
    normal, glass = [0] * len(starts), [0] * len(starts)
    for t, bg in times:
        i = index.get(bucket_start(t, unit))
        if i is None:       # outside the charted range (cannot happen, but never drop silently)
            starts.append(bucket_start(t, unit))
            normal.append(0)
            glass.append(0)
            i = len(starts) - 1
            index[starts[i]] = i
        (glass if bg else normal)[i] += 1
    top = max(n + g for n, g in zip(normal, glass))
    step = max(1, math.ceil(top / 4))
    ymax = step * math.ceil(top / step)
    w, h, left, bottom, right, topm = 900, 200, 44, 46, 12, 14
    pw, ph = w - left - right, h - topm - bottom
    bw = pw / len(starts)
    fmt = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "week": "week of %Y-%m-%d", "month": "%Y-%m"}[unit]
    out = [f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'role="img" aria-labelledby="chart-title">',
           f'<title id="chart-title">Accesses per {unit}, break-the-glass in red ({len(times)} in all)</title>']
    for k in range(0, ymax + 1, step):
        y = topm + ph - ph * k / ymax
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" class="ylabel">{k}</text>')
    label_every = max(1, math.ceil(len(starts) / 8))
    for i, s in enumerate(starts):
        x = left + i * bw
        pad = min(2.0, bw * 0.15)
        n, g = normal[i], glass[i]
        label = esc(s.strftime(fmt))
        if n:
            hn = ph * n / ymax
            out.append(f'<rect class="bar" data-count="{n}" x="{x + pad:.1f}" y="{topm + ph - hn:.1f}" '
                       f'width="{bw - 2 * pad:.1f}" height="{hn:.1f}"><title>{label}: {n} access'
                       f'{"es" if n != 1 else ""}</title></rect>')
        if g:
            hg = ph * g / ymax
            y0 = topm + ph - ph * n / ymax - hg
            out.append(f'<rect class="bar break-glass" data-count="{g}" x="{x + pad:.1f}" y="{y0:.1f}" '
                       f'width="{bw - 2 * pad:.1f}" height="{hg:.1f}"><title>{label}: {g} break-the-glass '
                       f'access{"es" if g != 1 else ""}</title></rect>')
        if i % label_every == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{h - bottom + 16}" class="xlabel">{label}</text>')
    out.append(f'<line x1="{left}" y1="{topm + ph}" x2="{w - right}" y2="{topm + ph}" class="axis"/>'
               f'<text x="{left + pw / 2:.0f}" y="{h - 6}" class="xlabel">time (UTC), one bar per {unit}</text>'
               '</svg>')
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
       margin: 24px auto; max-width: 1200px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #555; margin: 0 0 16px; }
.figures { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.figure { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.figure b { display: block; font-size: 22px; }
.verdict { border-radius: 6px; padding: 12px 16px; margin: 12px 0; border: 2px solid; }
.verdict.ok { background: #e6f4ea; border-color: #1e7e34; }
.verdict.bad { background: #fde7e9; border-color: #b00020; }
.verdict.partial { background: #fff4d6; border-color: #9a6700; }
.verdict strong { font-size: 18px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.time, td.nowrap { white-space: nowrap; }
td.what code { font-size: 12px; word-break: break-all; }
td.hash { font-family: ui-monospace, monospace; font-size: 12px; }
tr.break-glass td { background: #ffd7d5; }
tr.break-glass td:first-child { border-left: 5px solid #b00020; }
.tag { display: inline-block; background: #b00020; color: #fff; border-radius: 3px; padding: 0 5px;
       font-size: 11px; font-weight: 600; margin-left: 4px; }
.failed { color: #b00020; font-weight: 600; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px; overflow-x: auto; font-size: 12px; }
svg .bar { fill: #3b6ea8; } svg .bar.break-glass { fill: #b00020; }
svg .grid { stroke: #e4e7eb; } svg .axis { stroke: #555; }
svg text { font-size: 11px; fill: #444; } svg .ylabel { text-anchor: end; } svg .xlabel { text-anchor: middle; }
.legend span { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin: 0 4px 0 12px; }
footer { color: #666; margin-top: 32px; font-size: 12px; }
@media print { body { margin: 0; } .verdict, tr.break-glass td { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


def who_cell(a):
    who = esc(a.get("accessed_by")) or "<em>unknown</em>"
    if a.get("role"):
        who += f' <span class="role">({esc(a["role"])})</span>'
    if a.get("impersonated_by"):
        who += f', impersonated by {esc(a["impersonated_by"])}'
    return who


def what_cell(a):
    """The tool, and its (sanitized) arguments when the report gives them."""
    out = f'<span class="tool">{esc(a.get("tool"))}</span>'
    if a.get("arguments") not in (None, {}, []):
        out += f'<br><code>{esc(a["arguments"])}</code>'
    return out


def time_cell(text):
    """2025-03-01T13:13:00.000000Z shown as 2025-03-01 13:13:00 (the
    microseconds when there are any); the report's text as its title."""
    t = parse_time(text)
    if t is None:
        return esc(text)
    shown = t.strftime("%Y-%m-%d %H:%M:%S") + (f".{t.microsecond:06d}" if t.microsecond else "")
    return f'<time datetime="{esc(text)}" title="{esc(text)}">{shown}</time>'


def access_rows(accesses):
    has_hash = any("row_hash" in a for a in accesses)
    head = ["#", "Time (UTC)", "Who", "Why (purpose)", "What was accessed", "Conversation", "Outcome", "Model",
            "Tenant", "Call id"] + (["Row hash"] if has_hash else [])
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for n, a in enumerate(accesses, 1):
        bg = bool(a.get("break_glass"))
        outcome = "ok" if a.get("success") else '<span class="failed">failed</span>'
        cells = [str(n), time_cell(a.get("timestamp")), who_cell(a),
                 (esc(a.get("purpose")) or "<em>none given</em>") + ('<span class="tag">BREAK-THE-GLASS</span>' if bg else ""),
                 what_cell(a), esc(a.get("conversation_id")), outcome, esc(a.get("model")), esc(a.get("tenant_id")),
                 esc(a.get("call_id"))]
        if has_hash:
            cells.append(esc(a.get("row_hash")))
        classes = ["", "time", "nowrap", "", "what", "", "", "nowrap", "", "", "hash"][:len(cells)]
        rows.append(f'<tr class="access{" break-glass" if bg else ""}" data-call-id="{esc(a.get("call_id"))}" '
                    f'data-break-glass="{"true" if bg else "false"}">'
                    + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for c, v in zip(classes, cells))
                    + "</tr>")
    return "\n".join(rows)


def admin_rows(events):
    keys = []
    for e in events:
        for k in e:
            if k not in keys:
                keys.append(k)
    rows = ["<tr>" + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr>"]
    for e in events:
        rows.append('<tr class="admin-event">' + "".join(f"<td>{esc(e.get(k))}</td>" for k in keys) + "</tr>")
    return "\n".join(rows)


def verdict_html(report, digest_check):
    rows_ok = bool(report.get("integrity_verified"))
    integ = report.get("integrity") or {}
    row_problems = integ.get("row_problems") or []
    prot_problems = integ.get("protection_problems") or []
    if digest_check.get("error"):
        digest_ok = None
    else:
        digest_ok = not digest_check["problems"]
    if not rows_ok or digest_ok is False:
        cls, word = "bad", "NOT VERIFIED"
    elif digest_ok is None:
        cls, word = "partial", "ROWS VERIFIED, NO DIGEST CHECKED"
    else:
        cls, word = "ok", "VERIFIED"
    out = [f'<div id="verdict" class="verdict {cls}" data-verdict="{cls}"><strong>Integrity: {word}</strong><ul>']
    out.append(f'<li>The report\'s rows: <b id="rows-verdict">{"intact" if rows_ok else "NOT intact"}</b>: '
               f'{esc(integ.get("rows_checked"))} rows checked ({esc(integ.get("method"))}); '
               f'{len(row_problems)} row problems, {len(prot_problems)} protection problems.</li>')
    if digest_ok is None:
        out.append(f'<li>Digest: <b id="digest-verdict">not checked</b>: {esc(digest_check["error"])}</li>')
    else:
        d = digest_check["digest"]
        src = ("taken when this page was made" if digest_check["taken_now"]
               else f'read from {esc(digest_check["source"])} (kept outside the database)')
        out.append(f'<li>Digest: <b id="digest-verdict">{"matches" if digest_ok else "DOES NOT MATCH"}</b> '
                   f'(<code>verify_digest()</code>: {len(digest_check["problems"])} problems) &mdash; the digest '
                   f'{src}, taken at {esc(d.get("taken_at"))}, {len(d.get("heads") or [])} lane heads, '
                   f'{"signed, key " + esc(d.get("key_id")) if d.get("signature") else "not signed"}, '
                   f'SHA-256 of its canonical JSON <code id="digest-sha256">{digest_check["sha256"]}</code>.</li>')
    out.append(f'<li>Scope: {esc(integ.get("scope"))}</li></ul>')
    problems = [("row", p.get("call_id"), p.get("problem")) for p in row_problems] + \
               [("protection", p.get("table"), p.get("problem")) for p in prot_problems] + \
               [("digest", f'{p["table"]} {p["chain"]} #{p["position"]} row {p["row_id"]}', p["problem"])
                for p in (digest_check.get("problems") or [])]
    if problems:
        out.append('<table id="problems"><tr><th>check</th><th>where</th><th>problem</th></tr>')
        for kind, where, what in problems[:MAX_PROBLEMS_SHOWN]:
            out.append(f"<tr><td>{kind}</td><td>{esc(where)}</td><td>{esc(what)}</td></tr>")
        out.append("</table>")
        if len(problems) > MAX_PROBLEMS_SHOWN:
            out.append(f"<p>and {len(problems) - MAX_PROBLEMS_SHOWN} more.</p>")
    out.append("</div>")
    return "\n".join(out)


def recheck_html(args, info, digest_check):
    report_cmd = (f"tools/access_report_html.py --dsn 'dbname={info['database']} user={info['role']}' "
                  f"--subject {shell_quote(args.subject)} --from {shell_quote(args.start)} "
                  f"--to {shell_quote(args.end)} --digest digest.json -o recheck.html")
    sql = (f"SELECT tool_audit.access_report({sql_quote(args.subject)}, {sql_quote(args.start)}, "
           f"{sql_quote(args.end)})->'integrity';")
    lines = ["<ol>",
             "<li>Save the digest below as <code>digest.json</code> (and keep a copy where the database's "
             "administrators cannot write).</li>",
             "<li>Check it in the database, as a role with <code>tool_audit_verifier</code> or "
             "<code>tool_audit_admin</code> (no row: everything the digest covers is there, unchanged):"
             f"<pre>psql -X -d 'dbname={esc(info['database'])} user=VERIFIER' -v digest=\"$(cat digest.json)\" &lt;&lt;'SQL'\n"
             "SELECT * FROM tool_audit.verify_digest(:'digest'::jsonb);\nSQL</pre></li>",
             "<li>Check it independently of the extension's code, with the external verifier "
             "(<code>verifier/</code> in tool_audit's sources; the public key from "
             "<code>SELECT tool_audit.signing_public_key()</code>, kept apart):"
             f"<pre>verifier/tool_audit_verify --digest digest.json --public-key tool_audit_pub.pem \\\n"
             f"    'dbname={esc(info['database'])} user=VERIFIER'</pre></li>",
             "<li>Its fingerprint, as printed above:"
             f"<pre>psql -X -At -d 'dbname={esc(info['database'])} user={esc(info['role'])}' -v digest=\"$(cat digest.json)\" &lt;&lt;'SQL'\n"
             "SELECT encode(sha256(convert_to(tool_audit.canonical_json(:'digest'::jsonb), 'UTF8')), 'hex');\nSQL</pre></li>",
             f"<li>Re-run the report's own checks:<pre>psql -X -d 'dbname={esc(info['database'])} "
             f"user={esc(info['role'])}' -c {esc(shell_quote(sql))}</pre>or make this page again "
             f"against the saved digest:<pre>{esc(report_cmd)}</pre></li></ol>"]
    if digest_check.get("digest") is not None:
        lines.append('<details open><summary>The digest checked (<code>digest.json</code>)</summary>'
                     f'<pre id="digest">{esc(json.dumps(digest_check["digest"], indent=1, sort_keys=True))}'
                     "</pre></details>")
    return "\n".join(lines)


def shell_quote(s):
    return "'" + str(s).replace("'", "'\\''") + "'"


def sql_quote(s):
    return "'" + str(s).replace("'", "''") + "'"


def render(report, info, digest_check, args):
    accesses = report.get("accesses") or []
    period = report.get("report_period") or {}
    tenants = info["bound_tenants"]
    scope = ("every tenant this role may read" if not tenants
             else "tenant" + ("s " if len(tenants) > 1 else " ") + ", ".join(esc(t) for t in tenants))
    args_note = ("" if any("arguments" in a for a in accesses) else
                 "This version's <code>access_report()</code> names the tool and conversation of each access, "
                 "not its arguments (the arguments are in <code>tool_calls</code>, by call id).")
    admin = report.get("admin_events")
    admin_section = ""
    if isinstance(admin, list):
        admin_section = (f'<h2>Admin events about this subject ({len(admin)})</h2>'
                         + (f'<table id="admin-events">{admin_rows(admin)}</table>' if admin
                            else "<p>None in this period.</p>"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="tool_audit access_report_html.py">
<title>Access report: {esc(report.get("subject_id"))}, {esc(period.get("start"))} to {esc(period.get("end"))}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Access report for data subject <span id="subject">{esc(report.get("subject_id"))}</span></h1>
<p class="meta">Period: <span id="period-start">{esc(period.get("start"))}</span> to
<span id="period-end">{esc(period.get("end"))}</span> (both included, UTC). Database
<code>{esc(info["database"])}</code>, tool_audit {esc(info["version"])}; read as role
<code>{esc(info["role"])}</code>, which sees {scope} (row-level security). Generated
{esc(info["generated_at"])}.</p>

<div class="figures">
<div class="figure"><b id="total-accesses">{esc(report.get("total_accesses"))}</b>accesses</div>
<div class="figure"><b id="unique-users">{esc(report.get("unique_users"))}</b>distinct users</div>
<div class="figure"><b id="break-glass-accesses">{esc(report.get("break_glass_accesses"))}</b>break-the-glass</div>
<div class="figure"><b id="failed-accesses">{sum(1 for a in accesses if not a.get("success"))}</b>failed</div>
</div>

{verdict_html(report, digest_check)}

<h2>Accesses over time</h2>
<p class="legend"><span style="background:#3b6ea8"></span>accesses<span style="background:#b00020"></span>break-the-glass</p>
{chart_svg(report)}

<h2>Accesses ({len(accesses)})</h2>
<p>In time order. Break-the-glass (emergency) accesses are highlighted in red and tagged.
{args_note}</p>
<table id="accesses">
{access_rows(accesses)}
</table>
{admin_section}

<h2>How to re-check this report</h2>
{recheck_html(args, info, digest_check)}

<footer>Made by tools/access_report_html.py from <code>tool_audit.access_report()</code>,
<code>tool_audit.verify_digest()</code> and <code>tool_audit.digest()</code> (doc/reports.md). The
figures above are the report's own; the program refuses to write a page whose table does not add up
to them.</footer>
</body>
</html>
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description="tool_audit's access report for a subject and period, as one HTML file")
    ap.add_argument("--dsn", required=True, help="libpq connection string of a tool_audit_reader or admin role")
    ap.add_argument("--subject", required=True, help="the data subject (subject_id)")
    ap.add_argument("--from", dest="start", default="-infinity", help="start of the period (timestamptz; included)")
    ap.add_argument("--to", dest="end", default="infinity", help="end of the period (timestamptz; included)")
    ap.add_argument("--digest", help="a digest saved earlier (the JSON of tool_audit.digest()) to check against; "
                                     "default: one taken now")
    ap.add_argument("--verify-dsn", help="connection string of a tool_audit_verifier or admin role for "
                                         "verify_digest(); default: --dsn")
    ap.add_argument("-o", "--output", default="-", help="the HTML file to write (default: standard output)")
    args = ap.parse_args(argv)

    digest = None
    if args.digest:
        try:
            with open(args.digest, encoding="utf-8") as f:
                digest = json.load(f)
        except (OSError, ValueError) as e:
            print(f"access_report_html: cannot read the digest {args.digest}: {e}", file=sys.stderr)
            return EXIT_USAGE

    try:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            report, info = read_report(conn, args.subject, args.start, args.end)
    except psycopg.Error as e:
        # the SQLSTATE and PostgreSQL's message (access_report's never quote a value)
        print(f"access_report_html: the report failed: {e.sqlstate or ''} {e.diag.message_primary or e}",
              file=sys.stderr)
        return EXIT_DB

    problems = check_consistent(report)
    if problems:
        print("access_report_html: the report does not add up, no page written: " + "; ".join(problems),
              file=sys.stderr)
        return EXIT_INCONSISTENT

    digest_check = {"source": args.digest}
    try:
        with psycopg.connect(args.verify_dsn or args.dsn, autocommit=True) as conn:
            d, dproblems, taken_now, sha256 = check_digest(conn, digest)
        digest_check.update(digest=d, problems=dproblems, taken_now=taken_now, sha256=sha256)
    except psycopg.errors.InsufficientPrivilege:
        digest_check.update(error="the role may not call verify_digest() (tool_audit_verifier or "
                                  "tool_audit_admin may): pass --verify-dsn", digest=digest, problems=None)
    except psycopg.Error as e:
        digest_check.update(error=f"verify_digest() failed: {e.sqlstate or ''} {e.diag.message_primary or e}",
                            digest=digest, problems=None)

    page = render(report, info, digest_check, args)
    if args.output == "-":
        sys.stdout.write(page)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Posts tool_audit alerts to a Slack or Google Chat incoming webhook.

    alert_forwarder.py --dsn "host=db dbname=app user=alerts" \
        --webhook https://hooks.slack.com/services/... --format slack \
        --state /var/lib/tool_audit/forwarder.json

It LISTENs on tool_audit_alerts and, at each notification (and every
--poll seconds, and after every reconnection), reads the alerts it has not
delivered yet from tool_audit.alerts, in alert_id order, and posts each one,
retrying with exponential backoff until the webhook accepts it (2xx).  What
was delivered is kept in the --state file (written atomically after each
post), so a restart of the database or of the forwarder loses nothing and
posts nothing twice.  The notification is only a wake-up: its payload holds
no tenant, and the alert is read through row-level security, so a role bound
to a tenant forwards that tenant's alerts only.

Each alert is posted when it is first seen, and again, as "grew", each time
its count reaches ten times what was last posted (10, 100, 1000 rows ...)
while it is still growing (last_at within --growth-window seconds): a burst
that escalates is seen escalating, and one that merely continues does not
flood the channel.  Alert ids are given when an alert is
raised and seen when its transaction commits, possibly out of order: ids up
to the highest raised more than --settle-seconds ago are taken as final, the
ids above are remembered one by one.  An alert whose transaction stays open
longer than that after raising it could be missed (doc/alerts.md).

Needs Debian's python3-psycopg (psycopg 3); nothing else outside the
standard library.
"""
import argparse
import json
import logging
import os
import select
import sys
import time
import urllib.error
import urllib.request

import psycopg
from psycopg.rows import dict_row

CHANNEL = "tool_audit_alerts"
QUERY = """
SELECT alert_id, rule_name, kind, severity, tenant_id, burst_key, count,
       first_at, last_at, first_at < now() - make_interval(secs => %(settle)s) AS settled
  FROM tool_audit.alerts
 WHERE alert_id > %(mark)s
 ORDER BY alert_id
"""
# delivered alerts still growing, for the "grew" posts
GROWING = """
SELECT alert_id, rule_name, kind, severity, tenant_id, burst_key, count, first_at, last_at
  FROM tool_audit.alerts
 WHERE last_at > now() - make_interval(secs => %(window)s)
 ORDER BY alert_id
"""
log = logging.getLogger("alert_forwarder")


class State:
    """The delivered mark: every alert_id <= mark is done; delivered holds
    the ids above it already posted; posted, the count last posted of each
    alert still growing (a state file from before has none: the counts
    then are taken as posted, so nothing is posted again at once)."""

    def __init__(self, path):
        self.path = path
        self.mark = 0
        self.delivered = set()
        self.posted = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.mark = int(data.get("mark", 0))
            self.delivered = {int(i) for i in data.get("delivered", [])}
            self.posted = {int(k): int(v) for k, v in data.get("posted", {}).items()}

    def is_delivered(self, alert_id):
        return alert_id <= self.mark or alert_id in self.delivered

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"mark": self.mark, "delivered": sorted(self.delivered),
                       "posted": {str(k): v for k, v in sorted(self.posted.items())}}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dirfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def message(alert, fmt, grew=False):
    """The webhook body: Slack's or Google Chat's incoming webhook shape."""
    tenant = alert["tenant_id"] or "(no tenant)"
    about = f" - {alert['burst_key']}" if alert["burst_key"] else ""
    text = (f"[{alert['severity'].upper()}] tool_audit alert #{alert['alert_id']}"
            f"{' grew' if grew else ''}: "
            f"{alert['rule_name']} ({alert['kind']}), tenant {tenant}{about}; "
            f"{alert['count']} row(s) since {alert['first_at'].isoformat()}"
            f"{', the last at ' + alert['last_at'].isoformat() if grew else ''}")
    if fmt == "slack":
        return {"text": text,
                "blocks": [{"type": "section",
                            "text": {"type": "mrkdwn", "text": f"*{text}*"}}]}
    # Google Chat: a text message, threaded by alert id
    return {"text": text, "thread": {"threadKey": f"tool_audit-alert-{alert['alert_id']}"}}


def post(url, body, timeout, max_backoff, stop):
    """Posts until the webhook answers 2xx (backoff 1 s, doubling, at most max_backoff)."""
    data = json.dumps(body).encode()
    delay = 1.0
    while not stop():
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json; charset=UTF-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return True
                log.warning("webhook answered %s; retrying in %.0f s", resp.status, delay)
        except urllib.error.HTTPError as e:
            log.warning("webhook answered %s; retrying in %.0f s", e.code, delay)
        except (urllib.error.URLError, OSError) as e:
            log.warning("webhook unreachable (%s); retrying in %.0f s", e, delay)
        time.sleep(delay)
        delay = min(delay * 2, max_backoff)
    return False


def catch_up(conn, state, args, stop):
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(QUERY, {"mark": state.mark, "settle": args.settle_seconds})
        rows = cur.fetchall()
    for alert in rows:
        if alert["alert_id"] in state.delivered:
            continue
        if not post(args.webhook, message(alert, args.format), args.timeout, args.max_backoff, stop):
            return
        state.delivered.add(alert["alert_id"])
        state.posted[alert["alert_id"]] = alert["count"]
        state.save()
        log.info("delivered alert %s", alert["alert_id"])
    # the ids up to the last settled alert are final
    settled = [a["alert_id"] for a in rows if a["settled"]]
    if settled and max(settled) > state.mark:
        state.mark = max(settled)
        state.delivered = {i for i in state.delivered if i > state.mark}
        state.save()
    grown(conn, state, args, stop)


def grown(conn, state, args, stop):
    """Posts "grew" for a delivered alert whose count reached ten times the
    count last posted; forgets the alerts that stopped growing."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(GROWING, {"window": args.growth_window})
        rows = cur.fetchall()
    live = set()
    for alert in rows:
        aid = alert["alert_id"]
        if not state.is_delivered(aid):
            continue
        live.add(aid)
        if aid not in state.posted:
            state.posted[aid] = alert["count"]     # delivered by an older forwarder
            state.save()
            continue
        if alert["count"] < 10 * max(state.posted[aid], 1):
            continue
        if not post(args.webhook, message(alert, args.format, grew=True), args.timeout,
                    args.max_backoff, stop):
            return
        state.posted[aid] = alert["count"]
        state.save()
        log.info("delivered the growth of alert %s to %s rows", aid, alert["count"])
    gone = [aid for aid in state.posted if aid not in live]
    if gone:
        for aid in gone:
            del state.posted[aid]
        state.save()


def run(args):
    state = State(args.state)
    stopping = []
    stop = lambda: bool(stopping)  # noqa: E731
    import signal
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    delay = 1.0
    while not stop():
        try:
            with psycopg.connect(args.dsn, autocommit=True, connect_timeout=10) as conn:
                woken = []
                conn.add_notify_handler(lambda n: woken.append(n.payload))
                conn.execute(f"LISTEN {CHANNEL}")
                log.info("listening on %s", CHANNEL)
                delay = 1.0
                while not stop():
                    catch_up(conn, state, args, stop)
                    woken.clear()
                    # wait for a notification, or poll
                    ready, _, _ = select.select([conn.fileno()], [], [], args.poll)
                    if ready:
                        conn.execute("SELECT 1")   # reads the notifications
        except psycopg.OperationalError as e:
            log.warning("database connection lost or refused (%s); reconnecting in %.0f s",
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, args.max_backoff)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default=os.environ.get("TOOL_AUDIT_DSN", ""),
                   help="libpq connection string (default: $TOOL_AUDIT_DSN, then the PG* variables)")
    p.add_argument("--webhook", default=os.environ.get("TOOL_AUDIT_WEBHOOK"), required=False,
                   help="the incoming webhook URL (default: $TOOL_AUDIT_WEBHOOK)")
    p.add_argument("--format", choices=["slack", "google_chat"], default="slack")
    p.add_argument("--state", required=True, help="file that keeps what was delivered")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between reads without a notification")
    p.add_argument("--settle-seconds", type=int, default=600,
                   help="alerts raised longer ago than this are taken as committed or gone")
    p.add_argument("--growth-window", type=int, default=86400,
                   help="an alert whose last row is older than this many seconds is not posted again as grown")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for one webhook request")
    p.add_argument("--max-backoff", type=float, default=60.0, help="longest wait between retries")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.webhook:
        p.error("--webhook (or $TOOL_AUDIT_WEBHOOK) is required")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

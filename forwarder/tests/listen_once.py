#!/usr/bin/env python3
"""A real LISTEN client: LISTENs on tool_audit_alerts, prints "listening",
then prints the payload of the first notification and exits.
    listen_once.py DSN [TIMEOUT_SECONDS]"""
import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute("LISTEN tool_audit_alerts")
    print("listening", flush=True)
    for n in conn.notifies():
        print(n.channel, n.payload, flush=True)
        break

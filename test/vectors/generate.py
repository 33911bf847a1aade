#!/usr/bin/env python3
"""Generate test/vectors/{json,rows,links,chains,erasures,security_state}.tsv for doc/canonical-encoding.md.

This is a third implementation of the canonical encoding, written apart
from the extension (src/) and from the external verifier (verifier/), with
the Python standard library only (hashlib for SHA-256).  Numbers are parsed
with decimal.Decimal, which is exact, and printed from its digit tuple;
never through float, except for tag 'f', whose values are IEEE doubles by
definition.

    python3 test/vectors/generate.py            # rewrite the files
    python3 test/vectors/generate.py --check    # exit 1 if they differ
"""

import decimal
import hashlib
import ipaddress
import json
import os
import struct
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- section 3

class Num:
    """A JSON number kept as its exact decimal text."""

    def __init__(self, text):
        self.text = text


class Obj:
    """A JSON object as its (key, value) pairs; a repeated key keeps its
    last value, as jsonb does."""

    def __init__(self, pairs):
        d = {}
        for k, v in pairs:
            d[k] = v
        self.members = d


def _no_constant(name):
    raise ValueError("not JSON: " + name)


def parse_json(text):
    return json.loads(text, parse_float=Num, parse_int=Num,
                      parse_constant=_no_constant, object_pairs_hook=Obj)


def canonical_number(text):
    sign, digits, exp = decimal.Decimal(text).as_tuple()
    digits = list(digits)
    while digits and digits[0] == 0:
        digits.pop(0)
    if not digits:
        return "0"
    while digits[-1] == 0:
        digits.pop()
        exp += 1
    s = "".join(str(d) for d in digits)
    if exp >= 0:
        out = s + "0" * exp
    elif len(s) > -exp:
        out = s[:len(s) + exp] + "." + s[len(s) + exp:]
    else:
        out = "0." + "0" * (-exp - len(s)) + s
    return ("-" if sign else "") + out


_ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t',
            '\n': '\\n', '\f': '\\f', '\r': '\\r'}


def canonical_string(s):
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Num):
        return canonical_number(v.text)
    if isinstance(v, str):
        return canonical_string(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, Obj):
        keys = sorted(v.members, key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(canonical_string(k) + ":" + canonical(v.members[k])
                              for k in keys) + "}"
    raise TypeError(type(v))


def canonical_text(text):
    return canonical(parse_json(text))


# ---------------------------------------------------------------- section 2

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def encode_value(tag, v):
    """Encode a value as parsed by parse_json from rows.tsv."""
    if tag == "i":
        n = int(v.text)
        assert INT64_MIN <= n <= INT64_MAX and "." not in v.text
        return struct.pack(">q", n)
    if tag == "f":
        d = float(v.text)
        if d == 0.0:
            d = 0.0                     # -0 is encoded as +0
        return struct.pack(">d", d)
    if tag == "b":
        assert v is True or v is False
        return b"\x01" if v else b"\x00"
    if tag == "s":
        assert isinstance(v, str)
        return v.encode("utf-8")
    if tag == "u":
        return uuid.UUID(v).bytes
    if tag == "t":
        if v == "infinity":
            n = INT64_MAX
        elif v == "-infinity":
            n = INT64_MIN
        else:
            n = int(v.text)
        return struct.pack(">q", n)
    if tag == "n":
        iface = ipaddress.ip_interface(v)
        return (bytes([iface.version, iface.network.prefixlen]) +
                iface.ip.packed)
    if tag == "j":
        return canonical(v).encode("utf-8")
    raise ValueError("unknown tag " + tag)


def row_hash(table, columns_text):
    """columns_text: the JSON array of [name, tag, value] triples."""
    cols = parse_json(columns_text)
    fields = []
    for name, tag, value in cols:
        fields.append((name.encode("ascii"), tag, encode_value(tag, value)))
    fields.sort(key=lambda f: f[0])
    names = [f[0] for f in fields]
    assert len(set(names)) == len(names), "duplicate column"
    t = table.encode("ascii")
    m = b"tool_audit row 1\x00" + bytes([len(t)]) + t
    for name, tag, value in fields:
        m += (bytes([len(name)]) + name + tag.encode("ascii") +
              struct.pack(">I", len(value)) + value)
    return hashlib.sha256(m).digest()


# ---------------------------------------------------------------- section 4

def chain_id(table, tenant, policy=None):
    """The chain of a table, tenant and retention policy (None for NULL):
    the first 8 bytes of the hash as a signed big-endian integer.  A row
    without a policy (written before 1.4) takes derivation 1."""
    t = table.encode("ascii")
    if policy is None:
        m = b"tool_audit chain 1\x00" + bytes([len(t)]) + t
    else:
        p = policy.encode("utf-8")
        assert 1 <= len(p) <= 255
        m = (b"tool_audit chain 2\x00" + bytes([len(t)]) + t +
             bytes([len(p)]) + p)
    if tenant is None:
        m += b"\x00"
    else:
        m += b"\x01" + tenant.encode("utf-8")
    return struct.unpack(">q", hashlib.sha256(m).digest()[:8])[0]


def link_hash(chain, lane, seq, prev, row):
    return hashlib.sha256(b"tool_audit link 1\x00" +
                          struct.pack(">qIQ", chain, lane, seq) +
                          prev + row).digest()


# ---------------------------------------------------------------- vectors

JSON_CASES = [
    '{"b": [1.50, "x\\ny"], "a": {"é": null, "Z": true}}',   # the spec's example
    '{"b": [1.50, "x\\ny"], "a": {"é": null, "Z": true}, "n": -0.0, "e": 1e3}',
    '{"b":1,"a":2,"aa":3,"é":4,"Z":5,"_":6,"":7,"A":8,"ab":9,"a\\u0001":10}',
    '{"\\u00e9":1,"e\\u0301":2,"\\ud83d\\ude00":3,"\\uffff":4,"z":5}',
    '{ "nested" : { "z" : [ { "y" : 1 , "x" : [ ] } , { } ] , "a" : { "c" : { "b" : { } } } } }',
    '[[[[[["deep"]]]]], {"k": [{"k": [{"k": {}}]}]}]',
    '{}',
    '[]',
    '""',
    '"plain"',
    'null',
    'true',
    'false',
    '   42   ',
    '"\\u0001\\u001f\\u0008\\u0009\\u000a\\u000b\\u000c\\u000d\\u001b"',
    '"quote \\" backslash \\\\ slash \\/ raw / del \u007f"',
    '"\\u007f\\u0080\\u00ff\\u0100\\u07ff\\u0800\\ufffd"',
    '"non-ASCII: é ü ß 日本語 ☃ 😀 𝄞 \U0010ffff"',
    '"escaped 4-byte: \\ud834\\udd1e \\uD83D\\uDE00 \\udbff\\udfff"',
    '"\\b\\f\\n\\r\\t"',
    '[1.50, 1e3, -0.0, 0.00012300, -12.0, 123456789012345678901234567890.000100, 1E-7]',
    '[0, -0, 0.0, 0e10, -0E-10, 1, -1, 10, 100e-2, 1.0e+2, 2E+0, 5e-1]',
    '[9007199254740993, -9223372036854775809, 18446744073709551616, 1e30, 1.7976931348623157e308]',
    '[0.1, 0.30000000000000004, 3.14159265358979323846264338327950288, 1234.5678e-2, 12345678e-10]',
    '[1e-20, -1.000000000000000000001, 0.000000000000000000000000000000001, 100000000000000000000000000000000]',
    '{"amount": 10.00, "rate": 0.0500, "count": 3e0, "neg": -0.250}',
    # the edges of 64-bit integers: a parser that clamps or rounds shows here
    '[9223372036854775807, -9223372036854775808, 9223372036854775808, 18446744073709551615, -18446744073709551616, 99999999999999999999999999999999999999]',
    '[-0.000e5, 0.1e1, 123e-5, 1E+2, 10e-1, 120e-1, 4.50, 1e100, 5e-324, -2.5E-3, 0.5e0]',
    '{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":"deep"}}}}}}}}}}',
    '{"dup": 1, "other": 2, "dup": 3}',
    '{"tab\\tkey": "v", "new\\nline": "w", "quote\\"key": "x", "back\\\\slash": "y"}',
    '{"arr": [true, false, null, "", [], {}, [[]], [{}], -1.5e-3]}',
    '{"key with spaces":"value","KEY":"upper","key":"lower","ключ":"кириллица","鍵":"日本"}',
]


def j(text):
    """A JSON value written literally into rows.tsv."""
    return text


def s(text):
    return json.dumps(text, ensure_ascii=False)


# Each vector: (table, [(column, tag, JSON text of the value), ...]).
ROWS = [
    # realistic full rows of tool_audit.tool_calls
    ("tool_calls", [
        ("id", "i", "1"),
        ("event_id", "u", s("0b9f8a52-3c1e-4d2a-9f6b-7e5d4c3b2a19")),
        ("recorded_at", "t", "1732284000123456"),
        ("tenant_id", "s", s("acme")),
        ("conversation_id", "s", s("conv-7f3a")),
        ("turn_number", "i", "3"),
        ("user_id", "s", s("u_42")),
        ("user_role", "s", s("clinician")),
        ("model", "s", s("gpt-4o-2024-08-06")),
        ("tool_name", "s", s("lookup_patient")),
        ("tool_call_id", "s", s("call_9XyZ")),
        ("call_trigger", "s", s("user_request")),
        ("purpose", "s", s("treatment")),
        ("subject_id", "s", s("pseu:3f9a2b")),
        ("arguments", "j", j('{"patient_name": "pseu:ab12", "fields": ["allergies", "medications"], "limit": 10}')),
        ("result_summary", "j", j('{"rows": 2, "truncated": false}')),
        ("success", "b", "true"),
        ("duration_ms", "f", "12.5"),
        ("client_ip", "n", s("10.1.2.3/32")),
        ("user_agent", "s", s("agent-sdk/1.4 (python 3.12)")),
        ("session_metadata", "j", j('{"locale": "de-CH", "ui": {"theme": "dark", "beta": true}}')),
        ("recorded_by", "s", s("app_writer")),
    ]),
    ("tool_calls", [
        ("id", "i", "9223372036854775807"),
        ("event_id", "u", s("ffffffff-ffff-ffff-ffff-ffffffffffff")),
        ("recorded_at", "t", "-1"),
        ("tenant_id", "s", s("Zürich-Klinik 🏥")),
        ("conversation_id", "s", s("")),
        ("turn_number", "i", "0"),
        ("tool_name", "s", s("send_email")),
        ("call_trigger", "s", s("proactive")),
        ("arguments", "j", j('{"to": "pseu:77aa", "subject": "Résumé \\"draft\\"\\n", "body": "line1\\r\\nline2\\ttab\\u0007bell", "amount": 1.50, "n": 1e3}')),
        ("result_summary", "j", j('{}')),
        ("success", "b", "false"),
        ("error", "s", s("SMTP 550: mailbox unavailable\n\tat line 3 \\ \"quoted\"")),
        ("duration_ms", "f", "-0.0"),
        ("client_ip", "n", s("2001:db8::8a2e:370:7334/64")),
        ("session_metadata", "j", j('[]')),
        ("recorded_by", "s", s("postgres")),
    ]),
    ("tool_calls", [
        ("id", "i", "123456789"),
        ("event_id", "u", s("00000000-0000-0000-0000-000000000000")),
        ("recorded_at", "t", s("infinity")),
        ("tenant_id", "s", s("t1")),
        ("conversation_id", "s", s("c/1")),
        ("turn_number", "i", "2147483647"),
        ("user_id", "s", s("u\u007fdel")),
        ("user_role", "s", s("admin")),
        ("model", "s", s("claude-3-5-sonnet")),
        ("tool_name", "s", s("run_sql")),
        ("tool_call_id", "s", s("toolu_01")),
        ("call_trigger", "s", s("retry")),
        ("purpose", "s", s("debugging")),
        ("subject_id", "s", s("s-1")),
        ("arguments", "j", j('{"b": [1.50, "x\\ny"], "a": {"é": null, "Z": true}, "aa": [{}, [], [[]]], "_": 0.00012300, "": -12.0}')),
        ("result_summary", "j", j('{"big": 123456789012345678901234567890.000100, "tiny": 1E-7, "neg0": -0.0}')),
        ("success", "b", "true"),
        ("duration_ms", "f", "0.1"),
        ("client_ip", "n", s("::ffff:192.0.2.128")),
        ("user_agent", "s", s("curl/8.5.0")),
        ("session_metadata", "j", j('{"emoji": "😀", "escaped": "\\ud83d\\ude00", "slash": "a/b", "ctl": "\\u001f"}')),
        ("recorded_by", "s", s("app_writer")),
    ]),
    ("tool_calls", [
        ("id", "i", "42"),
        ("event_id", "u", s("6F9619FF-8B86-D011-B42D-00C04FC964FF")),
        ("recorded_at", "t", s("-infinity")),
        ("tool_name", "s", s("noop")),
        ("call_trigger", "s", s("system")),
        ("arguments", "j", j('{}')),
        ("result_summary", "j", j('{}')),
        ("success", "b", "true"),
        ("duration_ms", "f", "1e3"),
        ("client_ip", "n", s("192.168.10.77/24")),
        ("session_metadata", "j", j('{}')),
        ("recorded_by", "s", s("app_writer")),
    ]),
    ("tool_calls", [
        ("id", "i", "7"),
        ("event_id", "u", s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("recorded_at", "t", "-946684800000000"),
        ("tenant_id", "s", s("acme")),
        ("turn_number", "i", "1"),
        ("tool_name", "s", s("summarize")),
        ("call_trigger", "s", s("follow_up")),
        ("arguments", "j", j('"a bare string"')),
        ("result_summary", "j", j('null')),
        ("success", "b", "true"),
        ("duration_ms", "f", "1.7976931348623157e308"),
        ("client_ip", "n", s("fe80::1/10")),
        ("session_metadata", "j", j('[1, [2, [3, [4, {"k": [5]}]]]]')),
        ("recorded_by", "s", s("app_writer")),
    ]),
    # realistic full rows of tool_audit.admin_events
    ("admin_events", [
        ("id", "i", "1"),
        ("event_id", "u", s("c9e2b7a4-1d3f-4e5a-8b6c-9d0e1f2a3b4c")),
        ("occurred_at", "t", "1732284000000000"),
        ("event_type", "s", s("prompt.updated")),
        ("actor", "s", s("alice@example.com")),
        ("actor_type", "s", s("user")),
        ("tenant_id", "s", s("acme")),
        ("payload", "j", j('{"prompt_id": "p-1", "version": 7, "diff": "+ be concise\\n- be verbose"}')),
        ("reason", "s", s("ticket OPS-1234")),
        ("source_ip", "n", s("203.0.113.9")),
        ("metadata", "j", j('{"via": "console", "mfa": true}')),
        ("recorded_by", "s", s("admin_writer")),
    ]),
    ("admin_events", [
        ("id", "i", "-9223372036854775808"),
        ("event_id", "u", s("{12345678-1234-5678-1234-567812345678}")),
        ("occurred_at", "t", "-123456789"),
        ("event_type", "s", s("kill_switch.engaged")),
        ("actor", "s", s("ops-bot")),
        ("actor_type", "s", s("service")),
        ("payload", "j", j('{"scope": "all", "threshold": 0.950, "models": ["a", "b"], "nested": {"z": 1, "y": {"x": []}}}')),
        ("source_ip", "n", s("::1/128")),
        ("metadata", "j", j('{}')),
        ("recorded_by", "s", s("postgres")),
    ]),
    ("admin_events", [
        ("id", "i", "3"),
        ("event_id", "u", s("123e4567e89b12d3a456426614174000")),
        ("occurred_at", "t", "253402300799999999"),
        ("event_type", "s", s("billing.limit_changed")),
        ("actor", "s", s("Jürgen Müller")),
        ("actor_type", "s", s("user")),
        ("tenant_id", "s", s("tenant-日本")),
        ("payload", "j", j('{"old": 100.00, "new": 2.5e2, "currency": "CHF"}')),
        ("reason", "s", s("")),
        ("source_ip", "n", s("0.0.0.0/0")),
        ("metadata", "j", j('{"note": "tab\\there", "path": "C:\\\\x"}')),
        ("recorded_by", "s", s("admin_writer")),
    ]),
    # one tag at a time, for pinpointing a disagreement
    ("tool_calls", [("turn_number", "i", "-1")]),
    ("tool_calls", [("duration_ms", "f", "0.1")]),
    ("tool_calls", [("duration_ms", "f", "-0.0")]),
    ("tool_calls", [("duration_ms", "f", "0")]),
    ("tool_calls", [("duration_ms", "f", "5e-324")]),
    ("tool_calls", [("success", "b", "false")]),
    ("tool_calls", [("tool_name", "s", s("naïve ☃ 😀"))]),
    ("tool_calls", [("event_id", "u", s("0b9f8a52-3c1e-4d2a-9f6b-7e5d4c3b2a19"))]),
    ("tool_calls", [("recorded_at", "t", "0")]),
    ("tool_calls", [("recorded_at", "t", "-1")]),
    ("tool_calls", [("recorded_at", "t", s("infinity"))]),
    ("tool_calls", [("recorded_at", "t", s("-infinity"))]),
    ("tool_calls", [("client_ip", "n", s("10.0.0.1"))]),
    ("tool_calls", [("client_ip", "n", s("10.0.0.1/8"))]),
    ("tool_calls", [("client_ip", "n", s("2001:db8::1"))]),
    ("tool_calls", [("client_ip", "n", s("2001:db8::1/48"))]),
    ("tool_calls", [("arguments", "j", j('{"b": 1, "a": 2}'))]),
    ("tool_calls", [("arguments", "j", j('{"a": 2, "b": 1}'))]),
    ("admin_events", [("payload", "j", j('{"b": 1, "a": 2}'))]),
    # the row sql/upgrade.sql restores (id 1000000000): the extension must give
    # 1b5944422e7549bad487e22f0f0f1dae25b8c04f2ad26087f5fc69749ef48d0a for it
    ("tool_calls", [
        ("id", "i", "1000000000"),
        ("event_id", "u", s("00000000-0000-4000-8000-000000000001")),
        ("recorded_at", "t", "1767323045678901"),
        ("tenant_id", "s", s("up_b")),
        ("conversation_id", "s", s("conv_1")),
        ("turn_number", "i", "3"),
        ("user_id", "s", s("usr_1")),
        ("user_role", "s", s("support_agent")),
        ("model", "s", s("gpt-4.1")),
        ("tool_name", "s", s("update_order_status")),
        ("tool_call_id", "s", s("call_9")),
        ("call_trigger", "s", s("follow_up")),
        ("purpose", "s", s("refund")),
        ("subject_id", "s", s("patient_7")),
        ("arguments", "j", j('{"order_id": 1.50, "note": "naïve \\"quote\\"", "items": [1, 2e2, {"z": null, "a": true}]}')),
        ("result_summary", "j", j('{"status": "ok"}')),
        ("success", "b", "false"),
        ("error", "s", s("timeout")),
        ("duration_ms", "f", "38.25"),
        ("client_ip", "n", s("2001:db8::1/64")),
        ("user_agent", "s", s("agent/1.0")),
        ("session_metadata", "j", j('{}')),
        ("recorded_by", "s", s("someone")),
    ]),
    # no column at all: the prefix alone
    ("tool_calls", []),
    ("admin_events", []),
    # a row of tool_audit.data_changes (1.5); test/sql/data_changes.sql
    # restores the same row and checks the extension gets this hash
    ("data_changes", [
        ("id", "i", "1000000001"),
        ("event_id", "u", s("00000000-0000-4000-8000-00000000dc01")),
        ("recorded_at", "t", "1767323045678901"),
        ("tenant_id", "s", s("acme")),
        ("table_name", "s", s("public.customers")),
        ("operation", "s", s("UPDATE")),
        ("row_key", "j", j('{"id": 42}')),
        ("old_values", "j", j('{"plan": "basic", "credit": 10.50}')),
        ("new_values", "j", j('{"plan": "pro", "credit": 0}')),
        ("call_event_id", "u", s("00000000-0000-4000-8000-0000000ca11d")),
        ("txid", "i", "748"),
        ("application_name", "s", s("refund-agent")),
        ("recorded_by", "s", s("app_owner")),
        ("retention_policy", "s", s("row_changes")),
        ("expires_at", "t", "1798859045678901"),
    ]),
    ("data_changes", [
        ("id", "i", "2"),
        ("event_id", "u", s("00000000-0000-4000-8000-00000000dc02")),
        ("recorded_at", "t", "0"),
        ("table_name", "s", s("sales.orders")),
        ("operation", "s", s("DELETE")),
        ("row_key", "j", j('{"order_id": 7, "line": 1}')),
        ("old_values", "j", j('{"ssn": "hmac:1a2b", "note": null}')),
        ("new_values", "j", j('{}')),
        ("recorded_by", "s", s("postgres")),
    ]),
]


def rows_line(table, cols):
    text = "[" + ", ".join("[%s, %s, %s]" % (s(n), s(t), v) for n, t, v in cols) + "]"
    return table, text, row_hash(table, text).hex()


# (table, tenant[, policy]) of chains.tsv; None is NULL
CHAINS = [
    ("tool_calls", "acme"),         # checked against the extension:
    ("admin_events", None),         # 8982595698387566530, -3664339026463227687
    ("tool_calls", None),
    ("admin_events", "acme"),
    ("tool_calls", ""),             # empty tenant, not NULL
    ("admin_events", ""),
    ("tool_calls", "Acme"),
    ("tool_calls", "acme "),
    ("tool_calls", "Zürich-Klinik 🏥"),
    ("admin_events", "tenant-日本"),
    ("tool_calls", "t1"),
    ("tool_calls", "N"),
    ("tool_calls", "\\n"),         # a backslash and n
    ("tool_calls", "ctl\u0001 del\u007f"),
    ("admin_events", "x" * 300),    # longer than 255 bytes: no length prefix
    # derivation 2 (1.4 on): the row's retention policy
    ("tool_calls", "acme", "general"),      # checked against the extension
    ("admin_events", None, "admin"),
    ("tool_calls", None, "general"),
    ("tool_calls", "", "financial"),
    ("tool_calls", "acme", "financial"),
    ("tool_calls", "acme", "healthcare"),
    ("admin_events", "acme", "admin"),
    ("tool_calls", "Zürich-Klinik 🏥", "healthcare"),
    ("tool_calls", "generalacme", "x"),     # policy and tenant do not run together:
    ("tool_calls", "acme", "generala"),     # u8 length prefix
    ("tool_calls", "acme", "p" * 63),       # the longest policy name
    ("admin_events", "x" * 300, "a"),
    # data_changes (1.5): the table name keeps its chains apart
    ("data_changes", "acme", "row_changes"),    # checked against the extension
    ("data_changes", None, "row_changes"),
    ("data_changes", "acme", "general"),
    ("data_changes", "acme"),
]


# values the extension computed (PostgreSQL 15, UTF-8 database)
assert chain_id("tool_calls", "acme") == 8982595698387566530
assert chain_id("admin_events", None) == -3664339026463227687
assert chain_id("tool_calls", "acme", "general") == -6876700337126302730


def chains_field(tenant):
    if tenant is None:
        return "\\N"
    assert tenant != "\\N" and "\t" not in tenant and "\n" not in tenant
    return tenant


def link_cases():
    """Lanes built from the row vectors, plus edge values of each field."""
    hashes = [bytes.fromhex(rows_line(t, c)[2]) for t, c in ROWS]
    out = []
    for chain, lane, rows in ((chain_id("tool_calls", "acme"), 0, hashes[0:5]),
                              (chain_id("admin_events", None), 3, hashes[5:8])):
        prev = bytes(32)
        for seq, h in enumerate(rows, start=1):
            link = link_hash(chain, lane, seq, prev, h)
            out.append((chain, lane, seq, prev, h, link))
            prev = link
    ff = bytes([0xff]) * 32
    for chain, lane, seq, prev, row in (
            (0, 0, 1, bytes(32), bytes(32)),
            (-1, 4294967295, 18446744073709551615, ff, ff),
            (INT64_MAX, 4294967295, 18446744073709551615, ff, ff),
            (INT64_MIN, 0, 1, bytes(32), ff),
            (1, 0, 1, bytes(32), bytes(32)),
            (2147483647, 15, 1 << 40, hashes[1], hashes[2]),
            (4294967296, 1, 2, hashes[3], hashes[4]),
            (-4294967296, 1, 2, hashes[3], hashes[4]),
            (chain_id("tool_calls", None), 7, 123456789, hashes[6], hashes[7])):
        out.append((chain, lane, seq, prev, row,
                    link_hash(chain, lane, seq, prev, row)))
    return out


# JSON texts that jsonb and the verifier must both refuse: (form, input,
# what is wrong).  form "text": the input as it is; "hex": its bytes in hex
# (bytes that are not UTF-8, raw control characters: no text line or COPY
# carries them); "deep": N arrays nested in each other, "[" * N + "]" * N.
INVALID_JSON = [
    ("text", '"\\ud800"', "lone high surrogate"),
    ("text", '"\\udc00"', "lone low surrogate"),
    ("text", '"\\udc00\\ud800"', "surrogate pair reversed"),
    ("text", '"\\ud800\\ud800"', "two high surrogates"),
    ("text", '"\\ud800\\u0041"', "high surrogate, then no low one"),
    ("text", '"\\ud800x"', "high surrogate at a raw character"),
    ("text", '{"\\udfff": 1}', "lone surrogate in a key"),
    ("text", '"\\u0000"', "U+0000, which text cannot hold"),
    ("text", '{"a\\u0000b": 1}', "U+0000 in a key"),
    ("text", '"\\x41"', "unknown escape"),
    ("text", '"\\u12"', "short \\u escape"),
    ("text", '"\\U0041"', "upper-case U escape"),
    ("text", '"\\\'"', "escaped single quote"),
    ("text", '"abc', "unterminated string"),
    ("text", "'a'", "single quotes"),
    ("text", "{'a': 1}", "single-quoted key"),
    ("text", "{a: 1}", "bare key"),
    ("text", "{1: 1}", "number as key"),
    ("text", '{"a" 1}', "no colon"),
    ("text", '{"a": 1 "b": 2}', "no comma between members"),
    ("text", "[1 2]", "no comma between items"),
    ("text", "[1,]", "trailing comma in an array"),
    ("text", '{"a": 1,}', "trailing comma in an object"),
    ("text", "[", "unclosed array"),
    ("text", "[1]]", "trailing garbage"),
    ("text", "[1] x", "trailing garbage"),
    ("text", "1 2", "two values"),
    ("text", "", "empty text"),
    ("text", "   ", "only whitespace"),
    ("text", "/* c */ 1", "block comment"),
    ("text", "1 // c", "line comment"),
    ("text", "[1, /* c */ 2]", "comment inside"),
    ("text", "NaN", "NaN"),
    ("text", "nan", "NaN"),
    ("text", "Infinity", "Infinity"),
    ("text", "-Infinity", "-Infinity"),
    ("text", "TRUE", "upper-case literal"),
    ("text", "nul", "truncated literal"),
    ("text", "01", "leading zero"),
    ("text", "-01", "leading zero"),
    ("text", "00", "leading zero"),
    ("text", "-", "bare minus"),
    ("text", "+1", "plus sign"),
    ("text", "1.", "no digit after the point"),
    ("text", ".5", "no digit before the point"),
    ("text", "-.5", "no digit before the point"),
    ("text", "1.e5", "no digit after the point"),
    ("text", "1e", "no exponent digits"),
    ("text", "1e+", "no exponent digits"),
    ("text", "0x10", "hexadecimal"),
    ("text", "1e200000", "more than 131072 digits before the point"),
    ("text", "[1e199999]", "more than 131072 digits before the point"),
    ("text", "1e131072", "131073 digits before the point"),
    ("text", "-1e131072", "131073 digits before the point"),
    ("text", "10e131071", "131073 digits before the point"),
    ("text", "0.0001e131076", "131073 digits before the point"),
    ("text", "1e-16384", "scale 16384"),
    ("text", "1.0e-16383", "scale 16384 (trailing zeros count)"),
    ("text", "1.5e-16383", "scale 16384"),
    ("text", "0e-16384", "scale 16384, even for zero"),
    ("text", "0e1073741823", "exponent out of numeric_in's range"),
    ("text", "0e-1073741823", "exponent out of numeric_in's range"),
    ("text", "1e99999999999999999999", "exponent out of numeric_in's range"),
    ("hex", '"\x01"'.encode().hex(), "raw control character in a string"),
    ("hex", '"a\tb"'.encode().hex(), "raw tab in a string"),
    ("hex", '"a\nb"'.encode().hex(), "raw newline in a string"),
    ("hex", '"a\x00b"'.encode().hex(), "raw NUL in a string"),
    ("hex", "22c0af22", "overlong UTF-8 (2 bytes)"),
    ("hex", "22e080af22", "overlong UTF-8 (3 bytes)"),
    ("hex", "22f08280ac22", "overlong UTF-8 (4 bytes)"),
    ("hex", "22eda08022", "UTF-8 of a surrogate"),
    ("hex", "22edbfbf22", "UTF-8 of a surrogate"),
    ("hex", "22f490808022", "UTF-8 above U+10FFFF"),
    ("hex", "22f5808080 22".replace(" ", ""), "UTF-8 lead byte F5"),
    ("hex", "228022", "lone continuation byte"),
    ("hex", "22e28222", "truncated UTF-8 sequence"),
    ("hex", "22ff22", "byte FF"),
    ("hex", "7b22c0af223a317d", "overlong UTF-8 in a key"),
    ("hex", "310c", "form feed as whitespace"),
    ("hex", "0b31", "vertical tab as whitespace"),
    ("hex", "efbbbf31", "byte order mark"),
    ("hex", "c2a031", "no-break space as whitespace"),
    ("deep", "100001", "nested deeper than 100000"),
]


def render():
    files = {}
    lines = ["# JSON text<TAB>canonical form (doc/canonical-encoding.md section 3)",
             "# generated by test/vectors/generate.py; do not edit"]
    for text in JSON_CASES:
        canon = canonical_text(text)
        assert "\t" not in text and "\n" not in text and "\t" not in canon
        lines.append(text + "\t" + canon)
    files["json.tsv"] = lines

    lines = ["# form<TAB>JSON text<TAB>what is wrong: texts that jsonb and the verifier refuse",
             "# form: text (as it is), hex (its bytes in hex), deep (N: N '[' then N ']')",
             "# generated by test/vectors/generate.py; do not edit"]
    for form, text, why in INVALID_JSON:
        assert "\t" not in text and "\n" not in text and "\t" not in why
        if form == "text":
            try:
                parse_json(text)
            except ValueError:
                pass
            else:
                # Python's reader is laxer (surrogates, numeric's range)
                assert any(w in why for w in ("surrogate", "U+0000", "digits",
                                              "scale", "exponent")), text
        lines.append(form + "\t" + text + "\t" + why)
    files["json_invalid.tsv"] = lines

    lines = ["# table<TAB>non-NULL columns as [name, tag, value]<TAB>row_hash (section 2)",
             "# generated by test/vectors/generate.py; do not edit",
             "# the first rows are full rows of the two tables; then one column at",
             "# a time, and rows with no column at all (not insertable, hash only)"]
    for table, cols in ROWS:
        lines.append("\t".join(rows_line(table, cols)))
    files["rows.tsv"] = lines

    lines = ["# chain_id<TAB>chain_lane<TAB>chain_seq<TAB>prev<TAB>row_hash<TAB>chain_hash (section 4)",
             "# generated by test/vectors/generate.py; do not edit"]
    for chain, lane, seq, prev, row, link in link_cases():
        lines.append("\t".join([str(chain), str(lane), str(seq),
                                prev.hex(), row.hex(), link.hex()]))
    files["links.tsv"] = lines

    lines = ["# table<TAB>tenant (\\N for NULL)<TAB>retention_policy (\\N for NULL)<TAB>chain_id (section 4)",
             "# generated by test/vectors/generate.py; do not edit"]
    for table, tenant, *policy in CHAINS:
        policy = policy[0] if policy else None
        lines.append("\t".join([table, chains_field(tenant), chains_field(policy),
                                str(chain_id(table, tenant, policy))]))
    files["chains.tsv"] = lines
    return {name: "\n".join(ls) + "\n" for name, ls in files.items()}


# ---------------------------------------------------------------- section 7

def erasures_hash(entries):
    """The erasures_hash of an erase event over its entries, each
    (table, row_id, [erased column names], row_hash_after bytes)."""
    out = b"tool_audit erasures 1\0"
    for table, row_id, cols, after in sorted(entries, key=lambda e: (e[0].encode("utf-8"), e[1])):
        t = table.encode("utf-8")
        out += bytes([len(t)]) + t + struct.pack(">q", row_id) + struct.pack(">I", len(cols))
        for c in cols:
            b = c.encode("utf-8")
            out += bytes([len(b)]) + b
        out += after
    return hashlib.sha256(out).hexdigest()


def _h(text):
    return hashlib.sha256(text.encode("utf-8")).digest()


ERASURE_CASES = [
    [],
    [("tool_calls", 1, ["arguments"], _h("a"))],
    [("tool_calls", 12, ["arguments", "client_ip", "error", "result_summary",
                         "session_metadata", "subject_id", "user_agent"], _h("b"))],
    [("tool_calls", 7, [], _h("c"))],
    [("admin_events", 3, ["actor", "metadata", "payload"], _h("d")),
     ("tool_calls", 2, ["subject_id"], _h("e")),
     ("tool_calls", 10, ["user_id"], _h("f"))],
    [("tool_calls", 4611686018427387904, ["purpose"], _h("g")),
     ("tool_calls", 9223372036854775807, ["model"], _h("h"))],
    [("tool_calls", 5, ["naïve_col"], _h("i"))],
]


def render_erasures():
    lines = ["# entries as [[table, row_id, [erased columns], row_hash_after hex], ...] in",
             "# (table, row_id) order<TAB>erasures_hash (doc/canonical-encoding.md section 7)",
             "# generated by test/vectors/generate.py; do not edit"]
    for entries in ERASURE_CASES:
        ordered = sorted(entries, key=lambda e: (e[0].encode("utf-8"), e[1]))
        text = json.dumps([[t, r, c, a.hex()] for t, r, c, a in ordered],
                          ensure_ascii=False, separators=(",", ":"))
        lines.append(text + "\t" + erasures_hash(entries))
    return {"erasures.tsv": "\n".join(lines) + "\n"}


# ---------------------------------------------------------------- section 8

SECSTATE_DOMAIN = b"tool_audit security state 1\0"


def secstate_row(cols):
    out = struct.pack(">I", len(cols))
    for c in cols:
        if c is None:
            out += struct.pack(">I", 0xFFFFFFFF)
        else:
            b = c.encode("utf-8")
            out += struct.pack(">I", len(b)) + b
    return out


def secstate_hash(name, rows):
    """A component's hash over its rows (lists of text or None)."""
    n = name.encode("utf-8")
    out = SECSTATE_DOMAIN + bytes([len(n)]) + n + struct.pack(">I", len(rows))
    for enc in sorted(secstate_row(r) for r in rows):
        out += enc
    return hashlib.sha256(out).hexdigest()


def secstate_overall(pairs):
    out = SECSTATE_DOMAIN
    for name, h in pairs:
        n = name.encode("utf-8")
        out += bytes([len(n)]) + n + bytes.fromhex(h)
    return hashlib.sha256(out).hexdigest()


SECSTATE_CASES = [
    ("rls", []),
    ("rls", [["tool_calls", "true", "false"]]),
    ("rls", [["tool_calls", "true", "false"], ["admin_events", "true", "false"],
             ["alerts", "true", "true"]]),
    ("policies", [["tool_calls.reader_tenant", "r", "true", "{tool_audit_reader}",
                   "(tenant_id = ANY (tool_audit.bound_tenants()))", None],
                  ["tool_calls.hide_one", "r", "false", "{PUBLIC}",
                   "(subject_id IS DISTINCT FROM 'patient_1'::text)", None]]),
    ("functions", [["tool_audit.bound_tenants()", "sql", "\n    SELECT 1\n", None,
                    "{\"search_path=pg_catalog, pg_temp\"}", "true", "false", "false", "s",
                    "u", "f", "text[]"],
                   ["tool_audit.verify(timestamp with time zone)", "c", "verify",
                    "$libdir/tool_audit", None, "false", "false", "false", "v", "u", "f",
                    "TABLE(table_name text)"]]),
    ("tenant_bindings", [["clinic_reader", "clinic_a"], ["clinic_reader", "clinic_b"],
                         ["naïve", ""]]),
    # a prefix sorts first; an empty string is not NULL
    ("grants", [["a", None, ""], ["a", None], ["a"], ["", "\t"]]),
]


def render_security_state():
    lines = ["# component<TAB>rows as a JSON array of arrays of strings and nulls<TAB>its hash;",
             "# \"overall\"<TAB>[[component, hash], ...]<TAB>the overall hash",
             "# (doc/canonical-encoding.md section 8); generated by test/vectors/generate.py; do not edit"]
    pairs = []
    for name, rows in SECSTATE_CASES:
        h = secstate_hash(name, rows)
        lines.append(name + "\t" + json.dumps(rows, ensure_ascii=False, separators=(",", ":")) + "\t" + h)
        pairs.append([name, h])
    for sel in (pairs[:1], pairs[1:4], []):
        lines.append("overall\t" + json.dumps(sel, separators=(",", ":")) + "\t" + secstate_overall(sel))
    return {"security_state.tsv": "\n".join(lines) + "\n"}


def main():
    check = "--check" in sys.argv[1:]
    differ = False
    for name, text in {**render(), **render_erasures(), **render_security_state()}.items():
        path = os.path.join(HERE, name)
        if check:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    print("%s is out of date" % name)
                    differ = True
        else:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()

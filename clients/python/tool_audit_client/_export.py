"""The self-check of a JSONL export (tool_audit.export_jsonl()), without the
database: every link recomputed as doc/reports.md and
doc/canonical-encoding.md section 4 describe:

    chain_hash = SHA-256("tool_audit link 1" 0x00 || chain_id (int8, big endian)
                         || chain_lane (int4) || chain_seq (int8)
                         || previous chain_hash (32 zero bytes at position 1)
                         || row_hash)
"""

import hashlib
import json
import struct
from typing import Iterable, Union

_TAG = b"tool_audit link 1\x00"


def _link(chain_id: int, lane: int, seq: int, prev: bytes, row_hash: bytes) -> bytes:
    return hashlib.sha256(_TAG + struct.pack(">qiq", chain_id, lane, seq) + prev
                          + row_hash).digest()


def verify_export(lines: Iterable[Union[str, dict]]) -> dict:
    """Check an export's links. lines: JSONL text lines (or parsed dicts).
    Returns {"rows": n, "links_checked": n, "ok": bool, "problems": [text],
    "last": {(table, chain_id, lane): (seq, chain_hash hex)}}. A lane whose
    first exported row is not at position 1 (a window of a longer chain)
    starts from that row, unchecked: compare it with the previous window's
    last, or with a signed digest."""
    lanes = {}
    rows = 0
    problems = []
    for line in lines:
        if isinstance(line, str):
            if not line.strip():
                continue
            doc = json.loads(line)
        else:
            doc = line
        rows += 1
        key = (doc["table"], int(doc["chain_id"]), int(doc["chain_lane"]))
        lanes.setdefault(key, []).append(doc)
    checked = 0
    last = {}
    for key, docs in lanes.items():
        table, chain_id, lane = key
        docs.sort(key=lambda d: int(d["chain_seq"]))
        prev = None
        prev_seq = None
        for doc in docs:
            seq = int(doc["chain_seq"])
            stored = bytes.fromhex(doc["chain_hash"])
            if prev is None and seq != 1:
                prev, prev_seq = stored, seq   # window start: nothing to link to
                continue
            if prev_seq is not None and seq != prev_seq + 1:
                problems.append(f"{table} chain {chain_id}/{lane}: gap before position {seq}")
            want = _link(chain_id, lane, seq, prev if prev is not None else bytes(32),
                         bytes.fromhex(doc["row_hash"]))
            checked += 1
            if want != stored:
                problems.append(f"{table} chain {chain_id}/{lane} position {seq} (id {doc['id']}): "
                                f"link does not match")
            prev, prev_seq = stored, seq
        last[key] = (prev_seq, prev.hex() if prev is not None else None)
    return {"rows": rows, "links_checked": checked, "ok": not problems,
            "problems": problems, "last": last}

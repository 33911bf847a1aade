// The self-check of a JSONL export (tool_audit.export_jsonl()), without the
// database: every link recomputed as doc/reports.md and
// doc/canonical-encoding.md section 4 describe:
//   chain_hash = SHA-256("tool_audit link 1" 0x00 || chain_id (int8, big endian)
//                        || chain_lane (int4) || chain_seq (int8)
//                        || previous chain_hash (32 zero bytes at position 1) || row_hash)
// chain_id is read as a BigInt from the JSON string tool_audit 1.4 writes; a
// JSON number beyond 2^53 (exports of 1.2 and 1.3) has lost its value in
// JSON.parse and is reported, not guessed.
import { createHash } from "node:crypto";

export interface ExportCheck {
  rows: number;
  linksChecked: number;
  ok: boolean;
  problems: string[];
  /** per lane ("table chain_id/lane"): the last position and chain_hash, to
   *  compare with the next window's start or a signed digest */
  last: Map<string, { seq: bigint; chainHash: string }>;
}

const TAG = Buffer.from("tool_audit link 1\u0000", "latin1");

function link(chainId: bigint, lane: number, seq: bigint, prev: Buffer, rowHash: Buffer): Buffer {
  const pos = Buffer.alloc(20);
  pos.writeBigInt64BE(chainId, 0);
  pos.writeInt32BE(lane, 8);
  pos.writeBigInt64BE(seq, 12);
  return createHash("sha256").update(TAG).update(pos).update(prev).update(rowHash).digest();
}

function bigintOf(v: unknown, what: string, problems: string[]): bigint | null {
  if (typeof v === "string" && /^-?[0-9]+$/.test(v)) return BigInt(v);
  if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
  problems.push(`${what} ${JSON.stringify(v)} is not an exact integer (a JSON number beyond 2^53 ` +
                `loses its value: export with tool_audit 1.4 or later, which writes it as a string)`);
  return null;
}

/** Check an export's links. lines: the JSONL lines (empty ones skipped). A
 *  lane whose first exported row is not at position 1 (a window of a longer
 *  chain) starts from that row, unchecked. */
export function verifyExport(lines: Iterable<string>): ExportCheck {
  const problems: string[] = [];
  const lanes = new Map<string, Array<{ doc: any; chainId: bigint; lane: number; seq: bigint }>>();
  let rows = 0;
  for (const line of lines) {
    if (!line.trim()) continue;
    const doc = JSON.parse(line);
    rows++;
    const chainId = bigintOf(doc.chain_id, `${doc.table} id ${doc.id}: chain_id`, problems);
    const seq = bigintOf(doc.chain_seq, `${doc.table} id ${doc.id}: chain_seq`, problems);
    if (chainId === null || seq === null) continue;
    const lane = Number(doc.chain_lane);
    const key = `${doc.table} ${chainId}/${lane}`;
    if (!lanes.has(key)) lanes.set(key, []);
    lanes.get(key)!.push({ doc, chainId, lane, seq });
  }
  let linksChecked = 0;
  const last = new Map<string, { seq: bigint; chainHash: string }>();
  for (const [key, docs] of lanes) {
    docs.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
    let prev: Buffer | null = null;
    let prevSeq: bigint | null = null;
    for (const { doc, chainId, lane, seq } of docs) {
      const stored = Buffer.from(doc.chain_hash, "hex");
      if (prev === null && seq !== 1n) { prev = stored; prevSeq = seq; continue; }
      if (prevSeq !== null && seq !== prevSeq + 1n) problems.push(`${key}: gap before position ${seq}`);
      const want = link(chainId, lane, seq, prev ?? Buffer.alloc(32), Buffer.from(doc.row_hash, "hex"));
      linksChecked++;
      if (!want.equals(stored)) problems.push(`${key} position ${seq} (id ${doc.id}): link does not match`);
      prev = stored;
      prevSeq = seq;
    }
    if (prev !== null && prevSeq !== null) last.set(key, { seq: prevSeq, chainHash: prev.toString("hex") });
  }
  return { rows, linksChecked, ok: problems.length === 0, problems, last };
}

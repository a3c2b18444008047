"""Shared-state writes in the reference ingest (issue #18, PROTOCOL.md Part 7): every device's
local state writes go upstream as idempotent commands (topic `state/{collection}`, id `st-…`,
payload a `0x30` Writes body with the writes of one persist op), drained like sales. ingest.py stores the
command itself; `store_state_write` also decodes the payload and keeps the write in its own
table, `state_writes`, so the cloud holds the venue's state, not opaque bytes; `documents`
merges them by the same last-writer-wins rules as the devices (docs/state.md "The order").
Kept apart from ingest.py so the envelope and trust code and this can change independently.
Standard library only."""
import hashlib, json, struct

TYPE_WRITES = 0x30
OPS = ("put", "patch", "delete", "increment")

SCHEMA = ("CREATE TABLE IF NOT EXISTS state_writes(id TEXT PRIMARY KEY, collection TEXT, key TEXT, writer TEXT,"
          " hlc TEXT, seq INTEGER, op TEXT, updated_at INTEGER, fields TEXT, counter TEXT, delta INTEGER,"
          " total INTEGER, received_at INTEGER)")


class BadState(ValueError):
    """A state payload that does not decode (PROTOCOL.md Part 7 §2-3)."""


class _R:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        if n < 0 or self.i + n > len(self.b):
            raise BadState("truncated")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def varint(self):
        v = shift = 0
        for n in range(10):
            b = self.u8()
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                if v >> 64:
                    raise BadState("varint over 64 bits")
                return v
            shift += 7
        raise BadState("varint over 10 bytes")

    def zigzag(self):
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def text(self):
        return self.take(self.varint()).decode("utf-8")

    def name(self):
        n = self.u8()
        if n == 0:
            raise BadState("empty name")
        return self.take(n).decode("utf-8")

    def ident(self):
        n = self.u8()
        if not 1 <= n <= 64:
            raise BadState("bad id")
        s = self.take(n).decode("ascii")
        if not all(c.isalnum() or c in "._-" for c in s):
            raise BadState("bad id")
        return s


def decode_writes(body):
    """A `0x30` Writes body -> (collection, [write]); each write a dict with key, writer, hlc,
    seq, op, updated_at (or None), context {device: hlc}, fields [(name, json text)] for put and
    patch, counter/delta/total for increment, proof bytes. Raises BadState."""
    r = _R(bytes(body))
    if r.u8() != TYPE_WRITES:
        raise BadState("not a Writes body")
    collection = r.ident()
    table = [r.ident() for _ in range(r.varint())]
    if len(table) > 255 or len(set(table)) != len(table):
        raise BadState("bad device table")

    def ref():
        i = r.u8()
        if i >= len(table):
            raise BadState("ref out of range")
        return table[i]

    out, nkeys = [], r.varint()
    if nkeys < 1:
        raise BadState("no key")
    for _ in range(nkeys):
        key = r.text()
        if not 1 <= len(key.encode()) <= 256:
            raise BadState("bad key")
        nwrites = r.varint()
        if nwrites < 1:
            raise BadState("no write")
        for _ in range(nwrites):
            w = {"key": key, "writer": ref(), "hlc": r.u64(), "seq": r.varint()}
            flags = r.u8()
            if flags & ~0x0F:
                raise BadState("unknown flags")
            w["op"] = OPS[flags & 3]
            w["updated_at"] = r.u64() if flags & 4 else None
            w["context"] = {}
            for _ in range(r.varint()):
                d, h = ref(), r.u64()
                w["context"][d] = max(h, w["context"].get(d, 0))
            if w["op"] in ("put", "patch"):
                w["fields"] = [(r.name(), r.text()) for _ in range(r.varint())]
                for _, v in w["fields"]:
                    json.loads(v)  # one complete JSON value each (ValueError otherwise)
                names = [n.encode() for n, _ in w["fields"]]
                if names != sorted(set(names)) or (w["op"] == "patch" and not names):
                    raise BadState("bad fields")
            elif w["op"] == "increment":
                w["counter"], w["delta"], w["total"] = r.name(), r.zigzag(), r.zigzag()
            w["proof"] = r.take(r.u8()) if flags & 8 else b""
            out.append(w)
    if r.i != len(r.b):
        raise BadState("trailing bytes")
    return collection, out


def store_state_write(cur, cmd, now):
    """Called by Ingest.store for a stored command whose topic is `state/…`, inside its batch
    transaction. A command carries the writes of one persist op (one or many, PROTOCOL.md Part 7
    §4); each write is kept once by its own id (`upstream_id`: `st-` + a hash of collection, key,
    writer, HLC), so a write is stored once however often, and in whichever command, it comes.
    A payload that does not decode, or a write whose writer is not the command's origin (the
    origin signature vouches for the origin only), is not kept (nothing of that command is) and
    the reason is returned; None when kept."""
    try:
        collection, writes = decode_writes(cmd["payload"])
    except (BadState, ValueError, UnicodeDecodeError) as e:
        return "bad_state_payload: %s" % e
    if cmd["topic"] != "state/" + collection:
        return "bad_state_topic"
    if any(w["writer"] != cmd["origin"] for w in writes):
        return "bad_state_writer"
    cur.execute(SCHEMA)
    for w in writes:
        fields = json.dumps([[n, v] for n, v in w.get("fields", [])])
        cur.execute("INSERT OR IGNORE INTO state_writes(id, collection, key, writer, hlc, seq, op, updated_at, fields,"
                    " counter, delta, total, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (upstream_id(collection, w["key"], w["writer"], w["hlc"]), collection, w["key"], w["writer"], "%016x" % w["hlc"], w["seq"], w["op"], w["updated_at"],
                     fields, w.get("counter"), w.get("delta"), w.get("total"), now))
    return None


def _order(w):
    """docs/state.md "The order": (has updatedAt, updatedAt, HLC, writer bytes)."""
    return (w["updated_at"] is not None, w["updated_at"] or 0, w["hlc"], w["writer"].encode())


def document(writes):
    """The JSON text of a key's document from its writes (PROTOCOL.md Part 7 §4 "Document"),
    or None when its greatest write is a delete (or it has none)."""
    if not writes:
        return None
    top = max(writes, key=_order)
    if top["op"] == "delete":
        return None
    floors = [w for w in writes if w["op"] in ("put", "delete")]
    floor = max(floors, key=_order) if floors else None
    fields = {}
    names = {n for w in writes if w["op"] in ("put", "patch") for n, _ in w["fields"]}
    for n in names:
        cands = [w for w in writes if w["op"] == "patch" and any(f == n for f, _ in w["fields"])]
        if floor is not None:
            cands.append(floor)
        win = max(cands, key=_order)
        val = dict(win.get("fields", [])).get(n)
        if val is not None:
            fields[n] = val
    lanes = {}
    for w in writes:
        if w["op"] == "increment":
            k = (w["counter"], w["writer"])
            if k not in lanes or _order(w) > _order(lanes[k]):
                lanes[k] = w
    counters = {}
    for (c, _), w in lanes.items():
        counters[c] = counters.get(c, 0) + w["total"]
    for c, v in counters.items():
        fields[c] = str(max(-(1 << 63), min((1 << 63) - 1, v)))
    return "{" + ",".join("%s:%s" % (json.dumps(n, ensure_ascii=False), fields[n]) for n in sorted(fields, key=str.encode)) + "}"


def documents(db, collection):
    """{key: JSON text} of a collection as the cloud holds it (keys deleted last left out)."""
    try:
        rows = db.execute("SELECT key, writer, hlc, op, updated_at, fields, counter, total FROM state_writes"
                          " WHERE collection = ?", (collection,)).fetchall()
    except Exception:  # no state write yet: no table
        return {}
    by_key = {}
    for key, writer, hlc, op, updated_at, fields, counter, total in rows:
        by_key.setdefault(key, []).append({"writer": writer, "hlc": int(hlc, 16), "op": op, "updated_at": updated_at,
                                           "fields": [tuple(f) for f in json.loads(fields)], "counter": counter,
                                           "total": total})
    out = {}
    for key, ws in by_key.items():
        doc = document(ws)
        if doc is not None:
            out[key] = doc
    return out


def upstream_id(collection, key, writer, hlc):
    """PROTOCOL.md Part 7 §4 "Upstream command": the command id of a write."""
    h = hashlib.sha256(b"vm-state/upstream\0")
    for part in (collection, key, writer):
        b = part.encode()
        h.update(struct.pack(">I", len(b)) + b)
    h.update(struct.pack(">Q", hlc))
    return "st-" + h.hexdigest()[:32]


def self_test(vectors, check):
    """PROTOCOL.md Part 7's examples (tests/vectors/state.json) decoded here."""
    b = {k: bytes.fromhex(v) for k, v in vectors["bodies"].items()}
    col, ws = decode_writes(b["writes_put"])
    check("state: writes_put", (col, [(w["key"], w["writer"], w["hlc"], w["seq"], w["op"], w["fields"]) for w in ws]),
          ("products", [("sku-1", "pos-1", 0x019bfee551000003, 1, "put", [("name", '"Tea"'), ("price", "3")])]))
    up = vectors["upstream_command"]
    check("state: upstream id", upstream_id(col, ws[0]["key"], ws[0]["writer"], ws[0]["hlc"]), up["id"])
    batch = vectors["upstream_batch"]
    bcol, bws = decode_writes(bytes.fromhex(batch["payload"]))
    check("state: batch write ids", [upstream_id(bcol, w["key"], w["writer"], w["hlc"]) for w in bws], batch["write_ids"])
    check("state: batch id is its first write's", batch["id"], batch["write_ids"][0])
    check("state: batch topic", batch["topic"], "state/" + bcol)
    col2, pd = decode_writes(b["writes_patch_delete"])
    check("state: patch, delete", [(w["key"], w["op"], w["updated_at"] is not None, len(w["proof"])) for w in pd],
          [("sku-1", "patch", True, 2), ("sku-2", "delete", False, 0)])
    check("state: document", document(ws + [pd[0]]), vectors["document"]["json"])
    _, inc = decode_writes(b["writes_increment"])
    check("state: increment", [(w["counter"], w["delta"]) for w in inc], [("qty", -5)])
    check("state: delete hides", document([ws[0], dict(ws[0], op="delete", hlc=ws[0]["hlc"] + 1)]), None)
    for name in ("writes_put", "writes_increment"):
        for cut in (1, len(b[name]) - 1):
            try:
                decode_writes(b[name][:cut])
                check("state: cut %s at %d" % (name, cut), "accepted", "refused")
            except BadState:
                check("state: cut", 1, 1)
    try:
        decode_writes(b["writes_put"] + b"\x00")
        check("state: trailing byte", "accepted", "refused")
    except BadState:
        check("state: trailing byte", 1, 1)


def main(argv=None):
    """`state_ingest.py --db FILE [--collection NAME]`: what the ingest holds of the shared state,
    as JSON: {"writes": n, "ids": [...], "documents": {collection: {key: document}}} (for tests)."""
    import argparse, os, sqlite3
    p = argparse.ArgumentParser(description="prints the shared state the reference ingest stored")
    p.add_argument("--db", required=True)
    p.add_argument("--collection", action="append", help="only these collections")
    a = p.parse_args(argv)
    out = {"writes": 0, "ids": [], "documents": {}}
    if os.path.exists(a.db):  # sqlite3 would create an empty file
        db = sqlite3.connect(a.db, timeout=5)
        try:
            rows = db.execute("SELECT id, collection FROM state_writes ORDER BY received_at, id").fetchall()
        except sqlite3.OperationalError:  # no state write yet
            rows = []
        out["writes"], out["ids"] = len(rows), [r[0] for r in rows]
        for c in sorted(set(r[1] for r in rows)):
            if not a.collection or c in a.collection:
                out["documents"][c] = {k: json.loads(v) for k, v in documents(db, c).items()}
        db.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    import sys
    sys.dont_write_bytecode = True
    sys.exit(main())

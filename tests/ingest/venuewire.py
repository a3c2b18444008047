"""The venuemesh wire format for the reference ingest: the signed envelope
(PROTOCOL.md Part 2: layout, opening order, replay window, HLC) and the upload
and cloud-ack bodies (src/replication/wire.rs). Standard library only."""
import collections, hashlib, hmac, struct

# --- envelope (PROTOCOL.md Part 2) -------------------------------------------
VERSION, KIND_CLOUD_ACK, KIND_UPLOAD = 1, 6, 12
TYPE_CLOUD_ACK, TYPE_UPLOAD = 0x12, 0x13
TAG_LEN, MIN_LEN, MAX_BODY, IDS_PER_ACK = 32, 67, 262144, 1000
ID_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class Reject(Exception):
    """A message we drop; `args[0]` is the counter name (stats, logs)."""


def valid_id(b):
    return 1 <= len(b) <= 64 and all(c in ID_BYTES for c in b)


def seal(key, key_id, venue, sender, kind, counter, term, hlc, body):
    v, s = venue.encode(), sender.encode()
    head = bytes([VERSION, kind, key_id, len(v)]) + v + bytes([len(s)]) + s
    msg = head + struct.pack(">QQQI", counter, term, hlc, len(body)) + body
    return msg + hmac.new(key, msg, hashlib.sha256).digest()


def open_envelope(data, key, key_id, venue, max_body=MAX_BODY):
    """Part 2 §1 "How a receiver opens an envelope", in that order."""
    if not data:
        raise Reject("truncated")
    if data[0] != VERSION:
        raise Reject("bad_version")
    if len(data) < MIN_LEN:
        raise Reject("truncated")
    if len(data) > 65 + 128 + max_body:  # before hashing: no hashing megabytes
        raise Reject("too_large")
    if data[2] != key_id:
        raise Reject("unknown_key")
    signed, tag = data[:-TAG_LEN], data[-TAG_LEN:]
    if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), tag):
        raise Reject("bad_signature")
    r = Reader(signed[3:], "malformed")
    ven, snd = r.id(), r.id()
    counter, term, hlc, body_len = struct.unpack(">QQQI", r.take(28))
    if body_len > max_body:
        raise Reject("too_large")
    if len(r.rest) != body_len:
        raise Reject("malformed")
    if ven != venue:
        raise Reject("wrong_venue")
    return dict(kind=data[1], sender=snd, counter=counter, term=term, hlc=hlc, body=bytes(r.rest))


class Reader:
    """Bounds-checked big-endian reads; every failure is Reject(reason)."""

    def __init__(self, data, reason):
        self.rest, self.reason = memoryview(data), reason

    def take(self, n):
        if len(self.rest) < n:
            raise Reject(self.reason)
        out, self.rest = bytes(self.rest[:n]), self.rest[n:]
        return out

    def uint(self, fmt):
        return struct.unpack(">" + fmt, self.take(struct.calcsize(fmt)))[0]

    def id(self):  # u8 length + 1..=64 bytes of the id alphabet
        raw = self.take(self.uint("B"))
        if not valid_id(raw):
            raise Reject(self.reason)
        return raw.decode()

    def text(self, max_len):  # u16 length + 1..=max_len bytes of UTF-8
        n = self.uint("H")
        if not 1 <= n <= max_len:
            raise Reject(self.reason)
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(self.reason) from None

    def count(self):  # u16, never 0
        n = self.uint("H")
        if n == 0:
            raise Reject(self.reason)
        return n


# --- replication bodies (src/replication/wire.rs) ----------------------------
def decode_upload(body):
    """0x13 Upload -> (batch, [cmd]); bytes after the known fields are ignored."""
    r = Reader(body, "bad_body")
    if r.uint("B") != TYPE_UPLOAD:
        raise Reject("kind_mismatch")
    batch, cmds = r.uint("Q"), []
    for _ in range(r.count()):
        cid, origin, topic = r.text(128), r.id(), r.text(256)
        hlc, created_at = r.uint("Q"), r.uint("Q")
        cmds.append(dict(id=cid, origin=origin, topic=topic, hlc=hlc, created_at=created_at, payload=r.take(r.uint("I"))))
    return batch, cmds


def encode_upload(batch, cmds):  # for the self-test; the ingest only reads uploads
    out = [struct.pack(">BQH", TYPE_UPLOAD, batch, len(cmds))]
    for c in cmds:
        i, o, t = c["id"].encode(), c["origin"].encode(), c["topic"].encode()
        out += [struct.pack(">H", len(i)), i, bytes([len(o)]), o, struct.pack(">H", len(t)), t,
                struct.pack(">QQI", c["hlc"], c["created_at"], len(c["payload"])), c["payload"]]
    return b"".join(out)


def encode_cloud_ack(ids):
    out = [struct.pack(">BH", TYPE_CLOUD_ACK, len(ids))]
    for i in ids:
        b = i.encode()
        out += [struct.pack(">H", len(b)), b]
    return b"".join(out)


class ReplayWindow:
    """Part 2 §6: per sender the highest counter H and a 1024-bit map of H-1023..=H
    (bit k = counter H-k), at most 256 senders, least recently heard evicted."""

    def __init__(self, senders=256, size=1024):
        self.w, self.senders, self.size = collections.OrderedDict(), senders, size

    def check(self, sender, c):
        if sender not in self.w:
            if len(self.w) >= self.senders:
                self.w.popitem(last=False)
            self.w[sender] = (c, 1)
            return "accept"
        self.w.move_to_end(sender)
        h, seen = self.w[sender]
        if c > h:
            shift = c - h
            self.w[sender] = (c, ((seen << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1)
            return "accept"
        if h - c >= self.size:
            return "too_old"
        if seen >> (h - c) & 1:
            return "duplicate"
        self.w[sender] = (h, seen | 1 << (h - c))
        return "accept"


class Hlc:
    """Part 2 §7: wall_ms << 16 | logical; +1 carries into the wall."""

    def __init__(self):
        self.last = 0

    def send(self, now_ms):
        self.last = now_ms << 16 if now_ms > self.last >> 16 else min(self.last + 1, (1 << 64) - 1)
        return self.last

    def recv(self, remote, now_ms, max_drift_ms=60000):
        if remote >> 16 <= now_ms + max_drift_ms:  # a remote far ahead is not merged
            self.last = max(self.last, remote)

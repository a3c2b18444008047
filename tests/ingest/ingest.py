#!/usr/bin/env python3
"""Reference ingest for venuemesh (issue #7): reads the hub's UPLOAD batches on
vm/{venue}/up, stores the commands in SQLite keyed by command id, then publishes
a signed CLOUD_ACK on vm/{venue}/cloud. Standard library only (Python >= 3.9), so
it doubles as proof that PROTOCOL.md is enough to join a mesh from another
language. `--self-test` checks the documented byte examples. See README.md.
The wire format is in venuewire.py, the MQTT client in mqttlite.py (same folder)."""
import argparse, collections, json, os, random, signal, sqlite3, struct, sys, time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
from venuewire import (KIND_CLOUD_ACK, KIND_UPLOAD, IDS_PER_ACK, Reject, Hlc, ReplayWindow, valid_id, seal,  # noqa: E402
                       open_envelope, decode_upload, encode_upload, encode_cloud_ack)
from mqttlite import CONNECT, PUBLISH, OVERSIZED, MAX_PACKET, Decoder, Mqtt, ProtocolError, mstr, packet  # noqa: E402


def log(msg):
    print("[ingest] " + msg, file=sys.stderr, flush=True)


class Ingest:
    def __init__(self, a, key):
        self.a, self.key = a, key
        self.up, self.cloud = "vm/%s/up" % a.venue, "vm/%s/cloud" % a.venue
        self.window, self.hlc, self.subscribed = ReplayWindow(), Hlc(), 0
        self.counter = int(time.time() * 1000) * 1024  # Part 2 §5, no stored ceiling
        self.stats = collections.Counter()
        self.db = sqlite3.connect(a.db, isolation_level=None)  # explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an ack means durable, also on power loss
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("CREATE TABLE IF NOT EXISTS commands(id TEXT PRIMARY KEY, origin TEXT, topic TEXT, hlc TEXT,"
                        " created_at INTEGER, payload BLOB, received_at INTEGER, uploads INTEGER)")

    def on_message(self, topic, payload):
        try:
            self.handle(topic, payload)
        except Reject as e:
            self.stats[e.args[0]] += 1
            log("dropped a message on %s (%d bytes): %s" % (topic, len(payload), e.args[0]))
        except Exception as e:  # e.g. disk full: no ack, the hub retries
            self.stats["error"] += 1
            log("error on %s: %r" % (topic, e))

    def handle(self, topic, payload):
        if topic != self.up:
            raise Reject("bad_topic")
        env = open_envelope(payload, self.key, self.a.key_id, self.a.venue)
        seen = self.window.check(env["sender"], env["counter"])
        if seen != "accept":
            raise Reject(seen)  # the first copy was stored and acked
        if env["kind"] != KIND_UPLOAD:
            raise Reject("kind_mismatch")
        now = int(time.time() * 1000)
        if env["hlc"] >> 16 < now - self.a.max_age_ms:
            raise Reject("stale_event")  # replay windows are empty after a restart
        self.hlc.recv(env["hlc"], now)
        batch, cmds = decode_upload(env["body"])
        if any(c["created_at"] >= 1 << 63 for c in cmds):
            raise Reject("bad_body")  # SQLite INTEGER is signed 64-bit
        new = self.store(cmds, now)
        ids = list(dict.fromkeys(c["id"] for c in cmds))
        for i in range(0, len(ids), IDS_PER_ACK):
            self.counter += 1
            self.mqtt.publish(self.cloud, seal(self.key, self.a.key_id, self.a.venue, self.a.sender, KIND_CLOUD_ACK,
                                               self.counter, 0, self.hlc.send(int(time.time() * 1000)),
                                               encode_cloud_ack(ids[i:i + IDS_PER_ACK])))
        self.stats["batches"] += 1
        print(json.dumps({"batch": batch, "from": env["sender"], "ids": len(ids), "new": new}), flush=True)

    def store(self, cmds, now):
        """One transaction per batch, committed before any ack is published."""
        cur, new = self.db.cursor(), 0
        cur.execute("BEGIN IMMEDIATE")
        try:
            for c in cmds:
                cur.execute("INSERT OR IGNORE INTO commands VALUES (?,?,?,?,?,?,?,1)",
                            (c["id"], c["origin"], c["topic"], "%016x" % c["hlc"], c["created_at"], c["payload"], now))
                if cur.rowcount == 1:
                    new += 1
                else:
                    cur.execute("UPDATE commands SET uploads = uploads + 1 WHERE id = ?", (c["id"],))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return new

    def on_skip(self, reason, topic, size):
        """An oversized or malformed PUBLISH: skipped (acked), counted, logged; the connection stays."""
        self.stats[reason] += 1
        log("skipped a %s PUBLISH on %s (%d bytes)" % (reason, topic, size))

    def on_subscribed(self):
        self.subscribed += 1
        log("subscribed to %s (connection %d)" % (self.up, self.subscribed))
        if self.a.ready_file:  # rewritten on every (re)subscription: tests can wait for a reconnect
            tmp = self.a.ready_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"pid": os.getpid(), "subscribed": self.subscribed}, f)
            os.replace(tmp, self.a.ready_file)

    def run(self):
        stop = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.append(1))
        self.mqtt = Mqtt(self.a.host, self.a.port, "vm-ingest-%s-%d" % (self.a.venue, os.getpid()), self.up,
                         self.a.username, self.a.password, on_skip=self.on_skip)
        failures = 0
        while not stop:
            t0 = time.monotonic()
            try:
                self.mqtt.session(self.on_message, self.on_subscribed, lambda: bool(stop))
            except (OSError, ProtocolError) as e:
                log("broker %s: %s" % (self.a.broker, e))
            # Full-jitter backoff; a connection that lasted 10 s starts again from 0.
            failures = 0 if self.mqtt.connacked and time.monotonic() - t0 > 10 else failures
            until = time.monotonic() + random.uniform(0, min(5.0, 0.25 * 2 ** min(failures, 10)))
            failures += 1
            while not stop and time.monotonic() < until:
                time.sleep(0.05)
        log("stopping; stats %s" % json.dumps(dict(self.stats)))
        self.db.close()
        return 0


# --- self-test -------------------------------------------------------------------
def self_test():
    checks, failed = 0, []

    def check(name, got, want):
        nonlocal checks
        checks += 1
        if got != want:
            failed.append("%s: got %r, want %r" % (name, got, want))

    secret, hlc = b"venuemesh-test-secret-0123456789", 0x019bfee551000003
    env = seal(secret, 1, "demo-venue", "pos-1", 1, 42, 7, hlc, b"hello")  # Part 2 §1 test vector
    check("test vector", env.hex(), "0101010a64656d6f2d76656e756505706f732d31000000000000002a0000000000000007019bfee5510000030000000568656c6c6f"
          "c96281b89665a998f9748bd97a04ae3af19ec1b33de1c76981c04dc1ebf5015f")
    check("open", open_envelope(env, secret, 1, "demo-venue"),
          dict(kind=1, sender="pos-1", counter=42, term=7, hlc=hlc, body=b"hello"))
    hb = bytes.fromhex("0107000000000000000700100590076b696f736b2d3100100978" "0000000000000003")
    check("Part 3 §3.5 tag", seal(secret, 1, "demo-venue", "kiosk-1", 1, 42, 7, hlc, hb)[-32:].hex(),
          "66e74d816b74347b2753b909d969e6ef7890ea252afb3bf9f4b7409545ca541c")
    outcomes = set()
    for i in range(len(env) * 8):  # flipping any bit is rejected
        bad = bytearray(env)
        bad[i // 8] ^= 1 << (i % 8)
        try:
            open_envelope(bytes(bad), secret, 1, "demo-venue")
            outcomes.add("accepted")
        except Reject as e:
            outcomes.add(e.args[0])
    check("bit flips", outcomes, {"bad_version", "unknown_key", "bad_signature"})
    for name, data, key, venue, reason in [("empty", b"", secret, "demo-venue", "truncated"),
                                           ("cut", env[:-1], secret, "demo-venue", "bad_signature"),
                                           ("longer", env + b"\0", secret, "demo-venue", "bad_signature"),
                                           ("key", env, b"another-secret-0123456789", "demo-venue", "bad_signature"),
                                           ("venue", env, secret, "other", "wrong_venue")]:
        try:
            open_envelope(data, key, 1, venue)
            check(name, "accepted", reason)
        except Reject as e:
            check(name, e.args[0], reason)
    # src/replication/wire.rs `documented_examples`
    cmd = dict(id="c1", origin="pos-1", topic="sale", hlc=hlc, created_at=1769508000000, payload=b"hi")
    rep = "1000010002633105706f732d31000473616c65019bfee5510000030000019bfee55100000000026869"
    up = encode_upload(7, [cmd])
    check("upload", up.hex(), "13" + "0000000000000007" + rep[2:])
    check("decode upload", decode_upload(up), (7, [cmd]))
    check("decode upload + trailing", decode_upload(up + b"\x01"), (7, [cmd]))
    check("cloud ack", encode_cloud_ack(["c1", "c2"]).hex(), "1200020002633100026332")
    for bad in [b"", b"\x13", up[:-1], b"\x13" + bytes(8) + b"\0\0", b"\x12\0\1\0\2c1",
                up.replace(b"pos-1", b"pos 1"), up.replace(b"\x00\x02c1", b"\x00\x02\xff\xfe")]:
        try:
            decode_upload(bad)
            check("bad upload %s" % bad.hex(), "accepted", "rejected")
        except Reject:
            check("bad upload", 1, 1)
    w = ReplayWindow()
    check("replay", [w.check("a", c) for c in (100, 100, 99, 99, 2000, 976, 977, 977, 5)],
          ["accept", "duplicate", "accept", "duplicate", "accept", "too_old", "accept", "duplicate", "too_old"])
    h = Hlc()
    check("hlc", [h.send(1000), h.send(1000), h.send(999), h.send(1001)], [1000 << 16, (1000 << 16) + 1, (1000 << 16) + 2, 1001 << 16])
    # Part 1 §9 bytes, and the decoder over every split of a stream
    check("CONNECT", packet(CONNECT, 0, mstr(b"MQTT") + bytes([4, 2]) + struct.pack(">H", 30) + mstr(b"ab")).hex(),
          "100e00044d5154540402001e00026162")
    stream = bytes.fromhex("3b0700017400076869") + packet(PUBLISH, 0, mstr(b"t") + bytes(200)) + bytes.fromhex("40020007d000")
    want = [(3, 11, bytes.fromhex("00017400076869")), (3, 0, mstr(b"t") + bytes(200)), (4, 0, b"\x00\x07"), (13, 0, b"")]
    for cut in range(len(stream) + 1):
        d = Decoder()
        check("split at %d" % cut, d.feed(stream[:cut]) + d.feed(stream[cut:]), want)
    # An oversized PUBLISH between two small packets: skipped with its head kept, in any chunking.
    big = packet(PUBLISH, 2, mstr(b"vm/v/up") + b"\x00\x09" + bytes(MAX_PACKET))
    stream = bytes.fromhex("40020007") + big + bytes.fromhex("d000")
    want = [(4, 0, b"\x00\x07"), (OVERSIZED, 0x32, (len(big), mstr(b"vm/v/up") + b"\x00\x09" + bytes(65535 + 4 - 9 - 2))), (13, 0, b"")]
    for step in (1 << 20, 65536, 4093):
        d = Decoder()
        got = [x for i in range(0, len(stream), step) for x in d.feed(stream[i:i + step])]
        check("oversized in chunks of %d" % step, got, want)
        check("oversized: nothing held", len(d.buf), 0)
    for f in failed:
        print("FAIL " + f)
    print("self-test: %d checks, %d failed" % (checks, len(failed)))
    return 1 if failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", default="127.0.0.1:19883", help="host:port of a plain MQTT listener")
    p.add_argument("--venue")
    p.add_argument("--key", help="venue secret as a UTF-8 string")
    p.add_argument("--key-hex", help="venue secret as hex")
    p.add_argument("--key-id", type=int, default=1)
    p.add_argument("--db", help="SQLite file")
    p.add_argument("--sender", default="ingest", help="device id in our envelopes")
    p.add_argument("--username")
    p.add_argument("--password", help="prefer --password-file: a command line is visible to every user")
    p.add_argument("--password-file", help="file whose first line is the broker password")
    p.add_argument("--ready-file", help="written once subscribed (and after every resubscription)")
    p.add_argument("--max-age-ms", type=int, default=120000, help="drop uploads with an older HLC")
    p.add_argument("--self-test", action="store_true", help="check the documented byte examples, exit 0/1")
    a = p.parse_args(argv)
    if a.self_test:
        return self_test()
    if a.password_file:
        if a.password is not None:
            p.error("--password and --password-file exclude each other")
        try:
            with open(a.password_file, encoding="utf-8") as f:
                a.password = f.readline().rstrip("\r\n")
        except OSError as e:
            p.error("--password-file: %s" % e)
    if not a.venue or not a.db or (a.key is None) == (a.key_hex is None):
        p.error("--venue, --db and one of --key/--key-hex are required")
    try:
        key = a.key.encode() if a.key is not None else bytes.fromhex(a.key_hex)
    except ValueError:
        p.error("--key-hex must be hex digits")
    if not valid_id(a.venue.encode()) or not valid_id(a.sender.encode()):
        p.error("--venue and --sender must be 1-64 characters of A-Z a-z 0-9 . _ -")
    host, _, port = a.broker.rpartition(":")
    a.host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        p.error("--broker must be host:port")
    a.port = int(port)
    if len(key) < 16 or not 0 <= a.key_id <= 255:
        p.error("the key must be at least 16 bytes and --key-id 0..255")
    return Ingest(a, key).run()


if __name__ == "__main__":
    sys.exit(main())

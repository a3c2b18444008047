#!/usr/bin/env python3
"""Reference ingest for venuemesh (issues #7, #15): reads the hub's UPLOAD batches on
vm/{venue}/up (envelope v2: signed by the hub's device key, body encrypted), stores
only the commands their origin signed (chain to the venue root, not revoked) in SQLite
keyed by command id, then publishes a CLOUD_ACK whose body is a receipt signed with the
cloud key on vm/{venue}/cloud. It follows the CRLs retained on vm/{venue}/crl and the
content key rotations (KEY_UPDATE) retained on vm/{venue}/keys.
Python >= 3.9 with `cryptography` (Debian: python3-cryptography), so it doubles as
proof that PROTOCOL.md is enough to join a mesh from another language. `--self-test`
checks the documented byte examples. See README.md. The wire formats are in trust.py
and venuewire.py, the MQTT client in mqttlite.py (same folder)."""
import argparse, collections, hashlib, json, os, random, signal, sqlite3, struct, sys, time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
from venuewire import KIND_CLOUD_ACK, KIND_UPLOAD, IDS_PER_ACK, Reject, Hlc, ReplayWindow  # noqa: E402
from mqttlite import CONNECT, PUBLISH, OVERSIZED, MAX_PACKET, Decoder, Mqtt, ProtocolError, mstr, packet  # noqa: E402
import trust as tr  # noqa: E402
import state_ingest  # noqa: E402  (shared-state writes, issue #18)


def log(msg):
    print("[ingest] " + msg, file=sys.stderr, flush=True)


class Ingest:
    def __init__(self, a, cred):
        self.a = a
        self.trust, self.key, self.chain, self.sender, _epoch = cred  # the epoch: trust.send_epoch
        self.up, self.cloud = "vm/%s/up" % a.venue, "vm/%s/cloud" % a.venue
        self.crl, self.keys = "vm/%s/crl" % a.venue, "vm/%s/keys" % a.venue
        # Envelopes that carry their sender's chain (the hub claim, presence, heartbeats):
        # UPLOAD does not, so the ingest learns the hub's chain from these.
        self.chain_topics = ("vm/%s/hub" % a.venue, "vm/%s/presence/" % a.venue, "vm/%s/hb/" % a.venue)
        self.window, self.hlc, self.subscribed = ReplayWindow(), Hlc(), 0
        self.counter = int(time.time() * 1000) * 1024  # Part 2 §5, no stored ceiling
        self.stats = collections.Counter()
        self.db = sqlite3.connect(a.db, isolation_level=None)  # explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an ack means durable, also on power loss
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("CREATE TABLE IF NOT EXISTS commands(id TEXT PRIMARY KEY, origin TEXT, topic TEXT, hlc TEXT,"
                        " created_at INTEGER, payload BLOB, received_at INTEGER, uploads INTEGER, digest BLOB)")

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
        now = int(time.time() * 1000)
        if topic == self.crl:
            if payload:  # an empty retained message clears nothing: revocations are never undone
                self.trust.add_crl(payload, now)
                log("CRL: %d revoked key(s)" % len(self.trust.revoked))
            return
        self.trust.tick(now)
        if topic == self.keys:
            # Content key rotation (PROTOCOL.md Part 6 §6): the admin wraps the new key to the
            # cloud too, so the hub's uploads under it still open and our acks follow it.
            if payload:
                epoch = self.trust.add_key_update(payload, self.sender, self.key.seed, now)
                if epoch is not None:
                    self.stats["key_updates"] += 1
                    log("KEY_UPDATE: content key epoch %d (sending under %d)" % (epoch, self.trust.send_epoch))
            return
        if topic.startswith(self.chain_topics):
            if len(payload) > 3 and payload[0] == 2 and payload[2] & tr.FLAG_CHAIN:
                try:
                    self.trust.open(payload, now)  # verified, then its chain is cached
                except Reject:
                    pass  # not ours to count: devices count what they refuse
            return
        if topic != self.up:
            return  # vm/{venue}/# also brings the devices' own traffic and our acks
        env = self.trust.open(payload, now, replay=self.window.check)  # the first copy was stored and acked
        if env["kind"] != KIND_UPLOAD:
            raise Reject("kind_mismatch")
        if env["hlc"] >> 16 < now - self.a.max_age_ms:
            raise Reject("stale_event")  # replay windows are empty after a restart
        self.hlc.recv(env["hlc"], now)
        batch, chains, cmds = tr.decode_upload(env["body"])
        if any(c["created_at"] >= 1 << 63 for c in cmds):
            raise Reject("bad_body")  # SQLite INTEGER is signed 64-bit
        good, bad = self.trust.verified_cmds(chains, cmds, now)
        for cid, why in bad:  # never stored, never acked: the hub keeps them, a forger gets nothing
            self.stats[why] += 1
            log("refused command %s from %s: %s" % (cid, env["sender"], why))
        new, entries = self.store(good, now)
        for i in range(0, len(entries), IDS_PER_ACK):
            self.counter += 1
            receipt = tr.make_receipt(self.key, self.a.venue, now, entries[i:i + IDS_PER_ACK], self.chain)
            self.mqtt.publish(self.cloud, tr.seal(self.key, self.a.venue, self.sender, KIND_CLOUD_ACK, self.counter, 0,
                                                  self.hlc.send(int(time.time() * 1000)),
                                                  bytes([tr.TYPE_CLOUD_ACK]) + receipt, chain=self.chain,
                                                  content_key=self.trust.content_keys[self.trust.send_epoch],
                                                  epoch=self.trust.send_epoch))
        self.stats["batches"] += 1
        print(json.dumps({"batch": batch, "from": env["sender"], "ids": len(entries), "new": new,
                          "refused": len(bad)}), flush=True)

    def store(self, cmds, now):
        """One transaction per batch, committed before any ack is published. Returns the
        new rows and the receipt entries: each id with the digest of the row we hold, so
        a device whose record differs from ours never takes the receipt as its own."""
        cur, new, entries = self.db.cursor(), 0, {}
        cur.execute("BEGIN IMMEDIATE")
        try:
            for c in cmds:
                digest = tr.cmd_digest(c, c["sig"])
                cur.execute("INSERT OR IGNORE INTO commands(id, origin, topic, hlc, created_at, payload, received_at,"
                            " uploads, digest) VALUES (?,?,?,?,?,?,?,1,?)",
                            (c["id"], c["origin"], c["topic"], "%016x" % c["hlc"], c["created_at"], c["payload"], now,
                             digest))
                if cur.rowcount == 1:
                    new += 1
                else:
                    cur.execute("UPDATE commands SET uploads = uploads + 1 WHERE id = ?", (c["id"],))
                    digest = cur.execute("SELECT digest FROM commands WHERE id = ?", (c["id"],)).fetchone()[0]
                entries[c["id"]] = bytes(digest)
                if c["topic"].startswith("state/"):
                    self.store_state(cur, c, now)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return new, list(entries.items())

    def store_state(self, cur, c, now):
        """A shared-state write (topic state/…): also kept decoded (state_ingest.py). The command
        is stored and acked even when its payload is refused here: it was origin-signed, and a
        device would otherwise upload it for ever."""
        why = state_ingest.store_state_write(cur, c, now)
        if why:
            self.stats[why.split(":")[0]] += 1
            log("state write %s from %s not kept: %s" % (c["id"], c["origin"], why))

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
        self.mqtt = Mqtt(self.a.host, self.a.port, "vm-ingest-%s-%d" % (self.a.venue, os.getpid()), "vm/%s/#" % self.a.venue,
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
def _reject(f):
    """Runs f: its Reject reason, or "accepted"."""
    try:
        f()
        return "accepted"
    except Reject as e:
        return e.args[0]


def self_test():
    checks, failed = 0, []

    def check(name, got, want):
        nonlocal checks
        checks += 1
        if got != want:
            failed.append("%s: got %r, want %r" % (name, got, want))

    hlc, venue, now = 0x019bfee551000003, "demo-venue", int(time.time() * 1000)
    root, cloud, pos, rogue = (tr.Key(bytes([i]) * 32) for i in (1, 2, 3, 4))
    ck = bytes(range(32))
    cloud_chain = tr.encode_chain([tr.issue_cert(root, tr.ROLE_CLOUD, venue, "cloud", cloud.pk)])
    pos_chain = tr.encode_chain([tr.issue_cert(root, tr.ROLE_DEVICE, venue, "pos-1", pos.pk)])
    rogue_chain = tr.encode_chain([tr.issue_cert(root, tr.ROLE_DEVICE, venue, "pos-9", rogue.pk)])

    def trust():
        return tr.Trust(venue, root.pk, {1: ck})

    env = tr.seal(pos, venue, "pos-1", 1, 42, 7, hlc, b"hello", chain=pos_chain, content_key=ck, epoch=1)
    check("no cleartext", b"hello" in env, False)
    check("open", {k: v for k, v in trust().open(env, now).items() if k in ("sender", "counter", "term", "body")},
          dict(sender="pos-1", counter=42, term=7, body=b"hello"))
    outcomes = set()
    for i in range(len(env) * 8):  # flipping any bit is rejected
        bad = bytearray(env)
        bad[i // 8] ^= 1 << (i % 8)
        try:
            trust().open(bytes(bad), now)
            outcomes.add("accepted")
        except Reject as e:
            outcomes.add(e.args[0])
    check("bit flips: none accepted", "accepted" in outcomes, False)
    check("bit flips: signature", "bad_signature" in outcomes, True)
    bare = tr.seal(pos, venue, "pos-1", 12, 43, 0, hlc, b"x", content_key=ck, epoch=1)
    forged = tr.seal(rogue, venue, "pos-1", 12, 2 ** 64 - 2, 0, hlc, b"x", content_key=ck, epoch=1)
    t = trust()
    t.open(env, now)
    for name, data, reason in [("empty", b"", "truncated"), ("v1", b"\x01" + env[1:], "bad_version"),
                               ("unknown sender", bare, "unknown_sender"), ("cut", env[:-1], "malformed"),
                               ("as pos-1 with own chain", tr.seal(rogue, venue, "pos-1", 1, 1, 0, hlc, b"", chain=rogue_chain),
                                "bad_chain"),
                               ("device sends CLOUD_ACK", tr.seal(rogue, venue, "pos-9", 6, 1, 0, hlc, b"\x12", chain=rogue_chain),
                                "wrong_role"),
                               ("wrong content key", tr.seal(pos, venue, "pos-1", 1, 44, 0, hlc, b"", chain=pos_chain,
                                                             content_key=bytes(32), epoch=1), "bad_body")]:
        try:
            trust().open(data, now)
            check(name, "accepted", reason)
        except Reject as e:
            check(name, e.args[0], reason)
    for name, data, reason in [("cached chain", bare, "accepted"), ("another's key", forged, "bad_signature")]:
        try:
            t.open(data, now)
            check(name, "accepted", reason)
        except Reject as e:
            check(name, e.args[0], reason)
    cmd = dict(id="pos-1.c1", origin="pos-1", topic="sale", hlc=hlc, created_at=1769508000000, payload=b"hi")
    cmd["sig"] = tr.sign_cmd(pos, venue, cmd)
    evil = dict(cmd, id="pos-1.c2", payload=b"evil")
    evil["sig"] = tr.sign_cmd(rogue, venue, evil)  # a valid key, but not the origin's
    up = tr.encode_upload(7, [pos_chain, rogue_chain], [cmd, evil])
    batch, chains, cmds = tr.decode_upload(up)
    check("decode upload", (batch, [c["id"] for c in cmds], cmds[0]), (7, ["pos-1.c1", "pos-1.c2"], cmd))
    good, bad = trust().verified_cmds(chains, cmds, now)
    check("origin signatures", ([c["id"] for c in good], bad), (["pos-1.c1"], [("pos-1.c2", "bad_origin_sig")]))
    t2 = trust()
    t2.add_crl(tr.make_crl(root, venue, 1, now, [pos.fp]), now)
    check("revoked origin", t2.verified_cmds(chains, cmds[:1], now)[1], [("pos-1.c1", "bad_origin_chain")])
    for bad_up in [b"", b"\x13", up[:-1], up[:9] + b"\x00\x00\x00"]:
        try:
            tr.decode_upload(bad_up)
            check("bad upload %s" % bad_up.hex(), "accepted", "rejected")
        except Reject:
            check("bad upload", 1, 1)
    receipt = tr.make_receipt(cloud, venue, now, [(cmd["id"], tr.cmd_digest(cmd, cmd["sig"]))], cloud_chain)
    check("receipt signed by the cloud", tr.verify_sig(cloud.pk, tr.CTX_RECEIPT + receipt[:-64], receipt[-64:]), True)
    # tests/vectors/protocol-v2.json (trust-core's Rust) opened and verified here
    vec_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "protocol-v2.json")
    with open(vec_path) as f:
        v = json.load(f)
    h, vn, vnow = bytes.fromhex, v["venue"], v["now_ms"]
    vroot, vpos = tr.Key(h(v["keys"]["root_secret"])), tr.Key(h(v["keys"]["pos1_secret"]))
    check("vector keys", (vroot.pk.hex(), vpos.pk.hex()), (v["keys"]["root_public"], v["keys"]["pos1_public"]))
    for name in ("chain_device_pos1", "chain_admin", "chain_admin_issued_tab7", "chain_cloud"):
        try:
            tr.verify_chain(tr.decode_chain(h(v[name])), vroot.pk, vn, vnow)
            check("vector " + name, 1, 1)
        except Reject as e:
            check("vector " + name, e.args[0], "valid")
    check("vector subkey", tr.body_key(h(v["keys"]["content_key"]), "pos-1").hex(), v["keys"]["pos1_body_subkey"])
    vt = tr.Trust(vn, vroot.pk, {v["keys"]["content_key_epoch"]: h(v["keys"]["content_key"])})
    ve = v["envelope_heartbeat_encrypted_with_chain"]
    got = vt.open(h(ve["bytes"]), vnow)
    check("vector envelope", (got["kind"], got["sender"], got["counter"], got["body"].hex()),
          (ve["header"]["kind"], ve["header"]["sender"], ve["header"]["counter"], ve["plaintext_body"]))
    check("vector envelope, chain cached", vt.open(h(v["envelope_app_message_plain_no_chain"]["bytes"]), vnow)["sender"], "pos-1")
    vc = v["command"]
    check("vector origin sig", tr.verify_sig(vpos.pk, tr.CTX_CMD + tr.idb(vn) + h(vc["fields"]), h(vc["origin_sig"])), True)
    check("vector digest", hashlib.sha256(h(vc["fields"]) + h(vc["origin_sig"])).hexdigest(), vc["digest"])
    for name in ("crl_root_signed", "crl_admin_signed"):
        check("vector " + name, [f.hex() for f in tr.open_crl(h(v[name]), vroot.pk, vn, vnow)[1]], [v["crl_revoked_fp"]])
    rc = h(v["receipt"])
    check("vector receipt", tr.verify_sig(h(v["keys"]["cloud_public"]), tr.CTX_RECEIPT + rc[:-64], rc[-64:]), True)
    # KEY_UPDATE (Part 6 §6): the Rust vector verified, unwrapped by pos-1, and issued again
    # here byte for byte (deterministic Ed25519, fixed ephemeral secret).
    vk = v["key_update"]
    vadmin, vku = tr.Key(h(v["keys"]["admin_secret"])), h(vk["bytes"])
    opened = tr.open_key_update(vku, vroot.pk, vn, vnow)
    check("vector key_update", (opened["epoch"], sorted(opened["recipients"])), (int(vk["new_epoch"]), ["ipad-admin", "pos-1"]))
    check("vector key_update x25519", tr.ed25519_pk_to_x25519(vpos.pk).hex(), vk["pos1_x25519_public"])
    check("vector key_update unwrap", tr.unwrap_key_update(opened, vn, "pos-1", vpos.seed).hex(), vk["new_content_key"])
    check("vector key_update not named", tr.unwrap_key_update(opened, vn, "tab-7", vpos.seed), None)
    again = tr.make_key_update(vadmin, vn, opened["epoch"], (opened["issued_at"], opened["activate_at"], opened["retire_at"]),
                               h(vk["new_content_key"]), [("pos-1", vpos.pk), ("ipad-admin", vadmin.pk)],
                               h(vk["ephemeral_secret"]), issuer_chain=h(v["chain_admin"]))
    check("vector key_update issued in Python", again.hex(), vk["bytes"])
    try:
        tr.unwrap_key_update(opened, vn, "pos-1", vadmin.seed)
        check("key_update: another key", "opened", "bad_key_update")
    except Reject as e:
        check("key_update: another key", e.args[0], "bad_key_update")
    flips = set()
    for i in range(0, len(vku) * 8, 7):
        bad = bytearray(vku)
        bad[i // 8] ^= 1 << (i % 8)
        try:
            tr.open_key_update(bytes(bad), vroot.pk, vn, vnow)
            flips.add("accepted")
        except Reject as e:
            flips.add(e.args[0])
    check("key_update bit flips: none accepted", "accepted" in flips, False)
    # The ingest's schedule: the new epoch is read at once, sealed under from activate_at,
    # the old one dropped at retire_at; a device may not issue; an update not naming the cloud is refused.
    ck2 = bytes(range(32, 64))
    sched = tr.Trust(venue, root.pk, {1: ck})
    update = tr.make_key_update(root, venue, 2, (now, now + 5000, now + 65000), ck2, [("cloud", cloud.pk), ("pos-1", pos.pk)], bytes([7]) * 32)
    check("key_update applied", sched.add_key_update(update, "cloud", cloud.seed, now), 2)
    check("key_update again", sched.add_key_update(update, "cloud", cloud.seed, now), None)
    check("key_update: read at once, sent later", (sorted(sched.content_keys), sched.send_epoch), ([1, 2], 1))
    env2 = tr.seal(pos, venue, "pos-1", 12, 50, 0, hlc, b"after", chain=pos_chain, content_key=ck2, epoch=2)
    check("key_update: an epoch-2 body opens", sched.open(env2, now)["body"], b"after")
    check("an epoch-2 body does not open without it", _reject(lambda: trust().open(env2, now)), "bad_body")
    sched.tick(now + 5000)
    check("key_update: activated", (sorted(sched.content_keys), sched.send_epoch), ([1, 2], 2))
    sched.tick(now + 65000)
    check("key_update: retired", (sorted(sched.content_keys), sched.send_epoch), ([2], 2))
    by_device = tr.make_key_update(pos, venue, 3, (now, now, now), ck2, [("cloud", cloud.pk)], bytes([8]) * 32, issuer_chain=pos_chain)
    check("key_update by a device", _reject(lambda: sched.add_key_update(by_device, "cloud", cloud.seed, now)), "wrong_role")
    not_us = tr.make_key_update(root, venue, 3, (now, now, now), ck2, [("pos-1", pos.pk)], bytes([9]) * 32)
    check("key_update not for the cloud", _reject(lambda: sched.add_key_update(not_us, "cloud", cloud.seed, now)), "key_update_not_for_us")
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
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "state.json")) as f:
        state_ingest.self_test(json.load(f), check)
    for f in failed:
        print("FAIL " + f)
    print("self-test: %d checks, %d failed" % (checks, len(failed)))
    return 1 if failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", default="127.0.0.1:19883", help="host:port of a plain MQTT listener")
    p.add_argument("--venue")
    p.add_argument("--trust", help="the cloud's credentials: `node scripts/ca.mjs ingest` output (JSON)")
    p.add_argument("--db", help="SQLite file")
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
    if not a.venue or not a.db or not a.trust:
        p.error("--venue, --db and --trust are required")
    try:
        cred = tr.load_trust_file(a.trust)
    except (OSError, ValueError, KeyError, Reject) as e:
        p.error("--trust %s: %s" % (a.trust, e))
    if cred[0].venue != a.venue:
        p.error("--trust is for venue %s, not %s" % (cred[0].venue, a.venue))
    host, _, port = a.broker.rpartition(":")
    a.host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        p.error("--broker must be host:port")
    a.port = int(port)
    return Ingest(a, cred).run()


if __name__ == "__main__":
    sys.exit(main())

"""The venuemesh v2 trust formats for the reference ingest (PROTOCOL.md Part 6; the
design's §1-§5): Ed25519 certificates and chains, CRLs, origin-signed commands and their
digests, cloud receipts, the v2 envelope (signed by the sender's device key, the body
encrypted with ChaCha20-Poly1305 under a per-sender HKDF subkey) and the credential
bundle. Needs `cryptography` (Debian: python3-cryptography) for Ed25519 and ChaCha20;
everything else is the standard library. Written from the design, not from the Rust."""
import base64, hashlib, json, struct, time

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from venuewire import Reader, Reject, valid_id

ROLE_DEVICE, ROLE_ADMIN, ROLE_CLOUD = 1, 2, 3
KIND_CLOUD_ACK, KIND_UPLOAD, KIND_TRUST = 6, 12, 13
TYPE_CLOUD_ACK, TYPE_UPLOAD = 0x12, 0x13
FLAG_ENCRYPTED, FLAG_CHAIN = 0x01, 0x02
CTX_CERT, CTX_ENV, CTX_CMD = b"venuemesh/v2 cert\0", b"venuemesh/v2 env\0", b"venuemesh/v2 cmd\0"
CTX_RECEIPT, CTX_CRL = b"venuemesh/v2 receipt\0", b"venuemesh/v2 crl\0"
CTX_KEYS = b"venuemesh/v2 keys\0"
MAX_KEY_RECIPIENTS, WRAPPED_LEN = 1024, 48
MAX_BODY, DRIFT_MS, MIN_ENVELOPE = 262144, 60000, 100


def idb(s):
    b = s.encode()
    if not valid_id(b):
        raise ValueError("not an id: %r" % s)
    return bytes([len(b)]) + b


def text16(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def fp(pk):
    """Key fingerprint: the first 8 bytes of SHA-256(pk)."""
    return hashlib.sha256(pk).digest()[:8]


class Key:
    """An Ed25519 key from its 32-byte seed."""

    def __init__(self, seed):
        self.seed = bytes(seed)
        self._k = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.pk = self._k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.fp = fp(self.pk)

    def sign(self, msg):
        return self._k.sign(msg)


def verify_sig(pk, msg, sig):
    if len(pk) != 32 or len(sig) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# --- certificates and chains (§1) -------------------------------------------------
def issue_cert(issuer, role, venue, subject, pk, not_before=0, not_after=0):
    tbs = bytes([1, role]) + idb(venue) + idb(subject) + pk + issuer.fp + struct.pack(">QQ", not_before, not_after)
    return tbs + issuer.sign(CTX_CERT + tbs)


def decode_cert(raw):
    if len(raw) > 256:
        raise Reject("bad_chain")
    r = Reader(raw, "bad_chain")
    if r.uint("B") != 1:
        raise Reject("bad_chain")
    role = r.uint("B")
    if role not in (1, 2, 3):
        raise Reject("bad_chain")
    c = dict(role=role, venue=r.id(), subject=r.id(), pk=r.take(32), issuer_fp=r.take(8))
    c["not_before"], c["not_after"] = r.uint("Q"), r.uint("Q")
    c["tbs"] = bytes(raw[:len(raw) - len(r.rest)])
    c["sig"] = r.take(64)
    if len(r.rest):
        raise Reject("bad_chain")
    return c


def encode_chain(certs):
    return bytes([len(certs)]) + b"".join(struct.pack(">H", len(c)) + c for c in certs)


def read_chain(r):
    """One chain from Reader `r`: `count u8 (1..=2) · (u16 len · cert)×count`, leaf first."""
    n = r.uint("B")
    if not 1 <= n <= 2:
        raise Reject("bad_chain")
    return [decode_cert(r.take(r.uint("H"))) for _ in range(n)]


def decode_chain(raw):
    r = Reader(raw, "bad_chain")
    chain = read_chain(r)
    if len(r.rest):
        raise Reject("bad_chain")
    return chain


def verify_chain(chain, root_pk, venue, now_ms, revoked=frozenset(), drift=DRIFT_MS):
    """Signatures up to the root, one venue, role rules, validity, nothing revoked -> the leaf."""
    for c in chain:
        if c["venue"] != venue or c["not_before"] > now_ms + drift or (c["not_after"] and c["not_after"] + drift < now_ms):
            raise Reject("bad_chain")
    if any(fp(c["pk"]) in revoked for c in chain):
        raise Reject("revoked")
    if len(chain) == 2:
        leaf, admin = chain
        if admin["role"] != ROLE_ADMIN or leaf["role"] != ROLE_DEVICE:
            raise Reject("bad_chain")
        links = [(admin, root_pk), (leaf, admin["pk"])]
    else:
        links = [(chain[0], root_pk)]
    for cert, issuer_pk in links:
        if cert["issuer_fp"] != fp(issuer_pk) or not verify_sig(issuer_pk, CTX_CERT + cert["tbs"], cert["sig"]):
            raise Reject("bad_chain")
    return chain[0]


# --- CRL (§4) ------------------------------------------------------------------------
def make_crl(issuer, venue, seq, issued_at, fps, issuer_chain=None):
    tbs = b"\x01" + idb(venue) + struct.pack(">QQH", seq, issued_at, len(fps)) + b"".join(fps) + (issuer_chain or b"\x00")
    return tbs + issuer.sign(CTX_CRL + tbs)


def open_crl(raw, root_pk, venue, now_ms, revoked=frozenset()):
    """A valid CRL (root or admin signed) -> (seq, [fp])."""
    r = Reader(raw, "bad_crl")
    if r.uint("B") != 1:
        raise Reject("bad_crl")
    ven, seq, _issued, n = r.id(), r.uint("Q"), r.uint("Q"), r.uint("H")
    fps = [r.take(8) for _ in range(n)]
    verify_issued(raw, r, ven, root_pk, venue, now_ms, revoked, (ROLE_ADMIN,), CTX_CRL, "bad_crl")
    return seq, fps


def verify_issued(raw, r, ven, root_pk, venue, now_ms, revoked, roles, ctx, error):
    """The tail every issued object shares (Part 6: the Rust side's verify_issued): `00` for the
    root itself, or the issuer's chain from the root with one of `roles`; then the signature
    over everything before it under `ctx`. Raises Reject(error) or Reject("wrong_role")."""
    signer = root_pk
    if r.rest[:1] == b"\x00":
        r.take(1)
    else:
        leaf = verify_chain(read_chain(r), root_pk, venue, now_ms, revoked)
        if leaf["role"] not in roles:
            raise Reject("wrong_role")
        signer = leaf["pk"]
    tbs = bytes(raw[:len(raw) - len(r.rest)])
    sig = r.take(64)
    if len(r.rest) or ven != venue or not verify_sig(signer, ctx + tbs, sig):
        raise Reject(error)


# --- KEY_UPDATE: content key rotation (Part 6 §6) --------------------------------------
def open_key_update(raw, root_pk, venue, now_ms, revoked=frozenset()):
    """A valid KEY_UPDATE (signed by the root, or an admin or cloud chain from it) ->
    dict(epoch, issued_at, activate_at, retire_at, eph_pk, recipients={device: wrapped})."""
    r = Reader(raw, "bad_key_update")
    if r.uint("B") != 1:
        raise Reject("bad_key_update")
    ven, epoch = r.id(), r.uint("B")
    issued, activate, retire = r.uint("Q"), r.uint("Q"), r.uint("Q")
    eph, n = r.take(32), r.uint("H")
    if retire < activate or n > MAX_KEY_RECIPIENTS:
        raise Reject("bad_key_update")
    recipients = {}
    for _ in range(n):
        device = r.id()
        recipients[device] = r.take(WRAPPED_LEN)
    verify_issued(raw, r, ven, root_pk, venue, now_ms, revoked, (ROLE_ADMIN, ROLE_CLOUD), CTX_KEYS,
                  "bad_key_update")
    return dict(epoch=epoch, issued_at=issued, activate_at=activate, retire_at=retire, eph_pk=eph,
                recipients=recipients)


def x25519_secret(seed):
    """The X25519 secret of an Ed25519 seed: the first half of SHA-512(seed), the scalar
    Ed25519 itself uses (X25519 clamps it the same way); its public key is the
    Montgomery form of the Ed25519 public key (libsodium's ed25519_sk_to_curve25519)."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def unwrap_key_update(ku, venue, device, seed):
    """The new content key wrapped to `device` (whose Ed25519 seed is `seed`), or None when
    the update does not name it. Reject("bad_key_update") when the entry does not open."""
    wrapped = ku["recipients"].get(device)
    if wrapped is None:
        return None
    sk = x25519_secret(seed)
    mont = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        shared = sk.exchange(X25519PublicKey.from_public_bytes(ku["eph_pk"]))
    except ValueError:  # a low-order point: an all-zero shared secret
        raise Reject("bad_key_update") from None
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"venuemesh/v2",
               info=b"key-update\0" + ku["eph_pk"] + mont).derive(shared)
    aad = venue.encode() + b"\0" + device.encode() + b"\0" + bytes([ku["epoch"]])
    try:
        return ChaCha20Poly1305(kek).decrypt(bytes(12), wrapped, aad)
    except InvalidTag:
        raise Reject("bad_key_update") from None


_P = 2 ** 255 - 19


def ed25519_pk_to_x25519(pk):
    """The Montgomery u of an Ed25519 public key: u = (1 + y) / (1 - y) mod p."""
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def make_key_update(key, venue, epoch, when, content_key, recipients, eph_secret, issuer_chain=None):
    """Issues a KEY_UPDATE (what an admin device or the cloud does): `when` = (issued_at,
    activate_at, retire_at); `recipients` = [(device, Ed25519 public key)]; `eph_secret` 32
    fresh random bytes; signed by `key` under `issuer_chain` (None: `key` is the root)."""
    eph = X25519PrivateKey.from_private_bytes(eph_secret)
    eph_pk = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    issued, activate, retire = when
    out = bytes([1]) + idb(venue) + bytes([epoch]) + struct.pack(">QQQ", issued, activate, max(retire, activate))
    out += eph_pk + struct.pack(">H", len(recipients))
    for device, pk in recipients:
        mont = ed25519_pk_to_x25519(pk)
        shared = eph.exchange(X25519PublicKey.from_public_bytes(mont))
        kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"venuemesh/v2",
                   info=b"key-update\0" + eph_pk + mont).derive(shared)
        aad = venue.encode() + b"\0" + device.encode() + b"\0" + bytes([epoch])
        out += idb(device) + ChaCha20Poly1305(kek).encrypt(bytes(12), content_key, aad)
    out += issuer_chain if issuer_chain is not None else b"\x00"
    return out + key.sign(CTX_KEYS + out)


def epoch_newer(a, b):
    """Epochs wrap at 256: `a` is newer than `b` when 1..=127 steps ahead."""
    d = (a - b) % 256
    return 0 < d < 128


# --- commands and receipts (§3) --------------------------------------------------------
def encode_cmd(c):
    """The v1 command fields (src/replication/wire.rs), what the origin signs."""
    return (text16(c["id"]) + idb(c["origin"]) + text16(c["topic"]) +
            struct.pack(">QQI", c["hlc"], c["created_at"], len(c["payload"])) + c["payload"])


def sign_cmd(key, venue, c):
    return key.sign(CTX_CMD + idb(venue) + encode_cmd(c))


def verify_cmd(pk, venue, c, sig):
    return verify_sig(pk, CTX_CMD + idb(venue) + encode_cmd(c), sig)


def cmd_digest(c, sig):
    return hashlib.sha256(encode_cmd(c) + sig).digest()


def make_receipt(cloud_key, venue, issued_at, entries, cloud_chain):
    """entries = [(id, digest)]; signed by the cloud key, its chain inside."""
    tbs = b"\x01" + idb(venue) + struct.pack(">QH", issued_at, len(entries))
    tbs += b"".join(text16(i) + d for i, d in entries) + cloud_chain
    return tbs + cloud_key.sign(CTX_RECEIPT + tbs)


def decode_upload(body):
    """0x13 Upload: type · batch u64 · cert table · count u16 · (cmd · origin_sig)×count
    -> (batch, [chain], [cmd]); nothing verified yet."""
    r = Reader(body, "bad_body")
    if r.uint("B") != TYPE_UPLOAD:
        raise Reject("kind_mismatch")
    batch = r.uint("Q")
    chains = [read_chain(r) for _ in range(r.uint("B"))]
    cmds = []
    for _ in range(r.count()):
        c = dict(id=r.text(128), origin=r.id(), topic=r.text(256), hlc=r.uint("Q"), created_at=r.uint("Q"))
        c["payload"] = r.take(r.uint("I"))
        c["sig"] = r.take(64)
        cmds.append(c)
    return batch, chains, cmds


def encode_upload(batch, chains, cmds):
    out = struct.pack(">BQ", TYPE_UPLOAD, batch) + bytes([len(chains)]) + b"".join(chains)
    return out + struct.pack(">H", len(cmds)) + b"".join(encode_cmd(c) + c["sig"] for c in cmds)


# --- envelope v2 (§2) ---------------------------------------------------------------------
def body_key(content_key, sender):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"venuemesh/v2", info=b"body\0" + sender.encode()).derive(content_key)


def nonce(counter):
    return struct.pack(">Q", counter) + bytes(4)


def seal(key, venue, sender, kind, counter, term, hlc, body, chain=None, content_key=None, epoch=0):
    flags = (FLAG_ENCRYPTED if content_key else 0) | (FLAG_CHAIN if chain else 0)
    head = bytes([2, kind, flags, epoch]) + idb(venue) + idb(sender) + struct.pack(">QQQ", counter, term, hlc)
    head += (chain or b"") + struct.pack(">I", len(body) + (16 if content_key else 0))
    if content_key:
        body = ChaCha20Poly1305(body_key(content_key, sender)).encrypt(nonce(counter), body, head)
    signed = head + body
    return signed + key.sign(CTX_ENV + signed)


class Trust:
    """What the ingest trusts: the venue root, the content keys by epoch, the CRL set and
    the validated chains of senders (bounded, least recently used evicted)."""

    def __init__(self, venue, root_pk, content_keys, max_certs=1024):
        self.venue, self.root_pk, self.content_keys = venue, root_pk, dict(content_keys)
        self.revoked, self.certs, self.max_certs = set(), {}, max_certs
        # Content key rotation (Part 6 §6): the epoch we seal under, the newest held, a
        # scheduled activation (epoch, activate_at, retire_at) and epochs due to be dropped.
        self.newest = self.send_epoch = max(self.content_keys) if self.content_keys else 0
        self.pending, self.retiring = None, []

    def add_key_update(self, raw, device, seed, now_ms):
        """Applies a KEY_UPDATE: verified (root, or an admin or cloud chain), and if its epoch
        is newer than every one held, its key is unwrapped with our own key (`device`, Ed25519
        `seed`): read under at once, sealed under from `activate_at`, the older epochs dropped at
        `retire_at` — the devices' schedule, so nothing they send in between is unreadable.
        -> the new epoch, or None (an epoch held or older). Reject when it does not verify or
        does not name us (`key_update_not_for_us`: uploads under it cannot be opened)."""
        ku = open_key_update(raw, self.root_pk, self.venue, now_ms, self.revoked)
        epoch = ku["epoch"]
        if epoch in self.content_keys or not epoch_newer(epoch, self.newest):
            return None
        key = unwrap_key_update(ku, self.venue, device, seed)
        if key is None:
            raise Reject("key_update_not_for_us")
        if self.pending:  # a newer update overtook a scheduled one: that one is live now
            self._activate(*self.pending)
        self.content_keys[epoch] = key
        self.newest, self.pending = epoch, (epoch, ku["activate_at"], ku["retire_at"])
        self.tick(now_ms)
        return epoch

    def _activate(self, epoch, _activate_at, retire_at):
        self.pending, self.send_epoch = None, epoch
        self.retiring += [(e, retire_at) for e in self.content_keys if e != epoch]

    def tick(self, now_ms):
        """Applies the schedule: activation of a pending epoch, retirement of older ones."""
        if self.pending and now_ms >= self.pending[1]:
            self._activate(*self.pending)
        due = [e for e, at in self.retiring if now_ms >= at and e != self.send_epoch]
        for e in due:
            self.content_keys.pop(e, None)
        self.retiring = [(e, at) for e, at in self.retiring if e not in due and e != self.send_epoch]

    def chain_ok(self, chain, now_ms):
        return verify_chain(chain, self.root_pk, self.venue, now_ms, self.revoked)

    def add_crl(self, raw, now_ms):
        seq, fps = open_crl(raw, self.root_pk, self.venue, now_ms, self.revoked)
        self.revoked.update(fps)  # never un-revoke
        return seq

    def open(self, data, now_ms, replay=None, max_body=MAX_BODY):
        """Design §2 open order: size, version, header, chain, signature, venue, replay, decrypt."""
        if not data:
            raise Reject("truncated")
        if data[0] != 2:
            raise Reject("bad_version")
        if len(data) < MIN_ENVELOPE:
            raise Reject("truncated")
        if len(data) > 100 + 128 + 521 + max_body + 16:
            raise Reject("too_large")
        r = Reader(data[:-64], "malformed")
        _v, kind, flags, epoch = r.take(4)
        if flags & ~3:
            raise Reject("malformed")
        venue, sender = r.id(), r.id()
        counter, term, hlc = struct.unpack(">QQQ", r.take(24))
        chain = read_chain(r) if flags & FLAG_CHAIN else None
        body_len = r.uint("I")
        head = bytes(data[:len(data) - 64 - len(r.rest)])
        if body_len > max_body + 16 or len(r.rest) != body_len:
            raise Reject("malformed")
        if chain is not None:
            leaf = self.chain_ok(chain, now_ms)
            if leaf["subject"] != sender:
                raise Reject("bad_chain")
        else:
            leaf = self.certs.get(sender)
            if leaf is None:
                raise Reject("unknown_sender")
            if fp(leaf["pk"]) in self.revoked:
                raise Reject("revoked")
        if not verify_sig(leaf["pk"], CTX_ENV + bytes(data[:-64]), bytes(data[-64:])):
            raise Reject("bad_signature")
        if chain is not None:
            self.certs.pop(sender, None)
            self.certs[sender] = leaf
            while len(self.certs) > self.max_certs:
                self.certs.pop(next(iter(self.certs)))
        if venue != self.venue:
            raise Reject("wrong_venue")
        if replay is not None:
            seen = replay(sender, counter)
            if seen != "accept":
                raise Reject(seen)
        body = bytes(r.rest)
        if flags & FLAG_ENCRYPTED:
            ck = self.content_keys.get(epoch)
            if ck is None:
                raise Reject("bad_body")
            try:
                body = ChaCha20Poly1305(body_key(ck, sender)).decrypt(nonce(counter), body, head)
            except InvalidTag:
                raise Reject("bad_body") from None
        if kind == KIND_CLOUD_ACK and leaf["role"] != ROLE_CLOUD:
            raise Reject("wrong_role")
        return dict(kind=kind, flags=flags, epoch=epoch, sender=sender, counter=counter, term=term, hlc=hlc,
                    body=body, role=leaf["role"])

    def verified_cmds(self, chains, cmds, now_ms):
        """The commands whose origin signature verifies under a valid chain of the batch's
        cert table (or one cached); the rest -> list of (id, reason)."""
        table = {}
        for chain in chains:
            try:
                leaf = self.chain_ok(chain, now_ms)
            except Reject:
                continue  # its commands are refused below
            table[leaf["subject"]] = leaf
        good, bad = [], []
        for c in cmds:
            leaf = table.get(c["origin"]) or self.certs.get(c["origin"])
            if leaf is None or fp(leaf["pk"]) in self.revoked:
                bad.append((c["id"], "bad_origin_chain"))
            elif not verify_cmd(leaf["pk"], self.venue, c, c["sig"]):
                bad.append((c["id"], "bad_origin_sig"))
            else:
                good.append(c)
        return good, bad


def b64d(s):
    return base64.b64decode(s, validate=True)


def load_trust_file(path):
    """`scripts/ca.mjs ingest` output: the cloud's bundle plus `secret` (its key's seed).
    -> (Trust, cloud Key, cloud chain bytes, cloud id, current epoch)."""
    with open(path) as f:
        j = json.load(f)
    if j.get("version") != 1 or "secret" not in j:
        raise ValueError("not a cloud trust file (scripts/ca.mjs ingest)")
    root = b64d(j["rootPublicKey"])
    keys = {j["keyEpoch"]: b64d(j["contentKey"])}
    trust = Trust(j["venue"], root, keys)
    key, chain = Key(b64d(j["secret"])), b64d(j["chain"])
    leaf = verify_chain(decode_chain(chain), root, j["venue"], int(time.time() * 1000))
    if leaf["role"] != ROLE_CLOUD or leaf["pk"] != key.pk or leaf["subject"] != j["device"]:
        raise ValueError("the trust file's key does not match its cloud certificate")
    if j.get("crl"):
        trust.add_crl(b64d(j["crl"]), int(time.time() * 1000))
    return trust, key, chain, j["device"], max(keys)

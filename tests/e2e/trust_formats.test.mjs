// The Node implementation of the v2 trust formats (tests/ca/trust.mjs): certificates,
// chains and their role rules, CRLs, receipts, origin-signed commands, the v2 envelope
// (signed, encrypted) and bundles — each forgery or tamper rejected with its reason.
// No browser, no broker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as T from '../ca/trust.mjs';

const VENUE = 'shop-1';
const reason = (f) => { try { f(); return 'accepted'; } catch (e) { if (!(e instanceof T.TrustError)) throw e; return e.reason; } };

test('chains: root-issued and admin-issued verify; the role rules hold', () => {
  const ca = T.createCa({ venue: VENUE });
  const dev = T.keyPair(), adm = T.keyPair();
  const chain = T.decodeChain(ca.chainFor('pos-1', dev.pk));
  assert.equal(T.verifyChain(chain, { rootPk: ca.root.pk, venue: VENUE }).subject, 'pos-1');
  const adminChain = ca.chainFor('ipad-1', adm.pk, { role: 'admin' });
  const viaAdmin = T.decodeChain(ca.chainFor('pos-2', dev.pk, { admin: { key: adm, chain: adminChain } }));
  assert.equal(viaAdmin.length, 2);
  assert.equal(T.verifyChain(viaAdmin, { rootPk: ca.root.pk, venue: VENUE }).subject, 'pos-2');
  // an admin cannot issue admin or cloud certificates
  for (const role of ['admin', 'cloud']) {
    const c = T.decodeChain(ca.chainFor('x', dev.pk, { role, admin: { key: adm, chain: adminChain } }));
    assert.equal(reason(() => T.verifyChain(c, { rootPk: ca.root.pk, venue: VENUE })), 'bad_chain', role);
  }
  // a device cannot issue anything
  const devChain = ca.chainFor('pos-1', dev.pk);
  const c = T.decodeChain(ca.chainFor('pos-9', T.keyPair().pk, { admin: { key: dev, chain: devChain } }));
  assert.equal(reason(() => T.verifyChain(c, { rootPk: ca.root.pk, venue: VENUE })), 'bad_chain');
  // another venue's root, another venue, expired, not yet valid, revoked
  const other = T.createCa({ venue: VENUE });
  assert.equal(reason(() => T.verifyChain(chain, { rootPk: other.root.pk, venue: VENUE })), 'bad_chain');
  assert.equal(reason(() => T.verifyChain(chain, { rootPk: ca.root.pk, venue: 'shop-2' })), 'bad_chain');
  const old = T.decodeChain(ca.chainFor('pos-3', dev.pk, { notAfter: Date.now() - 120_000 }));
  assert.equal(reason(() => T.verifyChain(old, { rootPk: ca.root.pk, venue: VENUE })), 'bad_chain');
  assert.equal(reason(() => T.verifyChain(viaAdmin, { rootPk: ca.root.pk, venue: VENUE, revoked: new Set([T.fp(adm.pk).toString('hex')]) })), 'revoked');
});

test('chains: flipping any bit of a certificate breaks it', () => {
  const ca = T.createCa({ venue: VENUE });
  const bytes = ca.chainFor('pos-1', T.keyPair().pk);
  const seen = new Set();
  for (let i = 8 * 3; i < bytes.length * 8; i++) { // past count and length
    const bad = Buffer.from(bytes); bad[i >> 3] ^= 1 << (i & 7);
    seen.add(reason(() => T.verifyChain(T.decodeChain(bad), { rootPk: ca.root.pk, venue: VENUE })));
  }
  assert.deepEqual([...seen], ['bad_chain']);
});

test('envelope v2: seal/open, encrypted body unreadable without the content key, every tamper rejected', () => {
  const ca = T.createCa({ venue: VENUE });
  const a = ca.device('pos-1');
  const trust = () => ({ rootPk: ca.root.pk, venue: VENUE, contentKeys: new Map([[1, ca.keys[0].key]]), certs: new Map(), revoked: new Set() });
  const secret = Buffer.from('a sale of 12.50 EUR');
  const env = T.seal({ key: a.key, venue: VENUE, sender: 'pos-1', kind: T.KIND.PRESENCE, counter: 42n, term: 7n,
    body: secret, chain: a.chain, contentKey: ca.keys[0].key, epoch: 1 });
  assert.equal(env.indexOf(secret), -1, 'no cleartext body on the wire');
  const tr = trust();
  const got = T.open(env, tr);
  assert.deepEqual([got.sender, got.counter, got.term, got.body.toString()], ['pos-1', 42n, 7n, secret.toString()]);
  assert.ok(tr.certs.has('pos-1'), 'the chain is cached');
  // no chain: known once cached, unknown before
  const bare = T.seal({ key: a.key, venue: VENUE, sender: 'pos-1', kind: T.KIND.REPLICATE_COMMAND, counter: 43n, body: secret,
    contentKey: ca.keys[0].key, epoch: 1 });
  assert.equal(T.open(bare, tr).body.toString(), secret.toString());
  assert.equal(reason(() => T.open(bare, trust())), 'unknown_sender');
  // speaking as another device with one's own valid key
  const b = ca.device('pos-2');
  const forged = T.seal({ key: b.key, venue: VENUE, sender: 'pos-1', kind: T.KIND.HEARTBEAT, counter: (1n << 64n) - 2n, body: Buffer.alloc(3), contentKey: ca.keys[0].key, epoch: 1 });
  assert.equal(reason(() => T.open(forged, tr)), 'bad_signature');
  const withOwnChain = T.seal({ key: b.key, venue: VENUE, sender: 'pos-1', kind: T.KIND.HEARTBEAT, counter: 1n, body: Buffer.alloc(3), chain: b.chain });
  assert.equal(reason(() => T.open(withOwnChain, trust())), 'bad_chain');
  // a device cannot send CLOUD_ACK; the cloud can
  const ack = T.seal({ key: a.key, venue: VENUE, sender: 'pos-1', kind: T.KIND.CLOUD_ACK, counter: 44n, body: Buffer.from([0x12]), contentKey: ca.keys[0].key, epoch: 1 });
  assert.equal(reason(() => T.open(ack, tr)), 'wrong_role');
  const cloudAck = T.seal({ key: ca.cloudKey, venue: VENUE, sender: 'cloud', kind: T.KIND.CLOUD_ACK, counter: 1n, body: Buffer.from([0x12]), chain: ca.cloudChain, contentKey: ca.keys[0].key, epoch: 1 });
  assert.equal(T.open(cloudAck, trust()).role, T.ROLE.cloud);
  // revoked
  const tr2 = trust(); T.open(env, tr2); tr2.revoked.add(T.fp(a.key.pk).toString('hex'));
  assert.equal(reason(() => T.open(bare, tr2)), 'revoked');
  // a wrong content key: signature fine, body refused
  const tr3 = trust(); tr3.contentKeys.set(1, Buffer.alloc(32, 7));
  assert.equal(reason(() => T.open(env, tr3)), 'bad_body');
  // every single bit flip is rejected
  const seen = new Set();
  for (let i = 0; i < env.length * 8; i++) {
    const bad = Buffer.from(env); bad[i >> 3] ^= 1 << (i & 7);
    seen.add(reason(() => T.open(bad, trust())));
  }
  assert.ok(!seen.has('accepted'), [...seen].join());
  assert.ok(seen.has('bad_signature') && seen.has('bad_version'), [...seen].join());
});

test('commands, receipts: origin signature, digest, receipts only from the cloud', () => {
  const ca = T.createCa({ venue: VENUE });
  const a = ca.device('pos-1');
  const cmd = { id: T.newCommandId('pos-1'), origin: 'pos-1', topic: 'sale', hlc: T.packHlc(Date.now()), createdAt: Date.now(), payload: Buffer.from('x') };
  assert.match(cmd.id, /^pos-1\.[a-z2-7]{26}$/);
  assert.notEqual(T.newCommandId('pos-1'), T.newCommandId('pos-1'));
  const sig = T.signCmd(a.key, VENUE, cmd);
  assert.ok(T.verifyCmd(a.key.pk, VENUE, cmd, sig));
  assert.ok(!T.verifyCmd(a.key.pk, VENUE, { ...cmd, payload: Buffer.from('y') }, sig));
  assert.ok(!T.verifyCmd(a.key.pk, 'shop-2', cmd, sig));
  const digest = T.cmdDigest(cmd, sig);
  const rc = T.makeReceipt(ca.cloudKey, { venue: VENUE, entries: [{ id: cmd.id, digest }], cloudChain: ca.cloudChain });
  const opened = T.openReceipt(rc, { rootPk: ca.root.pk, venue: VENUE });
  assert.deepEqual(opened.entries, [{ id: cmd.id, digest }]);
  // a device's valid key cannot make a receipt
  const forged = T.makeReceipt(a.key, { venue: VENUE, entries: [{ id: cmd.id, digest }], cloudChain: a.chain });
  assert.equal(reason(() => T.openReceipt(forged, { rootPk: ca.root.pk, venue: VENUE })), 'bad_receipt');
  const swapped = T.makeReceipt(a.key, { venue: VENUE, entries: [{ id: cmd.id, digest }], cloudChain: ca.cloudChain });
  assert.equal(reason(() => T.openReceipt(swapped, { rootPk: ca.root.pk, venue: VENUE })), 'bad_receipt');
  const bad = Buffer.from(rc); bad[20] ^= 1;
  assert.equal(reason(() => T.openReceipt(bad, { rootPk: ca.root.pk, venue: VENUE })), 'bad_receipt');
});

test('CRL: root or admin signs, a device cannot; bundles verify', () => {
  const ca = T.createCa({ venue: VENUE });
  const a = ca.device('pos-1');
  const crl = ca.revoke(a.key.pk);
  assert.deepEqual(T.openCrl(crl, { rootPk: ca.root.pk, venue: VENUE }).fps, [T.fp(a.key.pk).toString('hex')]);
  const adm = ca.device('ipad-1', { role: 'admin' });
  const byAdmin = T.makeCrl(adm.key, { venue: VENUE, seq: 5n, fps: [Buffer.alloc(8, 1)], issuerChain: adm.chain });
  assert.equal(T.openCrl(byAdmin, { rootPk: ca.root.pk, venue: VENUE }).seq, 5n);
  const b = ca.device('pos-2');
  const byDevice = T.makeCrl(b.key, { venue: VENUE, seq: 6n, fps: [T.fp(adm.key.pk)], issuerChain: b.chain });
  assert.equal(reason(() => T.openCrl(byDevice, { rootPk: ca.root.pk, venue: VENUE })), 'wrong_role');
  const bad = Buffer.from(crl); bad[bad.length - 70] ^= 1;
  assert.equal(reason(() => T.openCrl(bad, { rootPk: ca.root.pk, venue: VENUE })), 'bad_crl');
  const bundle = T.readBundle(JSON.stringify(ca.bundle('pos-3', T.keyPair().pk)));
  assert.equal(bundle.device, 'pos-3');
  assert.equal(bundle.crl.length, crl.length);
  assert.equal(reason(() => T.readBundle({ ...ca.bundle('pos-3', T.keyPair().pk), device: 'pos-4' })), 'bad_credentials');
});

test('tests/vectors/protocol-v2.json (trust-core\'s Rust) is reproduced byte for byte by the Node implementation', () => {
  const v = JSON.parse(readFileSync(new URL('../vectors/protocol-v2.json', import.meta.url), 'utf8'));
  const h = (x) => Buffer.from(x, 'hex');
  const now = v.now_ms, venue = v.venue;
  const root = T.keyPair(h(v.keys.root_secret)), pos1 = T.keyPair(h(v.keys.pos1_secret)), cloud = T.keyPair(h(v.keys.cloud_secret));
  assert.equal(root.pk.toString('hex'), v.keys.root_public);
  assert.equal(root.fp.toString('hex'), v.keys.root_fp);
  assert.equal(pos1.pk.toString('hex'), v.keys.pos1_public);
  assert.equal(cloud.pk.toString('hex'), v.keys.cloud_public);
  // certificates: decoded, re-issued with the same fields (Ed25519 is deterministic) -> same bytes
  const cert = T.decodeCert(h(v.cert_device_pos1));
  const again = T.issueCert(root, { role: cert.role, venue: cert.venue, subject: cert.subject, pk: cert.pk, notBefore: cert.notBefore, notAfter: cert.notAfter });
  assert.equal(again.toString('hex'), v.cert_device_pos1);
  for (const name of ['chain_device_pos1', 'chain_admin', 'chain_admin_issued_tab7', 'chain_cloud']) {
    const leaf = T.verifyChain(T.decodeChain(h(v[name])), { rootPk: root.pk, venue, now });
    assert.ok(leaf.subject, name);
  }
  assert.equal(T.bodyKey(h(v.keys.content_key), 'pos-1').toString('hex'), v.keys.pos1_body_subkey);
  // envelopes: opened, and sealed again to the same bytes
  const trust = { rootPk: root.pk, venue, contentKeys: new Map([[v.keys.content_key_epoch, h(v.keys.content_key)]]), certs: new Map(), revoked: new Set() };
  const e = v.envelope_heartbeat_encrypted_with_chain;
  const opened = T.open(h(e.bytes), trust, { now });
  assert.deepEqual([opened.kind, opened.sender, opened.counter, opened.term, opened.hlc.toString(16).padStart(16, '0'), opened.body.toString('hex')],
    [e.header.kind, e.header.sender, BigInt(e.header.counter), BigInt(e.header.term), e.header.hlc, e.plaintext_body]);
  const resealed = T.seal({ key: pos1, venue, sender: 'pos-1', kind: e.header.kind, counter: BigInt(e.header.counter), term: BigInt(e.header.term),
    hlc: BigInt(`0x${e.header.hlc}`), body: h(e.plaintext_body), chain: h(v.chain_device_pos1), contentKey: h(v.keys.content_key), epoch: v.keys.content_key_epoch });
  assert.equal(resealed.toString('hex'), e.bytes);
  const plain = T.open(h(v.envelope_app_message_plain_no_chain.bytes), trust, { now }); // pos-1's chain is cached now
  assert.equal(plain.sender, v.envelope_app_message_plain_no_chain.header.sender);
  // the command's origin signature and digest
  const c = v.command;
  assert.ok(T.verifySig(pos1.pk, Buffer.concat([Buffer.from(T.CTX.cmd), T.id(venue), h(c.fields)]), h(c.origin_sig)));
  assert.equal(T.sha256(h(c.fields), h(c.origin_sig)).toString('hex'), c.digest);
  // receipt, CRLs, bundle
  assert.equal(T.openReceipt(h(v.receipt), { rootPk: root.pk, venue, now }).entries[0].digest.toString('hex'), c.digest);
  for (const name of ['crl_root_signed', 'crl_admin_signed']) {
    assert.deepEqual(T.openCrl(h(v[name]), { rootPk: root.pk, venue, now }).fps, [v.crl_revoked_fp], name);
  }
  assert.equal(T.readBundle(v.bundle_json_pos1, { now }).device, 'pos-1');
});

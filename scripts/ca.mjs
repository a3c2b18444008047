#!/usr/bin/env node
// The venuemesh test/demo CA (tests/ca/trust.mjs underneath): a venue root key, the cloud's
// certificate, content key epoch 1, device bundles and CRLs. Its state is one JSON file
// holding a 32-byte seed every key derives from (so keep it private: it IS the root key).
//
//   node scripts/ca.mjs init   --venue demo --ca .run/ca-demo.json [--seed-hex …]
//   node scripts/ca.mjs ingest --ca .run/ca-demo.json          > ingest-trust.json  (ingest.py --trust)
//   node scripts/ca.mjs issue  --ca .run/ca-demo.json --device pos-1 --pk <base64 32 bytes> [--role admin]
//   node scripts/ca.mjs revoke --ca .run/ca-demo.json --pk <base64>   (prints the CRL, base64)
//   node scripts/ca.mjs root   --ca .run/ca-demo.json                 (prints the root public key, base64)
//   node scripts/ca.mjs ingest --demo demo     the demo CA of venue "demo" instead of a state file: a public
//                                              seed (tests/ca/trust.mjs demoCa), what scripts/demo and the
//                                              static server's POST /ca/issue use. Never for a real venue.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import * as T from '../tests/ca/trust.mjs';

const { positionals: [cmd], values: a } = parseArgs({ allowPositionals: true, options: {
  venue: { type: 'string' }, ca: { type: 'string' }, 'seed-hex': { type: 'string' }, device: { type: 'string' },
  pk: { type: 'string' }, role: { type: 'string', default: 'device' }, demo: { type: 'string' } } });
const die = (m) => { console.error(`ca: ${m}`); process.exit(2); };
if (!a.ca && !a.demo) die('--ca FILE (or --demo VENUE) is required');

/** The CA of a state file: `{ venue, seed (hex), revoked: [pk b64] }`. */
export function loadCa(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const ca = T.createCa({ venue: s.venue, seed: Buffer.from(s.seed, 'hex') });
  for (const pk of s.revoked ?? []) ca.revoked.push(T.fp(Buffer.from(pk, 'base64')));
  return { ca, state: s };
}

if (cmd === 'init') {
  if (!a.venue) die('--venue is required');
  if (existsSync(a.ca)) die(`${a.ca} exists: a CA is made once`);
  writeFileSync(a.ca, JSON.stringify({ venue: a.venue, seed: a['seed-hex'] ?? randomBytes(32).toString('hex'), revoked: [] }), { mode: 0o600 });
  console.log(Buffer.from(loadCa(a.ca).ca.root.pk).toString('base64'));
} else {
  const { ca, state } = a.demo ? { ca: T.demoCa(a.demo), state: null } : loadCa(a.ca);
  if (a.demo && cmd === 'revoke') die('the demo CA keeps no state: revoke from an admin device');
  const pk = () => {
    const b = Buffer.from(a.pk ?? '', 'base64');
    if (b.length !== 32) die('--pk must be a base64 Ed25519 public key (32 bytes)');
    return b;
  };
  if (cmd === 'root') console.log(ca.root.pk.toString('base64'));
  else if (cmd === 'ingest') console.log(JSON.stringify(ca.ingestTrust()));
  else if (cmd === 'issue') {
    if (!a.device) die('--device is required');
    console.log(JSON.stringify(ca.bundle(a.device, pk(), { role: a.role })));
  } else if (cmd === 'revoke') {
    const k = pk();
    state.revoked = [...(state.revoked ?? []), k.toString('base64')];
    writeFileSync(a.ca, JSON.stringify(state), { mode: 0o600 });
    console.log(ca.revoke(k).toString('base64'));
  } else die(`unknown command ${cmd ?? '(none)'}: init | ingest | issue | revoke | root`);
}

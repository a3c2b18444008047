// A rogue device for the attack tests of issue #15: plain Node (MQTT.js + tests/ca/trust.mjs)
// holding what a stolen iPad holds — its own valid key and certificate, the venue's content
// key, the broker address — and using it to try to speak for others: heartbeats in another
// device's name or with a counter jump, copy requests in another origin's name, forged
// CLOUD_ACKs and "the cloud has it" SyncAcks, uploads of forged sales. Body layouts:
// PROTOCOL.md Part 3 §3 (election) and Part 4 §2 (replication), v2 where they changed.
import mqtt from 'mqtt';
import * as T from '../ca/trust.mjs';

const u8 = (n) => Buffer.from([n]);
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
const text16 = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u16(b.length), b]); };

/** Heartbeat body (Part 3 §3.3) with no term: `01 00 score queue_depth`. */
export const heartbeatBody = (score = 900_000) => Buffer.concat([u8(0x01), u8(0), u32(score), u64(0)]);
/** HubClaim body (Part 3 §3.4). */
export const hubClaimBody = (term, score) => Buffer.concat([u8(0x02), u64(term), u32(score)]);
/** Join body (Part 3 §3.1): kind other, REPLICA|WEBRTC capabilities. */
export const joinBody = (score = 900_000) => Buffer.concat([u8(0x03), u8(1), u8(0), u32(1), u32(score)]);
/** SyncAck body (src/replication/wire.rs `encode_sync_ack`): `11 · count · (state · text16 id)×count · n u8 · (u32 len · receipt)×n`. */
export const syncAckBody = (entries, receipts = []) => Buffer.concat([u8(0x11), u16(entries.length),
  ...entries.flatMap((e) => [u8(e.state), text16(e.id)]), u8(receipts.length), ...receipts.flatMap((r) => [u32(r.length), r])]);

/**
 * A rogue on `brokerUrl` for `venue`, with a valid device certificate from `ca` for `id`
 * (or `credentials` = { key, chain } of its own making).
 */
export async function rogueDevice({ brokerUrl, venue, ca, id = 'rogue-1', credentials = null }) {
  const me = credentials ?? ca.device(id);
  const client = await mqtt.connectAsync(brokerUrl, { clientId: `rogue-${id}-${Date.now()}`, reconnectPeriod: 0 });
  let counter = T.counterFloor();
  const received = [];
  client.on('message', (topic, payload) => received.push({ topic, payload: Buffer.from(payload) }));
  const contentKey = ca?.keys[0].key ?? null;
  const rogue = {
    id, key: me.key, chain: me.chain, client, received,
    /** Seals an envelope: `as` = the sender id claimed (default its own), signed with the rogue's own key. */
    seal({ kind, body, as = id, counterValue = null, chain = true, term = 0n, key = me.key, encrypt = contentKey !== null }) {
      return T.seal({ key, venue, sender: as, kind, counter: counterValue ?? counter++, term, body, chain: chain ? me.chain : null,
        contentKey: encrypt ? contentKey : null, epoch: 1 });
    },
    publish: (topic, payload, qos = 1) => client.publishAsync(`vm/${venue}/${topic}`, payload, { qos }),
    subscribe: (topic) => client.subscribeAsync(`vm/${venue}/${topic}`, { qos: 1 }),
    async join() {
      await rogue.publish(`presence/${id}`, rogue.seal({ kind: T.KIND.PRESENCE, body: joinBody() }), 1);
      await rogue.heartbeat();
    },
    heartbeat: (opts = {}) => rogue.publish(`hb/${opts.as ?? id}`, rogue.seal({ kind: T.KIND.HEARTBEAT, body: heartbeatBody(), ...opts }), 0),
    /** Replicate to `target` of `cmds` ({id, origin, topic, payload, …}) signed by the rogue's key (a forgery when origin ≠ rogue). */
    replicateTo(target, cmds, { chains = [me.chain] } = {}) {
      const signed = cmds.map((c) => ({ hlc: 0n, createdAt: Date.now(), ...c, sig: c.sig ?? T.signCmd(me.key, venue, { hlc: 0n, createdAt: Date.now(), ...c }) }));
      return rogue.publish(`dev/${target}/rep`, rogue.seal({ kind: T.KIND.REPLICATE_COMMAND, body: T.encodeReplicate(chains, signed) }), 0);
    },
    /** A CLOUD_ACK whose receipt the rogue made with its own key for `entries` ([{id, digest}]). */
    forgeCloudAck(entries, { cloudChain = ca.cloudChain } = {}) {
      const receipt = T.makeReceipt(me.key, { venue, entries, cloudChain });
      return rogue.publish('cloud', rogue.seal({ kind: T.KIND.CLOUD_ACK, body: T.encodeCloudAck(receipt) }));
    },
    /** "The cloud has it" (SyncAck state 2) to `target` for `ids`, with a receipt of the rogue's making. */
    forgeCloudHasIt(target, ids) {
      const receipt = T.makeReceipt(me.key, { venue, entries: ids.map((i) => ({ id: i, digest: Buffer.alloc(32) })), cloudChain: ca.cloudChain });
      return rogue.publish(`dev/${target}/ack`, rogue.seal({ kind: T.KIND.SYNC_ACK, body: syncAckBody(ids.map((i) => ({ state: 2, id: i })), [receipt]) }), 0);
    },
    close: () => client.endAsync(true),
  };
  return rogue;
}

// Type-level checks of the installed package, run by tsc --strict in
// tests/e2e/package.test.mjs (never bundled, never run). They fail to compile
// if a public type is `any` or too loose: every `@ts-expect-error` below must
// meet an error, which an `any` would swallow.
import { CommandQueue, MqttClient, VenueMesh, version } from 'venuemesh';
import type {
  CommandStatus, ConnectionStats, DetailedStats, DeviceInfoInput, HubTerm, MeshEvents, MqttConnectOptions,
  OpenOptions, PeerInfo, QueueEvents, QueueOpenOptions, QueuedCommand, QueueError, QueueStats, StatusCounts,
  TransitionOutcome, VenueMeshError, VenueMeshErrorCode,
} from 'venuemesh';

import { MqttClient as MqttOnlyClient, version as mqttOnlyVersion } from 'venuemesh/mqtt';
import type { ConnectionStats as MqttOnlyStats, MqttConnectOptions as MqttOnlyOptions } from 'venuemesh/mqtt';
// @ts-expect-error the MQTT-only entry has no mesh
import { VenueMesh as NoMeshInMqttOnly } from 'venuemesh/mqtt';

// --- no `any` anywhere in the public API --------------------------------------
type IsAny<T> = 0 extends 1 & T ? true : false;
type AllTrue<T> = [T] extends [true] ? true : false;
type Deeper<D extends unknown[]> = [...D, 0];
/** `true` when no `any` is reachable from T (methods, promises, arrays, properties). */
type NoAny<T, D extends unknown[] = []> =
  IsAny<T> extends true ? false
    : D['length'] extends 6 ? true
    : T extends (...args: infer P) => infer R ? AllTrue<NoAny<P[number], Deeper<D>> | NoAny<R, Deeper<D>>>
    : T extends Promise<infer U> ? NoAny<U, Deeper<D>>
    : T extends readonly (infer U)[] ? NoAny<U, Deeper<D>>
    : T extends Uint8Array | ArrayBuffer | Error ? true
    : T extends object ? AllTrue<{
        // `__`-prefixed members are hidden test helpers, not public API.
        [K in keyof T]-?: K extends `__${string}` ? true : NoAny<T[K], Deeper<D>>
      }[keyof T]>
    : true;
type Assert<T extends true> = T;

export type Checks = [
  Assert<NoAny<VenueMesh>>, Assert<NoAny<typeof VenueMesh>>,
  Assert<NoAny<CommandQueue>>, Assert<NoAny<typeof CommandQueue>>,
  Assert<NoAny<MqttClient>>, Assert<NoAny<typeof MqttClient>>,
  Assert<NoAny<typeof version>>,
  Assert<NoAny<MqttOnlyClient>>, Assert<NoAny<typeof MqttOnlyClient>>, Assert<NoAny<typeof mqttOnlyVersion>>,
  Assert<NoAny<MqttOnlyOptions>>, Assert<NoAny<MqttOnlyStats>>,
  Assert<NoAny<OpenOptions>>, Assert<NoAny<QueueOpenOptions>>, Assert<NoAny<MqttConnectOptions>>,
  Assert<NoAny<DetailedStats>>, Assert<NoAny<QueueStats>>, Assert<NoAny<ConnectionStats>>, Assert<NoAny<PeerInfo>>,
  Assert<NoAny<MeshEvents>>, Assert<NoAny<QueueEvents>>, Assert<NoAny<QueuedCommand>>, Assert<NoAny<TransitionOutcome>>,
  Assert<NoAny<StatusCounts>>, Assert<NoAny<VenueMeshError>>, Assert<NoAny<QueueError>>,
  // And the checker itself can fail:
  Assert<IsAny<any>>, Assert<AllTrue<NoAny<{ a: { b: Promise<any[]> } }> extends false ? true : false>>,
];

// --- events are typed per name ----------------------------------------------------
declare const mesh: VenueMesh;
const off: () => void = mesh.on('connected', (e) => { const url: string = e.url; void url; });
off();
mesh.on('disconnected', (e) => {
  const reason: string = e.reason;
  // @ts-expect-error a disconnected event has no url
  void e.url;
  void reason;
});
mesh.on('becomeHub', (e) => { const t: HubTerm = e.term; void t; });
mesh.on('loseHub', (e) => { const next: string | null = e.newHub; void next; });
mesh.on('hubChanged', (e) => { const hub: string | null = e.hub; const n: number | undefined = e.term?.number; void hub; void n; });
mesh.on('peerJoined', (e) => { const d: string = e.device; const s: number = e.score; void d; void s; });
mesh.on('peerLeft', (e) => {
  const why: 'leave' | 'will' | 'silent' = e.reason;
  // @ts-expect-error the reason is a closed set
  const other: 'timeout' = e.reason;
  void why; void other;
});
mesh.on('scoreChanged', (e) => { const s: number = e.score; void s; });
// @ts-expect-error unknown event name
mesh.on('no-such-event', () => {});
mesh.on('message', (e) => { const from: string = e.from; const text: string | null = e.text; void from; void text; });
mesh.on('peerAck', (e) => { const ids: string[] = e.ids; void ids; });
mesh.onBecomeHub(({ term }) => { const n: number = term.number; void n; });

mesh.queue.on('statusChanged', (e) => { const to: CommandStatus = e.to; const id: string = e.id; void to; void id; });
mesh.queue.on('retryDue', (e) => { const ids: string[] = e.ids; void ids; });
mesh.queue.on('storageError', (e) => { const code: VenueMeshErrorCode = e.code; void code; });
// @ts-expect-error statusChanged has no ids
mesh.queue.on('statusChanged', (e) => e.ids);

declare const mqttOnly: MqttOnlyClient;
mqttOnly.on('connected', (e) => { const url: string = e.url; void url; });
// @ts-expect-error per-event payloads: a connected event has no reason
mqttOnly.on('connected', (e) => e.reason);
void NoMeshInMqttOnly;

declare const client: MqttClient;
client.on('connected', (e) => { const url: string = e.url; void url; });
client.on('disconnected', (e) => { const reason: string = e.reason; void reason; });
client.subscribe('vm/shop-1/topic/chat', (topic, payload, info) => {
  const t: string = topic; const p: Uint8Array = payload; const qos: 0 | 1 | 2 = info.qos; void t; void p; void qos;
});

// --- options and results are precise ----------------------------------------------------
// @ts-expect-error brokers is required
void VenueMesh.open({ venue: 'shop-1' });
// @ts-expect-error unknown device kind
mesh.setDeviceInfo({ kind: 'toaster' });
// @ts-expect-error unknown option
void VenueMesh.open({ venue: 'shop-1', brokers: 'ws://x', brokerUrl: 'ws://x' });
const info: DeviceInfoInput = { kind: 'ipad', charging: true, batteryPercent: 80, wifiQuality: 7 };
mesh.setDeviceInfo(info);

const stats: DetailedStats = mesh.getDetailedStats();
const role: 'follower' | 'candidate' | 'hub' = stats.role;
const rtt: number | null = stats.broker.rttMs;
const persistent: boolean | null = stats.queue.persistent;
const firstPeer: PeerInfo | undefined = stats.peers[0];
// @ts-expect-error rttMs may be null
const rttNum: number = stats.broker.rttMs;
// Whether this browser takes the data channel and tab routes (Safari's engine may have no WebRTC).
const webrtc: 'on' | 'off' | 'unavailable' = stats.routes.webrtc;
const tab: 'on' | 'unavailable' = stats.routes.tab;
// @ts-expect-error webrtc is one of three words, not a boolean
const webrtcBool: boolean = stats.routes.webrtc;
void role; void rtt; void persistent; void firstPeer; void rttNum; void webrtc; void tab; void webrtcBool;

const counts: StatusCounts = mesh.queue.countByStatus();
const hub: string | null = mesh.hub;
const isHub: boolean = mesh.isHub;
const score: number = mesh.score;
void counts; void hub; void isHub; void score;

export async function queueUse(q: CommandQueue): Promise<void> {
  const id: string = await q.enqueue('pos/transaction', new Uint8Array([1, 2, 3]));
  const list: QueuedCommand[] = await q.list('pending', 10);
  const outcome: TransitionOutcome = q.cloudAcked([id]);
  const code: VenueMeshErrorCode | undefined = outcome.rejected[0]?.code;
  // @ts-expect-error not a status
  await q.list('done');
  void list; void code;
}

export function handle(e: unknown): string {
  const err = e as VenueMeshError;
  switch (err.code) {
    case 'INVALID_OPTIONS': case 'INVALID_ARGUMENT': case 'STORAGE': case 'QUEUE_FULL': case 'CLOSED': case 'CONNECTION':
    case 'NOT_PAIRED': case 'BAD_CREDENTIALS': case 'REVOKED': case 'NOT_ADMIN': case 'PAIRING_FAILED':
      return err.code;
    default: {
      const never: never = err.code;
      return never;
    }
  }
}

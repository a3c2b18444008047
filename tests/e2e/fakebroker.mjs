// A scripted fake MQTT broker over WebSocket (RFC 6455 server side, no
// dependency), on loopback, for tests that need a broker to misbehave: it
// answers the handshake, splits what the client sends into MQTT packets and
// lets the test reply with any bytes at all.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** One WebSocket frame from the server (unmasked). */
function frame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
      : Buffer.concat([Buffer.from([0x80 | opcode, 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
  return Buffer.concat([head, payload]);
}

/** Splits an MQTT byte stream into packets: { type, flags, body, raw }. */
function takePackets(buf) {
  const out = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    let len = 0, mul = 1, i = off + 1, done = false;
    for (let k = 0; k < 4 && i < buf.length; k++, i++) {
      len += (buf[i] & 127) * mul; mul *= 128;
      if ((buf[i] & 128) === 0) { done = true; i++; break; }
    }
    if (!done || buf.length - i < len) break;
    out.push({ type: buf[off] >> 4, flags: buf[off] & 15, body: buf.subarray(i, i + len), raw: buf.subarray(off, i + len) });
    off = i + len;
  }
  return { packets: out, rest: buf.subarray(off) };
}

export const CONNACK_OK = Buffer.from([0x20, 0x02, 0x00, 0x00]);

/**
 * Starts the fake broker. `onConnection(conn)` runs for each client
 * connection; conn.packets collects what the client sent.
 */
export async function startFakeBroker(onConnection) {
  const conns = [];
  const watchers = new Set();
  const notify = () => { for (const w of [...watchers]) w(); };
  const until = (check, ms, what) => new Promise((resolve, reject) => {
    const w = () => { const v = check(); if (v) { watchers.delete(w); clearTimeout(t); resolve(v); } };
    const t = setTimeout(() => { watchers.delete(w); reject(new Error(what())); }, ms);
    watchers.add(w); w();
  });

  const server = createServer((req, res) => { res.writeHead(426); res.end(); });
  server.on('upgrade', (req, socket) => {
    const key = req.headers['sec-websocket-key'];
    const protos = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim()).filter(Boolean);
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n${protos.length ? `Sec-WebSocket-Protocol: ${protos[0]}\r\n` : ''}\r\n`);
    socket.setNoDelay(true);
    const conn = {
      index: conns.length, packets: [], closed: false, closeCode: null,
      send(bytes) { if (!socket.destroyed) socket.write(frame(0x2, Buffer.from(bytes))); },
      end() { socket.destroy(); },
      waitPacket(type, ms = 10_000, from = 0) {
        return until(() => conn.packets.slice(from).find((p) => p.type === type), ms,
          () => `fake broker: no packet of type ${type} from client #${conn.index} within ${ms} ms (got types ${conn.packets.map((p) => p.type)})`);
      },
      waitClosed(ms = 10_000) {
        return until(() => conn.closed, ms, () => `fake broker: client #${conn.index} did not close its connection within ${ms} ms`);
      },
      onPacket: null,
    };
    conns.push(conn);
    let wire = Buffer.alloc(0), mqtt = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      wire = Buffer.concat([wire, chunk]);
      for (;;) {
        if (wire.length < 2) break;
        const opcode = wire[0] & 15, masked = wire[1] & 128;
        let len = wire[1] & 127, off = 2;
        if (len === 126) { if (wire.length < 4) break; len = wire.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (wire.length < 10) break; len = Number(wire.readBigUInt64BE(2)); off = 10; }
        const maskOff = off; if (masked) off += 4;
        if (wire.length < off + len) break;
        const payload = Buffer.from(wire.subarray(off, off + len));
        if (masked) for (let i = 0; i < len; i++) payload[i] ^= wire[maskOff + (i & 3)];
        wire = wire.subarray(off + len);
        if (opcode === 0x8) { conn.closeCode = len >= 2 ? payload.readUInt16BE(0) : null; socket.end(frame(0x8, payload.subarray(0, 2))); continue; }
        if (opcode === 0x9) { socket.write(frame(0xA, payload)); continue; }
        if (opcode === 0xA) continue;
        mqtt = Buffer.concat([mqtt, payload]);
        const { packets, rest } = takePackets(mqtt);
        mqtt = Buffer.from(rest);
        for (const p of packets) { conn.packets.push(p); conn.onPacket?.(p); }
        notify();
      }
    });
    const gone = () => { if (!conn.closed) { conn.closed = true; notify(); } };
    socket.on('close', gone);
    socket.on('error', gone);
    onConnection(conn);
    notify();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `ws://127.0.0.1:${port}`,
    conns,
    waitConnections(n, ms = 15_000) {
      return until(() => conns.length >= n && conns[n - 1], ms, () => `fake broker: ${conns.length} of ${n} connections within ${ms} ms`);
    },
    async close() {
      for (const c of conns) c.end();
      await new Promise((r) => server.close(r));
    },
  };
}

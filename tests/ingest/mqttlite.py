"""A minimal MQTT 3.1.1 client over plain TCP (PROTOCOL.md Part 1): clean
session, one QoS 1 subscription, QoS 0/1 in, QoS 1 out, keepalive pings.
Standard library only; reconnecting is the caller's loop. An oversized or
malformed PUBLISH is skipped (acknowledged when it carries a packet id, counted,
reported through `on_skip`) instead of dropping the connection: a broker with no
message size limit would otherwise hand us the same retained message after
every reconnect, and we would never acknowledge anything again (issue #16)."""
import collections, socket, struct, time

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP = 1, 2, 3, 4, 8, 9, 12, 13
MAX_PACKET, PING_TIMEOUT, CONNECT_TIMEOUT = 1 << 20, 5.0, 5.0
# Of a packet over MAX_PACKET we keep this much of its start (topic length,
# topic of up to 65,535 bytes, packet id) to acknowledge it; the rest is skipped.
OVERSIZED_HEAD = 2 + 65535 + 2
OVERSIZED = -1  # the packet type Decoder reports for a skipped oversized packet


class ProtocolError(Exception):
    pass


def packet(ptype, flags, body):
    n, rl = len(body), bytearray()
    while True:
        n, d = n >> 7, n & 127
        rl.append(d | (128 if n else 0))
        if not n:
            return bytes([ptype << 4 | flags]) + bytes(rl) + body


def mstr(b):
    return struct.pack(">H", len(b)) + b


class Decoder:
    """Reassembles a byte stream into (type, flags, body): any split, several per chunk.
    A packet over MAX_PACKET comes out as (OVERSIZED, first byte, (size, head)) with
    only its first OVERSIZED_HEAD body bytes held, never the whole of it."""

    def __init__(self):
        self.buf = bytearray()
        self.skip = None  # [first byte, size, bytes of the body still to skip, head]

    def _skipping(self, out):
        first, size, left, head = self.skip
        take = min(left, len(self.buf))
        if len(head) < OVERSIZED_HEAD:
            head += self.buf[:min(take, OVERSIZED_HEAD - len(head))]
        del self.buf[:take]
        self.skip[2] = left - take
        if self.skip[2] == 0:
            out.append((OVERSIZED, first, (size, bytes(head))))
            self.skip = None

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            if self.skip is not None:
                self._skipping(out)
                if self.skip is not None:
                    return out
            if len(self.buf) < 2:
                return out
            n, i = 0, 1
            while True:
                if i >= len(self.buf):
                    return out
                n |= (self.buf[i] & 127) << (7 * (i - 1))
                i += 1
                if not self.buf[i - 1] & 128:
                    break
                if i == 5:
                    raise ProtocolError("bad remaining length")
            if i + n > MAX_PACKET:
                self.skip = [self.buf[0], i + n, n, bytearray()]
                del self.buf[:i]
                continue
            if len(self.buf) < i + n:
                return out
            out.append((self.buf[0] >> 4, self.buf[0] & 15, bytes(self.buf[i:i + n])))
            del self.buf[:i + n]


class Mqtt:
    """One connection at a time (`session`); QoS 1 publishes not yet acked when a
    connection dies are sent again, as new publishes, on the next one."""

    def __init__(self, host, port, client_id, filt, username=None, password=None, keepalive=30, on_skip=None):
        self.addr, self.client_id, self.filt, self.keepalive = (host, port), client_id, filt, keepalive
        self.username, self.password = username, password
        self.on_skip = on_skip or (lambda reason, topic, size: None)  # (reason, topic or None, bytes)
        self.skipped = collections.Counter()
        self.pid, self.unacked, self.out, self.sock = 0, collections.OrderedDict(), [], None

    def _next_pid(self):
        while True:
            self.pid = self.pid % 65535 + 1
            if self.pid not in self.unacked:
                return self.pid

    def publish(self, topic, payload):  # QoS 1, not retained
        pid = self._next_pid()
        self.unacked[pid] = (topic, payload)
        if self.sock:
            self.out.append(packet(PUBLISH, 2, mstr(topic.encode()) + struct.pack(">H", pid) + payload))

    def _flush(self):
        if self.out:  # everything of one turn in one write
            self.sock.sendall(b"".join(self.out))
            self.out, self.last_sent = [], time.monotonic()

    def session(self, on_message, on_subscribed, stopping):
        """Connects, subscribes, serves until the connection dies (raises
        OSError/ProtocolError) or `stopping()` (returns after DISCONNECT).
        Afterwards `connacked` says whether the broker had accepted us."""
        self.connacked, self.out, dec = False, [], Decoder()
        flags = 2 | (128 if self.username is not None else 0) | (64 if self.username is not None and self.password is not None else 0)
        body = mstr(b"MQTT") + bytes([4, flags]) + struct.pack(">H", self.keepalive) + mstr(self.client_id.encode())
        if self.username is not None:
            body += mstr(self.username.encode()) + (mstr(self.password.encode()) if self.password is not None else b"")
        self.sock = socket.create_connection(self.addr, timeout=CONNECT_TIMEOUT)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.out.append(packet(CONNECT, 0, body))
            self._flush()
            start = self.last_recv = time.monotonic()
            ping_at, sub_pid = None, None
            while not stopping():
                now = time.monotonic()
                if not self.connacked and now - start > CONNECT_TIMEOUT:
                    raise ProtocolError("no CONNACK")
                if ping_at is not None and now - max(ping_at, self.last_recv) > PING_TIMEOUT:
                    raise ProtocolError("no PINGRESP: dead connection")
                if self.connacked and ping_at is None and now - self.last_sent >= self.keepalive:
                    self.out.append(packet(PINGREQ, 0, b""))
                    ping_at = now
                self._flush()
                self.sock.settimeout(0.25)  # short: SIGTERM is noticed quickly
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    raise ProtocolError("connection closed by the broker")
                self.last_recv = time.monotonic()
                for ptype, fl, b in dec.feed(data):
                    if ptype == CONNACK and not self.connacked and fl == 0 and len(b) == 2:
                        if b[1] != 0:
                            raise ProtocolError("CONNACK refused, code %d" % b[1])
                        self.connacked, sub_pid = True, self._next_pid()
                        self.out.append(packet(SUBSCRIBE, 2, struct.pack(">H", sub_pid) + mstr(self.filt.encode()) + b"\x01"))
                    elif not self.connacked:
                        raise ProtocolError("expected CONNACK, got packet type %d" % ptype)
                    elif ptype == PUBLISH:
                        self._on_publish(fl, b, on_message)
                    elif ptype == OVERSIZED and fl >> 4 == PUBLISH:
                        size, head = b
                        self._skip_publish("oversized", fl & 15, head, size)
                    elif ptype == PUBACK and fl == 0 and len(b) == 2:
                        self.unacked.pop(struct.unpack(">H", b)[0], None)  # unknown ids are ignored
                    elif ptype == SUBACK and fl == 0 and len(b) == 3 and struct.unpack(">H", b[:2])[0] == sub_pid:
                        if b[2] not in (0, 1):
                            raise ProtocolError("subscription to %s refused (0x%02x)" % (self.filt, b[2]))
                        for topic, payload in [self.unacked.pop(p) for p in list(self.unacked)]:
                            self.publish(topic, payload)  # resent as new publishes (Part 1 §6)
                        on_subscribed()
                    elif ptype == PINGRESP and fl == 0 and not b:
                        ping_at = None
                    else:
                        raise ProtocolError("unexpected packet type %d (flags %d, %d bytes)" % (ptype, fl, len(b)))
            self.out.append(packet(14, 0, b""))  # DISCONNECT
            self._flush()
        finally:
            self.sock.close()
            self.sock = None

    def _skip_publish(self, reason, fl, head, size):
        """Counts and reports a PUBLISH we will not process; acknowledges it when
        its packet id can be read, so the broker does not hold it in flight."""
        self.skipped[reason] += 1
        qos, topic = fl >> 1 & 3, None
        if len(head) >= 2:
            tl = struct.unpack(">H", head[:2])[0]
            if len(head) >= 2 + tl:
                topic = head[2:2 + tl].decode("utf-8", "replace")
            if qos == 1 and len(head) >= 2 + tl + 2:
                self.out.append(packet(PUBACK, 0, head[2 + tl:2 + tl + 2]))
        self.on_skip(reason, topic, size)

    def _on_publish(self, fl, b, on_message):
        qos = fl >> 1 & 3
        if qos > 1 or (qos == 0 and fl & 8):  # we subscribe at QoS 1: never QoS 2
            return self._skip_publish("malformed", fl, b"", len(b))
        if len(b) < 2:
            return self._skip_publish("malformed", fl, b"", len(b))
        tl = struct.unpack(">H", b[:2])[0]
        hdr = 2 + tl + (2 if qos else 0)
        if len(b) < hdr:
            return self._skip_publish("malformed", fl, b"", len(b))
        try:
            topic = b[2:2 + tl].decode("utf-8")
        except UnicodeDecodeError:
            return self._skip_publish("malformed", fl, b, len(b))
        on_message(topic, b[hdr:])  # stored and acked before the PUBACK
        if qos:
            self.out.append(packet(PUBACK, 0, b[2 + tl:hdr]))

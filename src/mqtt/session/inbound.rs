//! What the session does with each packet from the broker.

use super::*;

impl Session {
    pub(super) fn on_connack(&mut self, ack: ConnAck, now: u64) {
        if ack.code != ConnectReturnCode::Accepted {
            self.reset_transport();
            self.state = State::Disconnected;
            self.events.push_back(SessionEvent::ConnectionRefused { code: ack.code });
            return;
        }
        self.state = State::Connected;
        self.rtt_from = now.saturating_add(RTT_WARMUP_MS);
        self.measure_ping_at = self.cfg.measure_rtt_after_connect.then_some(self.rtt_from);
        self.measure_pings_left = RTT_SEED_SAMPLES;
        self.events.push_back(SessionEvent::Connected { session_present: ack.session_present });
        if ack.session_present {
            // The broker kept our session: it still knows these ids.
            for r in &self.requests {
                send_request(&mut self.tx, r, now);
            }
            // `inflight` is in the order of first transmission.
            for f in self.inflight.iter_mut() {
                let id = f.packet_id;
                f.sent_at = None;
                match f.stage {
                    Stage::Published => self.tx.publish(&f.msg, id, true, now),
                    Stage::Released => self.tx.packet(&Packet::PubRel(id), now),
                }
                self.counters.resent += 1;
            }
        } else {
            // No session on the broker: it knows none of our ids and none of
            // our subscriptions. Unacknowledged publishes go again as new
            // ones (the app must not lose them), in their original order,
            // ahead of everything queued later.
            self.incoming_qos2.clear();
            let old = self.inflight_take_all();
            for f in old.into_iter().rev() {
                self.queue.push_front(f.msg);
            }
            let mut resub: Vec<Request> = Vec::new();
            let mut chunk: Vec<(String, QoS)> = Vec::new();
            let mut size = 5;
            let all: Vec<(String, QoS)> = self.subs.clone();
            for (f, q) in all {
                if !chunk.is_empty() && size + 3 + f.len() > self.cfg.max_packet_size.min(65_536) {
                    resub.push(Request { packet_id: 0, kind: RequestKind::Sub(std::mem::take(&mut chunk)) });
                    size = 5;
                }
                size += 3 + f.len();
                chunk.push((f, q));
            }
            if !chunk.is_empty() {
                resub.push(Request { packet_id: 0, kind: RequestKind::Sub(chunk) });
            }
            for mut r in resub.into_iter().rev() {
                match self.alloc_packet_id() {
                    Some(id) => r.packet_id = id,
                    None => continue,
                }
                self.requests.insert(0, r);
            }
            for r in &self.requests {
                send_request(&mut self.tx, r, now);
            }
        }
        self.flush_queue(now);
    }

    pub(super) fn handle_packet(&mut self, p: Packet, now: u64) -> Result<(), ProtocolError> {
        // Any packet proves the socket is alive: push the PINGRESP deadline
        // out (a large burst may be ahead of the PINGRESP).
        if let Some(ping) = &mut self.ping {
            let at = now.saturating_add(ping.timeout_ms);
            if at > ping.deadline.at {
                ping.deadline = Deadline::new(at);
            }
        }
        if matches!(self.state, State::Connecting { .. }) {
            return match p {
                Packet::ConnAck(ack) => {
                    self.on_connack(ack, now);
                    Ok(())
                }
                other => Err(ProtocolError::UnexpectedPacket(other.name())),
            };
        }
        match p {
            Packet::Publish(publish) => self.on_publish(publish, now),
            Packet::PubAck(id) => {
                let pos = self.inflight_pos(id).filter(|&i| self.inflight[i].msg.qos == QoS::AtLeastOnce);
                if let Some(i) = pos {
                    if let Some(f) = self.inflight_remove(i) {
                        if let Some(t) = f.sent_at {
                            self.rtt.sample_sent_at(t, now, self.rtt_from);
                        }
                        self.events.push_back(SessionEvent::PublishDone { id: f.msg.id });
                    }
                    self.flush_queue(now);
                }
            }
            Packet::PubRec(id) => {
                if let Some(f) = self.inflight_pos(id).and_then(|i| self.inflight.get_mut(i)) {
                    if f.msg.qos == QoS::ExactlyOnce {
                        if f.stage == Stage::Published {
                            if let Some(t) = f.sent_at {
                                self.rtt.sample_sent_at(t, now, self.rtt_from);
                            }
                            f.stage = Stage::Released;
                        }
                        self.tx.packet(&Packet::PubRel(id), now);
                    }
                }
            }
            Packet::PubComp(id) => {
                let pos = self.inflight_pos(id).filter(|&i| self.inflight[i].stage == Stage::Released);
                if let Some(i) = pos {
                    if let Some(f) = self.inflight_remove(i) {
                        self.events.push_back(SessionEvent::PublishDone { id: f.msg.id });
                    }
                    self.flush_queue(now);
                }
            }
            Packet::PubRel(id) => {
                self.incoming_qos2.retain(|&x| x != id);
                self.tx.packet(&Packet::PubComp(id), now);
            }
            Packet::SubAck(ack) => self.on_suback(ack)?,
            Packet::UnsubAck(id) => {
                let pos = self
                    .requests
                    .iter()
                    .position(|r| r.packet_id == id && matches!(r.kind, RequestKind::Unsub(_)));
                if let Some(Request { kind: RequestKind::Unsub(filters), .. }) =
                    pos.map(|i| self.requests.remove(i))
                {
                    for f in &filters {
                        self.sub_remove(f);
                    }
                    self.events.push_back(SessionEvent::Unsubscribed { packet_id: id, filters });
                }
            }
            Packet::PingResp => {
                if let Some(ping) = self.ping.take() {
                    self.rtt.sample_sent_at(ping.sent_at, now, self.rtt_from);
                }
            }
            other => return Err(ProtocolError::UnexpectedPacket(other.name())),
        }
        Ok(())
    }

    fn on_publish(&mut self, p: Publish, now: u64) {
        match p.qos {
            QoS::AtMostOnce => self.events.push_back(SessionEvent::Message(p)),
            QoS::AtLeastOnce => {
                self.tx.packet(&Packet::PubAck(p.packet_id), now);
                self.events.push_back(SessionEvent::Message(p));
            }
            QoS::ExactlyOnce => {
                let id = p.packet_id;
                if !self.incoming_qos2.contains(&id) {
                    self.incoming_qos2.push(id);
                    self.events.push_back(SessionEvent::Message(p));
                }
                self.tx.packet(&Packet::PubRec(id), now);
            }
        }
    }

    fn on_suback(&mut self, ack: SubAck) -> Result<(), ProtocolError> {
        let pos = self
            .requests
            .iter()
            .position(|r| r.packet_id == ack.packet_id && matches!(r.kind, RequestKind::Sub(_)));
        let Some(i) = pos else { return Ok(()) };
        if let Some(RequestKind::Sub(filters)) = self.requests.get(i).map(|r| &r.kind) {
            if filters.len() != ack.return_codes.len() {
                return Err(ProtocolError::SubAckMismatch {
                    requested: filters.len(),
                    returned: ack.return_codes.len(),
                });
            }
        }
        if let Request { kind: RequestKind::Sub(filters), .. } = self.requests.remove(i) {
            let mut results = Vec::with_capacity(filters.len());
            for ((f, asked), code) in filters.into_iter().zip(ack.return_codes) {
                match code {
                    Some(_) => self.sub_insert(f.clone(), asked),
                    None => self.sub_remove(&f),
                }
                results.push((f, code));
            }
            self.events.push_back(SessionEvent::Subscribed { packet_id: ack.packet_id, results });
        }
        Ok(())
    }
}

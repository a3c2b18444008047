//! The tab route: a `BroadcastChannel` named per venue (`venuemesh:{venue}`)
//! joins the tabs of this browser that run the mesh. Every post reaches every
//! other tab, so each message is a tab frame (`routing::wire::tab_frame`,
//! `PROTOCOL.md` Part 4): the recipient's device id (empty = all tabs), then
//! one envelope. Frames for another tab are dropped here; everything else
//! (opening the envelope, what it means) is the shell's and the router's.
//!
//! The sink runs from the channel's `message` event, never inside a call
//! into [`Tabs`] and with no borrow held, so it may call back into the API.

use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::routing::wire::{parse_tab_frame, tab_frame};

/// This tab's end of the venue's BroadcastChannel.
pub struct Tabs {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

/// The channel name for a venue.
pub fn channel_name(venue: &str) -> String {
    format!("venuemesh:{venue}")
}

impl Tabs {
    /// Joins the venue's channel as device `me`; `sink(envelope)` gets every
    /// envelope addressed to `me` or to all tabs.
    pub fn open(venue: &str, me: &str, sink: impl Fn(Vec<u8>) + 'static) -> Result<Tabs, JsValue> {
        let channel = BroadcastChannel::new(&channel_name(venue))?;
        let me = me.to_string();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let data = e.data();
            let bytes = if let Some(a) = data.dyn_ref::<js_sys::Uint8Array>() {
                a.to_vec()
            } else if let Some(b) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                js_sys::Uint8Array::new(b).to_vec()
            } else {
                return; // not ours
            };
            if let Some((to, envelope)) = parse_tab_frame(&bytes) {
                if to.is_none_or(|t| t == me) {
                    sink(envelope.to_vec());
                }
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Ok(Tabs { channel, _on_message: on_message })
    }

    /// Posts one envelope to tab `to`, or to every tab (`None`).
    pub fn post(&self, to: Option<&str>, envelope: &[u8]) -> Result<(), JsValue> {
        let frame = tab_frame(to, envelope);
        self.channel.post_message(&js_sys::Uint8Array::from(frame.as_slice()))
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

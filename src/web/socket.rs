//! One browser WebSocket carrying MQTT: binary frames, subprotocol `mqtt`.
//!
//! The wrapper only turns DOM events into [`SocketEvent`]s; what they mean is
//! the core's business. Handlers are detached on close, so a socket the core
//! has given up on cannot deliver anything afterwards.

use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

#[wasm_bindgen]
extern "C" {
    /// `Uint8Array.prototype.set.call(dst, src)`: copies `src` into wasm
    /// memory in one call. js-sys's `Uint8Array::to_vec` makes four
    /// (`length` three times, then the copy), and this runs per frame.
    #[wasm_bindgen(js_namespace = ["Uint8Array", "prototype", "set"], js_name = call)]
    fn copy_into(dst: &mut [u8], src: &js_sys::Uint8Array);
}

/// The bytes of `view`, `len` long (its `length`), copied into a new `Vec`.
pub(crate) fn copy_out(view: &js_sys::Uint8Array, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    copy_into(&mut bytes, view);
    bytes
}

/// What a socket reports to the runtime.
pub enum SocketEvent {
    Opened,
    /// A binary frame: its bytes, and the `ArrayBuffer` they were copied
    /// from (payloads may be handed to the app as views into it).
    Data(Vec<u8>, js_sys::ArrayBuffer),
    /// A binary frame larger than the socket's limit, by its length. Its
    /// bytes were not copied into wasm memory and must not reach the parser;
    /// the runtime closes the socket (issue #16).
    Oversized(usize),
    Closed,
}

/// A live WebSocket and the closures the browser calls.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Socket {
    /// Starts connecting to `url`. `on_event` is called from browser tasks,
    /// never from inside this call. A frame over `max_frame` bytes is
    /// reported as [`SocketEvent::Oversized`] without copying it: browsers
    /// hand over whole messages only (no way to refuse one by its MQTT
    /// header while it streams in), so this is the first point it can be
    /// refused, and copying 100 MB into wasm memory would grow it for good.
    pub fn open(url: &str, max_frame: usize, on_event: impl Fn(SocketEvent) + 'static) -> Result<Socket, JsValue> {
        let ws = WebSocket::new_with_str(url, "mqtt")?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_event = std::rc::Rc::new(on_event);

        let f = on_event.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| f(SocketEvent::Opened));
        let f = on_event.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            // Binary frames only (MQTT over WebSocket); text frames are ignored.
            // Four calls into JS per frame (data, instanceof, the view and
            // its length, the copy): each costs more than parsing the packet.
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                let view = js_sys::Uint8Array::new(&buf);
                let len = view.length() as usize;
                if len > max_frame {
                    f(SocketEvent::Oversized(len));
                    return;
                }
                f(SocketEvent::Data(copy_out(&view, len), buf));
            }
        });
        let f = on_event.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_| f(SocketEvent::Closed));
        // `error` is always followed by `close`; nothing to do but keep the
        // browser from logging an unhandled event.
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {});

        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_error: on_error })
    }

    /// Sends one binary frame (the core has already coalesced the packets).
    pub fn send(&self, bytes: &[u8]) -> Result<(), JsValue> {
        self.ws.send_with_u8_array(bytes)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

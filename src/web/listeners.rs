//! App callbacks: `on(event, cb)` returns an unsubscribe function, and
//! callbacks are only ever called with no Rust borrow held, so they may call
//! back into the API.

use js_sys::Function;
use wasm_bindgen::prelude::*;

/// Callbacks by name (an event name or an MQTT topic filter).
#[derive(Default)]
pub struct Listeners {
    next_id: u32,
    entries: Vec<(u32, String, Function)>,
}

impl Listeners {
    pub fn add(&mut self, name: &str, f: Function) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.entries.push((self.next_id, name.to_string(), f));
        self.next_id
    }

    /// Removes one callback; returns the name it was registered under.
    pub fn remove(&mut self, id: u32) -> Option<String> {
        let pos = self.entries.iter().position(|(i, _, _)| *i == id)?;
        Some(self.entries.remove(pos).1)
    }

    /// Clones the callbacks of `name`, so they can be called after the
    /// borrow of the owner is released.
    pub fn targets(&self, name: &str) -> Vec<Function> {
        self.entries.iter().filter(|(_, n, _)| n == name).map(|(_, _, f)| f.clone()).collect()
    }

    /// Clones the callbacks whose name satisfies `keep`.
    pub fn targets_where(&self, mut keep: impl FnMut(&str) -> bool) -> Vec<Function> {
        self.entries.iter().filter(|(_, n, _)| keep(n)).map(|(_, _, f)| f.clone()).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(_, n, _)| n == name)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Calls each callback; one that throws is reported and does not stop the
/// others or the library.
pub fn call_all(targets: &[Function], args: &[&JsValue]) {
    for f in targets {
        let result = match args {
            [] => f.call0(&JsValue::NULL),
            [a] => f.call1(&JsValue::NULL, a),
            [a, b, ..] => f.call2(&JsValue::NULL, a, b),
        };
        if let Err(e) = result {
            web_sys::console::error_2(&"venuemesh: an event callback threw".into(), &e);
        }
    }
}

/// Registers `f` under `name` in the [`Listeners`] that `pick` finds in
/// `owner`, and returns the JS function that removes it again. An unknown
/// `name` is the caller's check (each API has its own event list).
pub fn listen<T: 'static>(
    owner: &std::rc::Rc<std::cell::RefCell<T>>,
    pick: fn(&mut T) -> &mut Listeners,
    name: &str,
    f: Function,
) -> Function {
    let id = pick(&mut owner.borrow_mut()).add(name, f);
    let weak = std::rc::Rc::downgrade(owner);
    unsubscribe_fn(move || {
        if let Some(o) = weak.upgrade() {
            // A callback that unsubscribes while its owner is busy (inside
            // a call into it) has nothing to remove it from right now.
            if let Ok(mut o) = o.try_borrow_mut() {
                pick(&mut o).remove(id);
            }
        }
    })
}

/// A JS function that runs `undo` once; later calls do nothing.
pub fn unsubscribe_fn(undo: impl FnOnce() + 'static) -> Function {
    unsubscribe_boxed(Box::new(undo))
}

/// One `Closure` type (and one copy of its glue) for every unsubscribe
/// function, whatever `undo` captures (issue #20: it was one per owner type).
#[inline(never)]
fn unsubscribe_boxed(undo: Box<dyn FnOnce()>) -> Function {
    let mut undo = Some(undo);
    let f = Closure::<dyn FnMut()>::new(move || {
        if let Some(u) = undo.take() {
            u();
        }
    });
    f.into_js_value().unchecked_into()
}

thread_local! {
    /// Open clients and meshes, kept alive until `close()`: an app that
    /// drops its last reference to a connected client must not lose the
    /// connection when the JS garbage collector frees the wrapper (as a
    /// socket keeps an MQTT.js client alive).
    static LIVE: std::cell::RefCell<Vec<(u64, Box<dyn std::any::Any>)>> = const { std::cell::RefCell::new(Vec::new()) };
    static NEXT_LIVE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Keeps `value` alive until [`release`] is called with the returned key.
pub fn keep_alive(value: Box<dyn std::any::Any>) -> u64 {
    let key = NEXT_LIVE.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    LIVE.with(|l| l.borrow_mut().push((key, value)));
    key
}

/// Lets go of what [`keep_alive`] held (dropped outside the registry's borrow).
pub fn release(key: u64) {
    let taken = LIVE.with(|l| {
        let mut l = l.borrow_mut();
        l.iter().position(|(k, _)| *k == key).map(|i| l.swap_remove(i))
    });
    drop(taken);
}

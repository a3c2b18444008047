//! Browser tests (wasm-bindgen-test in headless Chromium): the shell against
//! real IndexedDB and, where a test says so, the Mosquitto the test script
//! starts on ws://127.0.0.1:9001. One file = one browser start, so browser
//! tests are grouped here by concern in modules.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn options(pairs: &[(&str, &str)]) -> JsValue {
    let obj = js_sys::Object::new();
    for (k, v) in pairs {
        js_sys::Reflect::set(&obj, &(*k).into(), &(*v).into()).unwrap();
    }
    obj.into()
}

fn code_of(err: &JsValue) -> String {
    js_sys::Reflect::get(err, &"code".into()).ok().and_then(|c| c.as_string()).unwrap_or_default()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

mod identity {
    use super::*;
    use venuemesh::web::VenueMesh;

    #[wasm_bindgen_test]
    fn version_is_the_crate_version() {
        assert_eq!(venuemesh::web::version(), env!("CARGO_PKG_VERSION"));
    }

    #[wasm_bindgen_test]
    async fn device_id_survives_reopen_and_differs_per_database() {
        let db = unique("vm-identity");
        let first = VenueMesh::open(options(&[("venue", "v1"), ("dbName", &db)])).await.unwrap();
        let id = first.device_id();
        assert!(uuid_v4_like(&id), "not a UUID v4: {id}");
        first.close();
        first.close(); // twice is harmless

        let again = VenueMesh::open(options(&[("venue", "v1"), ("dbName", &db)])).await.unwrap();
        assert_eq!(again.device_id(), id, "the id must survive a reopen");
        again.close();

        let other = VenueMesh::open(options(&[("venue", "v1"), ("dbName", &unique("vm-other"))])).await.unwrap();
        assert_ne!(other.device_id(), id);
        other.close();
    }

    #[wasm_bindgen_test]
    async fn bad_options_are_typed_errors() {
        for bad in [
            options(&[]),
            options(&[("venue", "")]),
            options(&[("venue", "a/b")]),
            options(&[("venue", "v"), ("dbNmae", "typo")]),
            JsValue::from_str("not an object"),
        ] {
            let shown = format!("{bad:?}");
            let err = VenueMesh::open(bad).await.err().unwrap_or_else(|| panic!("must be rejected: {shown}"));
            assert_eq!(code_of(&err), "INVALID_OPTIONS");
            let name = js_sys::Reflect::get(&err, &"name".into()).unwrap();
            assert_eq!(name.as_string().as_deref(), Some("VenueMeshError"));
        }
    }

    fn uuid_v4_like(s: &str) -> bool {
        let b = s.as_bytes();
        s.len() == 36 && b[14] == b'4' && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
    }
}

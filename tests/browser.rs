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

/// The broker scripts/test starts (nothing needs to answer for these tests).
const BROKER: &str = match option_env!("VM_TEST_BROKER") {
    Some(b) => b,
    None => "ws://127.0.0.1:19001",
};

/// Credentials for a fresh device of `venue` in database `db` (issue #15): the
/// page makes its key (`createPairingRequest`), a CA made here certifies it,
/// the bundle JSON comes back for `open({ credentials })`.
async fn credentials_for(venue: &str, db: &str) -> String {
    use venuemesh::trust::{base64_decode, signing_key, Bundle, Cert, Chain, Role};
    let req = venuemesh::web::VenueMesh::create_pairing_request(options(&[("venue", venue), ("dbName", db)])).await.unwrap();
    let field = |k: &str| js_sys::Reflect::get(&req, &k.into()).unwrap().as_string().unwrap();
    let device = field("device");
    let pk: [u8; 32] = base64_decode(&field("publicKey")).unwrap().try_into().unwrap();
    let root = signing_key(&[1; 32]);
    let cloud = signing_key(&[2; 32]);
    let chain = Chain(vec![Cert::issue(&root, Role::Device, venue, &device, pk, 0, 0).unwrap()]);
    let cloud_chain = Chain(vec![Cert::issue(&root, Role::Cloud, venue, "cloud", cloud.verifying_key().to_bytes(), 0, 0).unwrap()]);
    let bundle = Bundle { venue: venue.into(), device, root_pk: root.verifying_key().to_bytes(), chain, cloud_chain, key_epoch: 1, content_key: [3; 32], crl: None };
    bundle.to_json()
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
        let creds = credentials_for("v1", &db).await;
        let first = VenueMesh::open(options(&[("venue", "v1"), ("credentials", &creds), ("brokers", BROKER), ("dbName", &db)])).await.unwrap();
        let id = first.device_id();
        assert!(uuid_v4_like(&id), "not a UUID v4: {id}");
        first.close();
        first.close(); // twice is harmless

        // No credentials: the ones stored by the first open.
        let again = VenueMesh::open(options(&[("venue", "v1"), ("brokers", BROKER), ("dbName", &db)])).await.unwrap();
        assert_eq!(again.device_id(), id, "the id must survive a reopen");
        again.close();

        let other_db = unique("vm-other");
        let creds = credentials_for("v1", &other_db).await;
        let other = VenueMesh::open(options(&[("venue", "v1"), ("credentials", &creds), ("brokers", BROKER), ("dbName", &other_db)])).await.unwrap();
        assert_ne!(other.device_id(), id);
        other.close();
    }

    #[wasm_bindgen_test]
    async fn bad_options_are_typed_errors() {
        for bad in [
            options(&[]),
            options(&[("venue", "")]),
            options(&[("venue", "a/b")]),
            options(&[("venue", "v"), ("brokers", BROKER), ("dbNmae", "typo")]),
            options(&[("venue", "v")]),
            // the venue key of envelope v1 is gone (issue #15): an unknown option now
            options(&[("venue", "v"), ("venueKey", "test-venue-key-0123456789"), ("brokers", BROKER)]),
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

/// `CommandQueue` against real IndexedDB: group commit, typed failures,
/// connection loss, persistence across close/reopen (page reloads are in
/// tests/e2e/queue.test.mjs).
mod queue {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::rc::Rc;

    use js_sys::{Array, Promise, Reflect};
    use venuemesh::web::CommandQueue;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    const LOST: &str = "Connection to Indexed Database server lost. Refresh the page to try again";

    fn open_options(db: &str, extra: &[(&str, JsValue)]) -> JsValue {
        let o = options(&[("dbName", db)]);
        for (k, v) in extra {
            Reflect::set(&o, &(*k).into(), v).unwrap();
        }
        o
    }

    async fn open(db: &str) -> CommandQueue {
        CommandQueue::open(open_options(db, &[])).await.expect("CommandQueue.open")
    }

    async fn settle(p: Promise) -> Result<JsValue, JsValue> {
        JsFuture::from(p).await
    }

    async fn settle_all(ps: Vec<Promise>) -> Vec<Result<JsValue, JsValue>> {
        let mut out = Vec::with_capacity(ps.len());
        for p in ps {
            out.push(settle(p).await);
        }
        out
    }

    fn field(v: &JsValue, k: &str) -> JsValue {
        Reflect::get(v, &k.into()).unwrap_or(JsValue::UNDEFINED)
    }

    fn num(v: &JsValue, k: &str) -> f64 {
        field(v, k).as_f64().unwrap_or_else(|| panic!("{k} is not a number in {v:?}"))
    }

    fn text(v: &JsValue, k: &str) -> String {
        field(v, k).as_string().unwrap_or_default()
    }

    fn enqueue(q: &CommandQueue, topic: &str, payload: &str) -> Promise {
        q.enqueue(topic.into(), payload.into(), JsValue::UNDEFINED)
    }

    fn strings(a: &Array) -> Vec<String> {
        a.iter().map(|v| v.as_string().expect("string id")).collect()
    }

    fn ids_of(q: &CommandQueue, status: &str) -> Vec<String> {
        strings(&q.list_ids(status.into(), JsValue::UNDEFINED).unwrap())
    }

    async fn list(q: &CommandQueue, status: &str) -> Vec<JsValue> {
        let a: Array = settle(q.list(status.into(), JsValue::UNDEFINED)).await.expect("list()").unchecked_into();
        a.iter().collect()
    }

    fn payload_text(cmd: &JsValue) -> String {
        let bytes = js_sys::Uint8Array::new(&field(cmd, "payload")).to_vec();
        String::from_utf8(bytes).expect("utf-8 payload")
    }

    /// Payloads of every stored command in `status`, asserting each id once.
    async fn payloads(q: &CommandQueue, status: &str) -> Vec<String> {
        let cmds = list(q, status).await;
        let ids: HashSet<String> = cmds.iter().map(|c| text(c, "id")).collect();
        assert_eq!(ids.len(), cmds.len(), "an id listed twice");
        cmds.iter().map(payload_text).collect()
    }

    fn assert_unique(v: &[String], what: &str) {
        let set: HashSet<&String> = v.iter().collect();
        assert_eq!(set.len(), v.len(), "duplicates among {what}: {v:?}");
    }

    #[wasm_bindgen_test]
    async fn concurrent_enqueues_commit_in_one_transaction_and_each_caller_resolves() {
        let db = unique("vm-q-group");
        let q = open(&db).await;
        // 300 calls in one turn: one batch, one strict transaction.
        let ps: Vec<Promise> = (0..300).map(|i| enqueue(&q, "sale", &format!("{{\"n\":{i}}}"))).collect();
        let results = settle_all(ps).await;
        let ids: Vec<String> = results.into_iter().map(|r| r.expect("enqueue resolves").as_string().expect("an id")).collect();
        assert_unique(&ids, "resolved ids");
        let stats = q.stats();
        assert_eq!(num(&stats, "transactions"), 1.0, "group commit: one transaction for the burst: {stats:?}");
        assert_eq!(num(&stats, "recordsWritten"), 300.0);
        assert_eq!(q.pending_count(), 300);
        assert_eq!(num(&q.count_by_status(), "pending"), 300.0);
        assert!(q.oldest_pending_age_ms().as_f64().is_some(), "oldest pending age is a number");
        // Read back: every payload, in enqueue order (oldest first).
        let stored = payloads(&q, "pending").await;
        let want: Vec<String> = (0..300).map(|i| format!("{{\"n\":{i}}}")).collect();
        let mut sorted_stored = stored.clone();
        sorted_stored.sort();
        let mut sorted_want = want.clone();
        sorted_want.sort();
        assert_eq!(sorted_stored, sorted_want, "payloads intact");
        assert_eq!(ids_of(&q, "pending").len(), 300);
        q.close();
        // And after reopening, the same 300 ids.
        let again = open(&db).await;
        let mut reloaded = ids_of(&again, "pending");
        let mut resolved = ids;
        reloaded.sort();
        resolved.sort();
        assert_eq!(reloaded, resolved, "exactly the resolved commands are stored");
        again.close();
    }

    #[wasm_bindgen_test]
    async fn quota_error_rejects_every_caller_of_the_batch_typed_and_writes_nothing() {
        let db = unique("vm-q-quota");
        let q = open(&db).await;
        q.fail_next_commit_for_test("QuotaExceededError", None, None, None);
        let ps: Vec<Promise> = (0..50).map(|i| enqueue(&q, "sale", &format!("lost-{i}"))).collect();
        for r in settle_all(ps).await {
            let err = r.expect_err("the batch must be rejected");
            assert_eq!(code_of(&err), "QUEUE_FULL", "typed: {err:?}");
            assert_eq!(text(&err, "detail"), "QUOTA_EXCEEDED");
            assert_eq!(text(&err, "name"), "VenueMeshError");
        }
        assert_eq!(q.pending_count(), 0, "nothing of the failed batch is queued");
        assert!(num(&q.stats(), "failedTransactions") >= 1.0);
        // The queue stays usable.
        let ok = settle(enqueue(&q, "sale", "kept")).await.expect("next enqueue works").as_string().unwrap();
        q.close();
        let again = open(&db).await;
        assert_eq!(ids_of(&again, "pending"), vec![ok], "only the later command is stored");
        assert_eq!(payloads(&again, "pending").await, vec!["kept".to_string()]);
        again.close();
    }

    #[wasm_bindgen_test]
    async fn closed_connection_under_the_queue_is_reopened_and_the_batch_retried() {
        let db = unique("vm-q-closed");
        let q = open(&db).await;
        let first = settle(enqueue(&q, "sale", "before")).await.expect("enqueue").as_string().unwrap();
        q.close_database_for_test();
        let ps: Vec<Promise> = (0..20).map(|i| enqueue(&q, "sale", &format!("after-{i}"))).collect();
        for r in settle_all(ps).await {
            r.expect("enqueue after the connection was closed resolves (reopen + retry)");
        }
        assert_eq!(num(&q.stats(), "reopens"), 1.0);
        // Status writes and inbox marks go through the same reopen rule.
        q.close_database_for_test();
        let out = q.peer_acked(first.clone().into()).unwrap();
        assert_eq!(num(&out, "accepted"), 1.0);
        assert_eq!(settle(q.mark_processed("msg-1".into())).await.unwrap(), JsValue::TRUE);
        settle(q.flush()).await.expect("flush");
        assert_eq!(q.status(first.clone().into()).as_string().as_deref(), Some("peer_ack"));
        assert_eq!(num(&q.stats(), "reopens"), 2.0);
        q.close();
        let again = open(&db).await;
        let mut stored = payloads(&again, "pending").await;
        stored.sort();
        let mut want: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
        want.sort();
        assert_eq!(stored, want, "each command once");
        assert_eq!(ids_of(&again, "peer_ack"), vec![first]);
        assert!(again.is_processed("msg-1".into()).unwrap());
        again.close();
    }

    #[wasm_bindgen_test]
    async fn connection_lost_after_the_data_landed_is_retried_once_without_duplicates() {
        let db = unique("vm-q-lost");
        let q = open(&db).await;
        // Committed, then reported lost (WebKit): the retry writes the same
        // ids again, which must not duplicate anything.
        q.fail_next_commit_for_test("UnknownError", Some(LOST.into()), Some(1), Some(true));
        let ps: Vec<Promise> = (0..30).map(|i| enqueue(&q, "sale", &format!("ok-{i}"))).collect();
        let ids: Vec<String> = settle_all(ps).await.into_iter().map(|r| r.expect("resolves after one retry").as_string().unwrap()).collect();
        assert_eq!(num(&q.stats(), "reopens"), 1.0);
        // Lost twice: final. The write landed, so the queue deletes it again
        // (compensation): a rejected command must not come back.
        q.fail_next_commit_for_test("UnknownError", Some(LOST.into()), Some(2), Some(true));
        let ps: Vec<Promise> = (0..10).map(|i| enqueue(&q, "sale", &format!("gone-{i}"))).collect();
        for r in settle_all(ps).await {
            let err = r.expect_err("a second loss is final");
            assert_eq!(code_of(&err), "STORAGE");
            assert_eq!(text(&err, "detail"), "STORAGE_CONNECTION_LOST");
        }
        settle(q.flush()).await.expect("flush (compensating delete)");
        q.close();
        let again = open(&db).await;
        let mut stored = ids_of(&again, "pending");
        stored.sort();
        let mut want = ids;
        want.sort();
        assert_eq!(stored, want, "exactly the resolved commands, once each");
        again.close();
    }

    #[wasm_bindgen_test]
    async fn statuses_and_retries_persist_across_reopen() {
        let db = unique("vm-q-status");
        let q = open(&db).await;
        let changes = Rc::new(RefCell::new(Vec::<String>::new()));
        let c2 = changes.clone();
        let cb = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            c2.borrow_mut().push(format!("{}:{}>{}", text(&e, "id"), text(&e, "from"), text(&e, "to")));
        });
        let _off = q.on("statusChanged", cb.into_js_value().unchecked_into()).unwrap();
        let ps: Vec<Promise> = ["a", "b", "c", "d"].iter().map(|p| enqueue(&q, "sale", p)).collect();
        let ids: Vec<String> = settle_all(ps).await.into_iter().map(|r| r.unwrap().as_string().unwrap()).collect();
        let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
        assert_eq!(num(&q.peer_acked(a.as_str().into()).unwrap(), "accepted"), 1.0);
        assert_eq!(num(&q.cloud_acked(Array::of1(&b.as_str().into()).into()).unwrap(), "accepted"), 1.0);
        for _ in 0..3 {
            assert_eq!(num(&q.upload_failed(c.as_str().into(), "timeout".into()).unwrap(), "accepted"), 1.0);
        }
        assert_eq!(num(&q.peer_acked(a.as_str().into()).unwrap(), "unchanged"), 1.0, "a duplicate ack changes nothing");
        let unknown = q.peer_acked("nope".into()).unwrap();
        let rejected: Array = field(&unknown, "rejected").unchecked_into();
        assert_eq!(text(&rejected.get(0), "detail"), "UNKNOWN_COMMAND");
        settle(q.flush()).await.expect("flush");
        let seen = changes.borrow().clone();
        for want in [format!("{a}:pending>peer_ack"), format!("{b}:pending>cloud_ack"), format!("{c}:pending>failed")] {
            assert!(seen.contains(&want), "statusChanged {want} missing from {seen:?}");
        }
        q.close();

        let q = open(&db).await;
        let counts = q.count_by_status();
        for (k, n) in [("pending", 1.0), ("peerAck", 1.0), ("cloudAck", 1.0), ("failed", 1.0)] {
            assert_eq!(num(&counts, k), n, "{k} after reopen: {counts:?}");
        }
        assert_eq!(q.status(d.as_str().into()).as_string().as_deref(), Some("pending"));
        let failed = list(&q, "failed").await;
        assert_eq!(failed.len(), 1);
        assert_eq!(text(&failed[0], "id"), *c);
        assert_eq!(num(&failed[0], "retryCount"), 3.0, "max retries is 3 by default");
        assert_eq!(text(&failed[0], "lastError"), "timeout");
        let err = q.retry(a.as_str().into()).expect_err("retry of a peer_ack command");
        assert_eq!((code_of(&err), text(&err, "detail")), ("INVALID_ARGUMENT".into(), "INVALID_TRANSITION".into()));
        q.retry(c.as_str().into()).expect("failed → pending");
        settle(q.flush()).await.expect("flush");
        q.close();

        let q = open(&db).await;
        assert_eq!(q.status(c.as_str().into()).as_string().as_deref(), Some("pending"));
        let pending = list(&q, "pending").await;
        let c_rec = pending.iter().find(|r| text(r, "id") == *c).expect("c is pending again");
        assert_eq!(num(c_rec, "retryCount"), 0.0);
        assert!(field(c_rec, "lastError").is_null() || !text(c_rec, "lastError").is_empty());
        q.close();
    }

    #[wasm_bindgen_test]
    async fn max_retries_is_configurable() {
        let db = unique("vm-q-retries");
        let q = CommandQueue::open(open_options(&db, &[("maxRetries", 1.into())])).await.unwrap();
        let id = settle(enqueue(&q, "sale", "x")).await.unwrap().as_string().unwrap();
        q.upload_failed(id.as_str().into(), "offline".into()).unwrap();
        settle(q.flush()).await.unwrap();
        assert_eq!(q.status(id.as_str().into()).as_string().as_deref(), Some("failed"));
        assert_eq!(num(&q.stats(), "maxRetries"), 1.0);
        q.close();
    }

    #[wasm_bindgen_test]
    async fn inbox_dedup_survives_reopen() {
        let db = unique("vm-q-inbox");
        let q = open(&db).await;
        assert_eq!(settle(q.mark_processed("m1".into())).await.unwrap(), JsValue::TRUE);
        assert_eq!(settle(q.mark_processed("m1".into())).await.unwrap(), JsValue::FALSE, "duplicate");
        assert!(q.is_processed("m1".into()).unwrap());
        assert!(!q.is_processed("m2".into()).unwrap());
        q.close();
        let q = open(&db).await;
        assert!(q.is_processed("m1".into()).unwrap(), "the mark survives a reopen");
        assert_eq!(settle(q.mark_processed("m1".into())).await.unwrap(), JsValue::FALSE);
        assert_eq!(settle(q.mark_processed("m2".into())).await.unwrap(), JsValue::TRUE);
        assert_eq!(num(&q.stats(), "inboxSize"), 2.0);
        q.close();
    }

    #[wasm_bindgen_test]
    async fn misuse_limits_and_close_are_typed_errors() {
        for bad in [options(&[]), options(&[("dbName", "")]), options(&[("dbName", "x"), ("bogus", "1")])] {
            let err = CommandQueue::open(bad).await.err().expect("bad options are rejected");
            assert_eq!(code_of(&err), "INVALID_OPTIONS");
        }
        let db = unique("vm-q-misuse");
        let q = CommandQueue::open(open_options(&db, &[("maxQueued", 2.into())])).await.unwrap();
        let stats = q.stats();
        let persistent = field(&stats, "persistent");
        assert!(persistent.is_null() || persistent.as_bool().is_some(), "persistent is a boolean or null: {persistent:?}");
        for (topic, payload, detail) in [
            (JsValue::from(5), JsValue::from("x"), ""),
            ("".into(), "x".into(), "EMPTY_TOPIC"),
            ("t".into(), js_sys::Object::new().into(), ""),
        ] {
            let err = settle(q.enqueue(topic, payload, JsValue::UNDEFINED)).await.expect_err("invalid enqueue");
            assert_eq!(code_of(&err), "INVALID_ARGUMENT");
            if !detail.is_empty() {
                assert_eq!(text(&err, "detail"), detail);
            }
        }
        let ps = vec![enqueue(&q, "t", "1"), enqueue(&q, "t", "2"), enqueue(&q, "t", "3")];
        let results = settle_all(ps).await;
        assert!(results[0].is_ok() && results[1].is_ok());
        let full = results[2].clone().expect_err("maxQueued reached");
        assert_eq!((code_of(&full), text(&full, "detail")), ("QUEUE_FULL".into(), "QUEUE_FULL".into()));
        assert_eq!(code_of(&settle(q.list("bogus".into(), JsValue::UNDEFINED)).await.unwrap_err()), "INVALID_ARGUMENT");
        assert!(q.on("bogus", js_sys::Function::new_no_args("")).is_err());
        q.close();
        q.close(); // twice is harmless
        assert!(q.closed());
        assert_eq!(code_of(&settle(enqueue(&q, "t", "late")).await.unwrap_err()), "CLOSED");
        assert_eq!(code_of(&settle(q.mark_processed("m".into())).await.unwrap_err()), "CLOSED");
        assert_eq!(code_of(&q.peer_acked("x".into()).unwrap_err()), "CLOSED");
    }

    #[wasm_bindgen_test]
    async fn close_rejects_commands_not_yet_written_with_closed() {
        let db = unique("vm-q-close");
        let q = open(&db).await;
        let kept = settle(enqueue(&q, "t", "kept")).await.unwrap().as_string().unwrap();
        let ps: Vec<Promise> = (0..5).map(|i| enqueue(&q, "t", &format!("late-{i}"))).collect();
        q.close(); // same turn: their batch was never issued
        for r in settle_all(ps).await {
            assert_eq!(code_of(&r.expect_err("rejected by close()")), "CLOSED");
        }
        let again = open(&db).await;
        assert_eq!(ids_of(&again, "pending"), vec![kept]);
        again.close();
    }
}

/// What a browser without WebRTC, the Battery and Network Information APIs
/// or `navigator.storage.persist` gets — Safari's engine as this suite runs
/// it (WebKitGTK's MiniBrowser) has none of them, iOS Safari lacks the middle
/// two. Each test hides the APIs itself, so it checks the same fallbacks in
/// Chromium, which has them all.
mod fallbacks {
    use super::*;
    use js_sys::{Array, Function, Reflect};
    use venuemesh::web::{CommandQueue, VenueMesh};
    use wasm_bindgen::JsCast;

    /// Shadows each global or `navigator.*` name with `undefined` until the
    /// guard is dropped (own properties restored, shadows deleted).
    struct Hidden(Function);

    impl Drop for Hidden {
        fn drop(&mut self) {
            let _ = self.0.call0(&JsValue::NULL);
        }
    }

    fn hide(names: &[&str]) -> Hidden {
        let hide = Function::new_with_args(
            "names",
            "const undo = names.map((n) => {
               const [o, k] = n.startsWith('navigator.') ? [navigator, n.slice(10)] : [globalThis, n];
               const own = Object.getOwnPropertyDescriptor(o, k);
               Object.defineProperty(o, k, { value: undefined, configurable: true, writable: true });
               return () => (own ? Object.defineProperty(o, k, own) : delete o[k]);
             });
             return () => undo.forEach((f) => f());",
        );
        let names: Array = names.iter().map(|n| JsValue::from_str(n)).collect();
        Hidden(hide.call1(&JsValue::NULL, &names).unwrap().unchecked_into())
    }

    fn get(v: &JsValue, path: &str) -> JsValue {
        path.split('.').fold(v.clone(), |o, k| Reflect::get(&o, &k.into()).unwrap_or(JsValue::UNDEFINED))
    }

    async fn open_mesh(extra: &[(&str, JsValue)]) -> VenueMesh {
        let (venue, db) = (unique("vm-fb"), unique("vm-fb"));
        let creds = credentials_for(&venue, &db).await;
        let o = options(&[("venue", &venue), ("credentials", &creds), ("brokers", BROKER), ("dbName", &db)]);
        for (k, v) in extra {
            Reflect::set(&o, &(*k).into(), v).unwrap();
        }
        VenueMesh::open(o).await.expect("VenueMesh.open")
    }

    #[wasm_bindgen_test]
    async fn without_rtc_peer_connection_the_mesh_opens_and_says_webrtc_is_unavailable() {
        {
            let _gone = hide(&["RTCPeerConnection"]);
            assert!(!venuemesh::web::rtc::supported());
            let mesh = open_mesh(&[]).await;
            let routes = get(&mesh.get_detailed_stats(), "routes");
            assert_eq!(get(&routes, "webrtc").as_string().as_deref(), Some("unavailable"), "{routes:?}");
            assert_eq!(get(&routes, "tab").as_string().as_deref(), Some("on"), "BroadcastChannel carries the tab route");
            // Sending still works: to a device that is not there yet, it waits for a route.
            mesh.send("some-device", "hello".into()).expect("send without WebRTC");
            mesh.close();
        }
        // `webrtc: false` is the app's choice, said apart from a missing API.
        let mesh = open_mesh(&[("webrtc", JsValue::FALSE)]).await;
        assert_eq!(get(&mesh.get_detailed_stats(), "routes.webrtc").as_string().as_deref(), Some("off"));
        mesh.close();
        let mesh = open_mesh(&[]).await;
        let want = if venuemesh::web::rtc::supported() { "on" } else { "unavailable" };
        assert_eq!(get(&mesh.get_detailed_stats(), "routes.webrtc").as_string().as_deref(), Some(want));
        mesh.close();
    }

    #[wasm_bindgen_test]
    async fn without_battery_and_network_information_the_host_app_provides_the_device_info() {
        let _gone = hide(&["navigator.getBattery", "navigator.connection"]);
        // Nothing known: an iPad scores its unplugged base and no power points (never a guess upwards).
        let bare = open_mesh(&[("deviceInfo", options(&[("kind", "ipad")]))]).await;
        let s = bare.get_detailed_stats();
        assert!(get(&s, "deviceInfo.charging").is_null(), "{s:?}");
        assert!(get(&s, "deviceInfo.batteryPercent").is_null());
        assert!(get(&s, "deviceInfo.wifiQuality").is_null(), "no Network Information API: measured RTT stands in later");
        assert_eq!(get(&s, "scoreBreakdown.base").as_f64(), Some(250.0));
        assert_eq!(get(&s, "scoreBreakdown.power").as_f64(), Some(0.0));
        // What the host app passes is what counts.
        let info = options(&[("kind", "ipad")]);
        Reflect::set(&info, &"charging".into(), &JsValue::TRUE).unwrap();
        Reflect::set(&info, &"wifiQuality".into(), &JsValue::from(7)).unwrap();
        bare.set_device_info(info).expect("setDeviceInfo");
        let s = bare.get_detailed_stats();
        assert_eq!(get(&s, "deviceInfo.charging").as_bool(), Some(true));
        assert_eq!(get(&s, "scoreBreakdown.base").as_f64(), Some(500.0), "a charging iPad");
        assert_eq!(get(&s, "scoreBreakdown.power").as_f64(), Some(50.0));
        assert_eq!(get(&s, "scoreBreakdown.wifi").as_f64(), Some(70.0));
        bare.close();
    }

    #[wasm_bindgen_test]
    async fn without_storage_persist_the_queue_reports_best_effort_storage() {
        let _gone = hide(&["navigator.storage"]);
        let q = CommandQueue::open(options(&[("dbName", &unique("vm-fb-persist"))])).await.expect("CommandQueue.open");
        assert_eq!(get(&q.stats(), "persistent").as_bool(), Some(false), "best effort, not unknown");
        q.close();
    }
}

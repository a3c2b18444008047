//! The device's own Ed25519 key at rest (issue #15): generated here from
//! `crypto.getRandomValues`, kept in the `meta` store of the mesh's
//! IndexedDB, **wrapped** by an AES-GCM key that WebCrypto created
//! non-extractable. The `CryptoKey` object itself is stored in the same
//! record (structured clone keeps it non-extractable), so script with access
//! to the origin's IndexedDB can use the key on this device but never read
//! its bytes out of a stolen database copy or a backup. (The 32-byte Ed25519
//! seed is in wasm memory while the mesh runs: WebCrypto's Ed25519 is not in
//! every browser this package supports, and the core signs in Rust.)
//!
//! Record `device_key`: `{ v: 1, device, wrapKey: CryptoKey(AES-GCM 256,
//! non-extractable, encrypt/decrypt), iv: Uint8Array(12), sealed:
//! Uint8Array(48) }`; `sealed` = AES-GCM(seed) with the device id as
//! additional data, so a record copied under another device id does not open.
//!
//! The other secrets at rest — the credential bundle (it holds the venue
//! content key) and the trust record's content keys — are sealed under the
//! same wrapping key ([`seal_record`], [`open_record`]): IndexedDB holds no
//! raw key bytes.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AesGcmParams, CryptoKey, SubtleCrypto};

use super::errors::{js_error, ErrorCode};
use super::idb::Db;
use super::js::ObjBuilder;
use super::meta;

const RECORD: &str = "device_key";

/// A device key read back from storage.
pub struct DeviceKey {
    /// The device id the key was created for.
    pub device: String,
    /// The Ed25519 seed (secret).
    pub seed: [u8; 32],
}

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceKey").field("device", &self.device).finish_non_exhaustive()
    }
}

fn crypto() -> Result<web_sys::Crypto, JsValue> {
    let global: JsValue = js_sys::global().into();
    Reflect::get(&global, &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok())
        .ok_or_else(|| js_error(ErrorCode::Storage, "this browser has no WebCrypto (crypto.subtle needs https or localhost)", None))
}

fn subtle() -> Result<SubtleCrypto, JsValue> {
    Ok(crypto()?.subtle())
}

/// `n` bytes from the platform CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], JsValue> {
    let mut out = [0u8; N];
    crypto()?
        .get_random_values_with_u8_array(&mut out)
        .map_err(|e| js_error(ErrorCode::Storage, "crypto.getRandomValues failed", Some(&e)))?;
    Ok(out)
}

fn gcm(iv: &[u8], device: &str) -> AesGcmParams {
    let params = AesGcmParams::new("AES-GCM", &Uint8Array::from(iv).into());
    params.set_additional_data(&Uint8Array::from(device.as_bytes()).into());
    params
}

fn crypto_err(what: &str) -> impl Fn(JsValue) -> JsValue + '_ {
    move |e| js_error(ErrorCode::Storage, what, Some(&e))
}

/// Creates a fresh key for `device`, stores it wrapped, and returns it.
/// Replaces any earlier key of this database (a device re-pairing under a new id).
pub async fn create(db: &Db, device: &str) -> Result<DeviceKey, JsValue> {
    let seed = random_bytes::<32>()?;
    let iv = random_bytes::<12>()?;
    let subtle = subtle()?;
    let alg: Object = ObjBuilder::new().set("name", "AES-GCM").set("length", 256.0).build().unchecked_into();
    let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
    let wrap = JsFuture::from(subtle.generate_key_with_object(&alg, false, &usages).map_err(crypto_err("could not create the key-wrapping key"))?)
        .await
        .map_err(crypto_err("could not create the key-wrapping key"))?;
    let wrap: CryptoKey = wrap.unchecked_into();
    let sealed = JsFuture::from(
        subtle.encrypt_with_object_and_u8_array(&gcm(&iv, device), &wrap, &seed).map_err(crypto_err("could not wrap the device key"))?,
    )
    .await
    .map_err(crypto_err("could not wrap the device key"))?;
    let record = ObjBuilder::new()
        .set("v", 1.0)
        .set("device", device)
        .set("wrapKey", wrap)
        .set("iv", Uint8Array::from(&iv[..]))
        .set("sealed", Uint8Array::new(&sealed))
        .build();
    meta::put(db, RECORD, &record).await.map_err(|e| e.to_js("could not store the device key"))?;
    Ok(DeviceKey { device: device.to_string(), seed })
}

/// The stored key, unwrapped; `None` when this database has none (never
/// paired, or its storage was cleared).
pub async fn load(db: &Db) -> Result<Option<DeviceKey>, JsValue> {
    let Some(record) = meta::get(db, RECORD).await.map_err(|e| e.to_js("could not read the device key"))? else {
        return Ok(None);
    };
    let field = |k: &str| Reflect::get(&record, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let broken = || js_error(ErrorCode::Storage, "the stored device key record is damaged", None);
    let device = field("device").as_string().ok_or_else(broken)?;
    let wrap: CryptoKey = field("wrapKey").dyn_into().map_err(|_| broken())?;
    let iv = field("iv").dyn_into::<Uint8Array>().map_err(|_| broken())?.to_vec();
    let sealed = field("sealed").dyn_into::<Uint8Array>().map_err(|_| broken())?.to_vec();
    let plain = JsFuture::from(
        subtle()?.decrypt_with_object_and_u8_array(&gcm(&iv, &device), &wrap, &sealed).map_err(crypto_err("could not unwrap the device key"))?,
    )
    .await
    .map_err(crypto_err("could not unwrap the device key (its record was altered)"))?;
    let plain = Uint8Array::new(&plain).to_vec();
    let seed: [u8; 32] = plain.try_into().map_err(|_| broken())?;
    Ok(Some(DeviceKey { device, seed }))
}

/// The device id and wrapping key of this database's device key (`None`:
/// no device key).
async fn wrap_key(db: &Db) -> Result<Option<(String, CryptoKey)>, JsValue> {
    let Some(record) = meta::get(db, RECORD).await.map_err(|e| e.to_js("could not read the device key"))? else {
        return Ok(None);
    };
    let broken = || js_error(ErrorCode::Storage, "the stored device key record is damaged", None);
    let device = Reflect::get(&record, &"device".into()).ok().and_then(|d| d.as_string()).ok_or_else(broken)?;
    let wrap: CryptoKey = Reflect::get(&record, &"wrapKey".into()).map_err(|_| broken())?.dyn_into().map_err(|_| broken())?;
    Ok(Some((device, wrap)))
}

/// Other secrets at rest (the credential bundle, which holds the venue
/// content key, and the content keys of the trust record) are sealed the
/// same way as the device key: AES-GCM under the same non-extractable
/// WebCrypto key, a fresh IV each time, and `device ‖ 0 ‖ name` (the
/// record's name) as additional data, so a sealed value moved to another
/// record or another device's database does not open. Returns `{ v: 1, iv,
/// sealed }`. `STORAGE` error when this database has no device key (then
/// nothing secret is written at all).
pub async fn seal_record(db: &Db, name: &str, plain: &[u8]) -> Result<JsValue, JsValue> {
    let (device, wrap) = wrap_key(db).await?.ok_or_else(|| js_error(ErrorCode::Storage, "no device key to seal with", None))?;
    let iv = random_bytes::<12>()?;
    let params = gcm(&iv, &format!("{device}\0{name}"));
    let sealed = JsFuture::from(subtle()?.encrypt_with_object_and_u8_array(&params, &wrap, plain).map_err(crypto_err("could not seal a record"))?)
        .await
        .map_err(crypto_err("could not seal a record"))?;
    Ok(ObjBuilder::new().set("v", 1.0).set("iv", Uint8Array::from(&iv[..])).set("sealed", Uint8Array::new(&sealed)).build())
}

/// Opens a value of [`seal_record`] stored under `name`. `STORAGE` error when
/// it does not open (sealed under another device key, moved, or altered).
pub async fn open_record(db: &Db, name: &str, record: &JsValue) -> Result<Vec<u8>, JsValue> {
    let (device, wrap) = wrap_key(db).await?.ok_or_else(|| js_error(ErrorCode::Storage, "no device key to open with", None))?;
    let broken = || js_error(ErrorCode::Storage, "a sealed record is damaged", None);
    let iv = Reflect::get(record, &"iv".into()).map_err(|_| broken())?.dyn_into::<Uint8Array>().map_err(|_| broken())?.to_vec();
    let sealed = Reflect::get(record, &"sealed".into()).map_err(|_| broken())?.dyn_into::<Uint8Array>().map_err(|_| broken())?.to_vec();
    let params = gcm(&iv, &format!("{device}\0{name}"));
    let plain = JsFuture::from(subtle()?.decrypt_with_object_and_u8_array(&params, &wrap, &sealed).map_err(crypto_err("could not open a sealed record"))?)
        .await
        .map_err(crypto_err("could not open a sealed record (another device key, or altered)"))?;
    Ok(Uint8Array::new(&plain).to_vec())
}

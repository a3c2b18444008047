//! A deterministic certificate authority for tests and the simulator: a
//! venue root, a cloud certificate and per-device certificates, all from
//! fixed seeds, so every run (and `tests/vectors/protocol-v2.json`) sees
//! the same bytes. Not in the wasm build.

use super::bundle::{Bundle, Credentials};
use super::cert::{Cert, Chain, Role};
use super::{sha256, signing_key, SigningKey};

/// The cloud ingest's id (its certificate's subject).
pub const CLOUD_ID: &str = "ingest";

/// Start of every certificate's validity in the tests (2026-01-27).
pub const NOT_BEFORE: u64 = 1_769_000_000_000;

/// A test CA for one venue.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The venue.
    pub venue: String,
    /// What the keys are derived from (the venue for the real CA).
    pub label: String,
    /// The root key.
    pub root: SigningKey,
    /// The cloud ingest's key.
    pub cloud: SigningKey,
    /// The cloud's chain.
    pub cloud_chain: Chain,
    /// Content key epoch.
    pub epoch: u8,
    /// Content key.
    pub content_key: [u8; 32],
}

/// A key derived from a label (tests only).
pub fn key_for(label: &str) -> SigningKey {
    signing_key(&sha256(&[b"venuemesh test key\0", label.as_bytes()]))
}

impl TestCa {
    /// The CA of `venue`.
    pub fn new(venue: &str) -> TestCa {
        TestCa::with_label(venue, venue)
    }

    /// Another CA for the same venue id (an intruder's own root): its keys
    /// come from `label`.
    pub fn with_label(venue: &str, label: &str) -> TestCa {
        let root = key_for(&format!("{label}/root"));
        let cloud = key_for(&format!("{label}/cloud"));
        let cert = Cert::issue(&root, Role::Cloud, venue, CLOUD_ID, cloud.verifying_key().to_bytes(), NOT_BEFORE, 0).expect("valid ids");
        TestCa {
            venue: venue.to_string(),
            label: label.to_string(),
            root,
            cloud,
            cloud_chain: Chain(vec![cert]),
            epoch: 1,
            content_key: sha256(&[b"venuemesh test content key\0", label.as_bytes()]),
        }
    }

    /// The key a device gets in tests.
    pub fn device_key(&self, device: &str) -> SigningKey {
        key_for(&format!("{}/{device}", self.label))
    }

    /// The cloud ingest's credentials (role `cloud`, subject [`CLOUD_ID`]).
    pub fn cloud_credentials(&self) -> Credentials {
        let bundle = self.bundle_with(CLOUD_ID, self.cloud_chain.clone());
        Credentials { key: self.cloud.clone(), bundle }
    }

    /// A root-issued chain for `device` with `role`.
    pub fn chain(&self, device: &str, role: Role) -> Chain {
        let pk = self.device_key(device).verifying_key().to_bytes();
        Chain(vec![Cert::issue(&self.root, role, &self.venue, device, pk, NOT_BEFORE, 0).expect("valid ids")])
    }

    /// The bundle for `device` with `chain`.
    pub fn bundle_with(&self, device: &str, chain: Chain) -> Bundle {
        Bundle {
            venue: self.venue.clone(),
            device: device.to_string(),
            root_pk: self.root.verifying_key().to_bytes(),
            chain,
            cloud_chain: self.cloud_chain.clone(),
            key_epoch: self.epoch,
            content_key: self.content_key,
            crl: None,
        }
    }

    /// Checked credentials for a device (role `device`).
    pub fn credentials(&self, device: &str) -> Credentials {
        self.credentials_as(device, Role::Device)
    }

    /// Checked credentials with another role.
    pub fn credentials_as(&self, device: &str, role: Role) -> Credentials {
        let bundle = self.bundle_with(device, self.chain(device, role));
        Credentials::new(&self.device_key(device).to_bytes(), bundle, NOT_BEFORE, 0).expect("test credentials are valid")
    }
}

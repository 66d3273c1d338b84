//! Download links that live as long as the zip, in both modes.
//!
//! # Design
//! An S3 presigned URL dies with the credentials that signed it, and a Lambda role's session
//! credentials last hours, not CACHE_TIME. So the emailed link is Sheaf's own:
//! `PUBLIC_URL/downloads/KEY?expires=T&signature=HMAC(KEY, T)`, signed with a random key kept
//! in the store (`config/download-link.key`, created once). The API checks the signature and
//! expiry, then serves the file (local mode) or redirects to an S3 presigned URL made at that
//! moment, with that moment's credentials, valid for a few minutes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{ObjectStore, PutMode, StoreError};

const LINK_KEY: &str = "config/download-link.key";
const ANONYMIZE_KEY: &str = "config/anonymize-emails.key";

/// A random secret kept in the store: read it, or create it once (the first writer wins, so
/// every function sees the same one).
pub async fn store_secret(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, StoreError> {
    match store.get(key).await {
        Ok(o) => return Ok(o.body.to_vec()),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    match store
        .put(
            key,
            fresh.into_bytes().into(),
            "application/octet-stream",
            PutMode::Create,
        )
        .await
    {
        Ok(_) | Err(StoreError::Precondition(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(store.get(key).await?.body.to_vec())
}

/// The key of the emails' keyed hash (ANONYMIZE_EMAILS).
pub async fn anonymize_key(store: &dyn ObjectStore) -> Result<Vec<u8>, StoreError> {
    store_secret(store, ANONYMIZE_KEY).await
}

#[derive(Clone)]
pub struct LinkSigner {
    secret: Vec<u8>,
}

impl LinkSigner {
    pub async fn load(store: &dyn ObjectStore) -> Result<Self, StoreError> {
        Ok(LinkSigner {
            secret: store_secret(store, LINK_KEY).await?,
        })
    }

    fn mac(&self, key: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key");
        mac.update(b"download\n");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A link to `key` under `public_url`, valid until `expires` (Unix seconds).
    pub fn link(&self, public_url: &str, key: &str, expires: u64) -> String {
        let signature = hex::encode(self.mac(key, expires).finalize().into_bytes());
        format!(
            "{}/downloads/{key}?expires={expires}&signature={signature}",
            public_url.trim_end_matches('/')
        )
    }

    pub fn verify(&self, key: &str, expires: u64, signature: &str) -> bool {
        if expires < chrono::Utc::now().timestamp().max(0) as u64 {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(key, expires).verify_slice(&given).is_ok()
    }
}

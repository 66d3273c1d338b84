//! Sheaf's domain: sources, jobs, harvest objects and catalogue records, and the object keys
//! they live at.

pub mod job;
pub mod keys;
pub mod record;
pub mod source;

/// Now, as the RFC 3339 UTC text every document stores.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

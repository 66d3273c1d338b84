//! Harvest sources, with ckanext-harvest's fields and frequencies.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceType {
    Waf,
    Csw,
    Ckan,
    OaiPmh,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Waf => "waf",
            SourceType::Csw => "csw",
            SourceType::Ckan => "ckan",
            SourceType::OaiPmh => "oai-pmh",
        }
    }
}

impl std::str::FromStr for SourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown source type {s:?} (waf, csw, ckan, oai-pmh)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    #[default]
    Manual,
    Daily,
    Weekly,
    Biweekly,
    Monthly,
}

impl Frequency {
    /// How long after a job's start the next scheduled one is due.
    pub fn period(self) -> Option<chrono::Duration> {
        match self {
            Frequency::Manual => None,
            Frequency::Daily => Some(chrono::Duration::days(1)),
            Frequency::Weekly => Some(chrono::Duration::weeks(1)),
            Frequency::Biweekly => Some(chrono::Duration::weeks(2)),
            Frequency::Monthly => Some(chrono::Duration::days(30)),
        }
    }
}

impl std::str::FromStr for Frequency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!("unknown frequency {s:?} (manual, daily, weekly, biweekly, monthly)")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Source {
    pub name: String,
    pub url: String,
    #[serde(rename = "type")]
    pub source_type: SourceType,
    #[serde(default)]
    pub title: String,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub frequency: Frequency,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub modified: String,
}

fn yes() -> bool {
    true
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A field that failed validation, named as the API's 400 names it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Source names are CKAN-style slugs: they become object key segments.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_']);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            "must be 1-100 characters of a-z, 0-9, - and _, starting with a letter or digit",
        ))
    }
}

impl Source {
    /// Checks the fields every source type shares; the harvester checks `config`.
    pub fn validate_common(&self) -> Result<(), FieldError> {
        validate_name(&self.name)?;
        let url = url::Url::parse(&self.url)
            .map_err(|e| FieldError::new("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new("url", "must be http or https"));
        }
        if let Some(owner) = &self.owner
            && !crate::mail::is_valid_address(owner)
        {
            return Err(FieldError::new("owner", "must be an email address"));
        }
        if !self.config.is_object() {
            return Err(FieldError::new("config", "must be a JSON object"));
        }
        if let Some(value) = self.config.get(SHRINK_THRESHOLD) {
            let ok = value.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f));
            if !ok {
                return Err(FieldError::new(
                    format!("config.{SHRINK_THRESHOLD}"),
                    "must be a number from 0 to 1",
                ));
            }
        }
        Ok(())
    }

    /// The fraction of the last completed gather's documents below which a gather is taken
    /// for a broken source, not a real shrink, and deletes nothing (0 accepts any shrink).
    pub fn shrink_threshold(&self) -> f64 {
        self.config
            .get(SHRINK_THRESHOLD)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(DEFAULT_SHRINK_THRESHOLD)
    }
}

/// The `config` option every source type takes: see [`Source::shrink_threshold`].
pub const SHRINK_THRESHOLD: &str = "shrink_threshold";
pub const DEFAULT_SHRINK_THRESHOLD: f64 = 0.5;

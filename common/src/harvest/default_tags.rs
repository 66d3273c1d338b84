//! `default_tags`, the option every source type takes (ckanext-harvest's CKAN harvester and
//! ckanext-spatial's WAF and CSW harvesters alike): tags added to each record's keywords.

use serde::Deserialize;

use crate::domain::record::Metadata;
use crate::domain::source::FieldError;

pub(crate) const DEFAULT_TAGS: &str = "default_tags";

/// A tag as the option takes it: `{"name": ...}`, or a plain string as in ckanext-harvest's
/// README example.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum TagOption {
    Name(String),
    Dict { name: String },
}

impl TagOption {
    pub fn name(&self) -> &str {
        match self {
            TagOption::Name(name) | TagOption::Dict { name } => name,
        }
    }
}

pub(crate) fn validate(value: &serde_json::Value) -> Result<(), FieldError> {
    let ok = value.as_array().is_some_and(|tags| {
        tags.iter().all(|t| {
            serde_json::from_value::<TagOption>(t.clone())
                .is_ok_and(|t| !t.name().trim().is_empty())
        })
    });
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            format!("config.{DEFAULT_TAGS}"),
            "must be a list of tags: names, or objects with a \"name\"",
        ))
    }
}

/// The source's default tags (none when unset or unreadable: `validate` refused those).
pub(crate) fn of(config: &serde_json::Value) -> Vec<TagOption> {
    config
        .get(DEFAULT_TAGS)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// Adds each default tag the record does not have yet.
pub(crate) fn add(tags: &[TagOption], metadata: &mut Metadata) {
    for tag in tags {
        if !metadata.keywords.iter().any(|k| k == tag.name()) {
            metadata.keywords.push(tag.name().to_string());
        }
    }
}

//! The source's options applied to a dataset read from its CKAN, as ckanext-harvest's import
//! stage applies them to the package it creates.

use super::config::{CkanConfig, RemoteMode, fill_placeholders};
use crate::domain::record::{CkanFields, Extra, Metadata};
use crate::domain::source::Source;
use crate::harvest::default_tags;

pub(super) fn apply(config: &CkanConfig, source: &Source, metadata: &mut Metadata) {
    default_tags::add(&config.default_tags, metadata);
    if config.clean_tags {
        let mut cleaned: Vec<String> = Vec::new();
        for tag in metadata.keywords.iter().map(|k| munge_tag(k)) {
            if !tag.is_empty() && !cleaned.contains(&tag) {
                cleaned.push(tag);
            }
        }
        metadata.keywords = cleaned;
    }
    let dataset_id = metadata.id.clone();
    let Some(ckan) = metadata.ckan.as_mut() else {
        return;
    };
    apply_groups(config, ckan);
    ckan.organization = match config.remote_orgs {
        None => None,
        Some(RemoteMode::Create) => ckan.organization.take(),
        Some(RemoteMode::OnlyLocal) => ckan
            .organization
            .take()
            .filter(|org| config.organizations_filter_include.contains(org)),
    };
    let values = [
        ("dataset_id", dataset_id.as_str()),
        ("harvest_source_id", source.name.as_str()),
        ("harvest_source_url", source.url.trim_matches('/')),
        ("harvest_source_title", source.title.as_str()),
    ];
    for (key, value) in &config.default_extras {
        let existing = ckan.extras.iter().position(|e| &e.key == key);
        match existing {
            Some(_) if !config.override_extras => continue,
            Some(at) => {
                ckan.extras.remove(at);
            }
            None => {}
        }
        let value = match value {
            serde_json::Value::String(text) => {
                serde_json::Value::String(fill_placeholders(text, &values))
            }
            other => other.clone(),
        };
        ckan.extras.push(Extra {
            key: key.clone(),
            value,
        });
    }
    ckan.user = config.user.clone();
    ckan.read_only = config.read_only;
}

/// Remote groups as `remote_groups` says (dropped when unset), then `default_groups`.
fn apply_groups(config: &CkanConfig, ckan: &mut CkanFields) {
    match config.remote_groups {
        None => ckan.groups.clear(),
        Some(RemoteMode::Create) => {}
        Some(RemoteMode::OnlyLocal) => ckan
            .groups
            .retain(|group| config.default_groups.contains(group)),
    }
    for group in &config.default_groups {
        if !ckan.groups.contains(group) {
            ckan.groups.push(group.clone());
        }
    }
}

/// CKAN's `munge_tag`: accents to their ASCII letters, lower case, only letters, digits,
/// dashes and spaces kept, spaces to dashes, then padded to 2 and cut to 100 characters.
pub(super) fn munge_tag(tag: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let ascii: String = tag.nfkd().filter(char::is_ascii).collect();
    let mut munged: String = ascii
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    if munged.is_empty() {
        return munged;
    }
    while munged.len() < 2 {
        munged.push('_');
    }
    munged.truncate(100);
    munged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_keeps_an_organization_the_source_includes() {
        let package = serde_json::json!({
            "id": "d", "title": "t", "organization": {"name": "cabinet-office"}
        });
        let source: Source = serde_json::from_value(
            serde_json::json!({"name": "s", "url": "http://h", "type": "ckan"}),
        )
        .unwrap();
        let organization = |config: serde_json::Value| {
            let mut metadata = crate::parse::read_package(package.to_string().as_bytes()).unwrap();
            apply(&CkanConfig::of(&config).unwrap(), &source, &mut metadata);
            metadata.ckan.unwrap().organization
        };
        let included = serde_json::json!({
            "remote_orgs": "only_local", "organizations_filter_include": ["cabinet-office"]
        });
        assert_eq!(organization(included).as_deref(), Some("cabinet-office"));
        let other = serde_json::json!({
            "remote_orgs": "only_local", "organizations_filter_include": ["org1"]
        });
        assert_eq!(organization(other), None);
    }

    #[test]
    fn tags_are_munged_as_ckan_munges_them() {
        assert_eq!(munge_tag("Ciencias Económicas"), "ciencias-economicas");
        assert_eq!(munge_tag("consumption%^&"), "consumption");
        assert_eq!(munge_tag("  Água  "), "agua");
        assert_eq!(munge_tag("x"), "x_");
        assert_eq!(munge_tag("%^&"), "");
        assert_eq!(munge_tag(&"a".repeat(150)).len(), 100);
    }
}

//! A CKAN source's options: the names and meanings of ckanext-harvest's CKAN harvester, so a
//! config written for it works here. Where an option speaks of the local CKAN (its users, groups
//! and organizations), Sheaf's catalogue stands in for it, as the README explains.

use serde::Deserialize;

use crate::domain::source::{FieldError, SHRINK_THRESHOLD};
use crate::harvest::default_tags::{self, TagOption};

/// The placeholders a `default_extras` value may hold.
pub(super) const PLACEHOLDERS: [&str; 4] = [
    "dataset_id",
    "harvest_source_id",
    "harvest_source_url",
    "harvest_source_title",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RemoteMode {
    /// Keep the remote ones Sheaf knows: the groups of `default_groups`, the organizations of
    /// `organizations_filter_include`.
    OnlyLocal,
    /// Keep every remote one.
    Create,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct CkanConfig {
    // `api_version` is checked by `validate` and otherwise ignored, as by ckanext-harvest's
    // gather: the action API (v3) answers on every CKAN since 2.0.
    #[serde(default)]
    pub default_tags: Vec<TagOption>,
    #[serde(default)]
    pub default_groups: Vec<String>,
    #[serde(default)]
    pub default_extras: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub override_extras: bool,
    /// Who the records are harvested as: kept on each record (`ckan.user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Sent as the `Authorization` header to the remote CKAN; never logged.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Kept on each record (`ckan.read_only`); Sheaf's records change only by harvesting.
    #[serde(default)]
    pub read_only: bool,
    /// Gather every dataset each time, instead of those modified since the last harvest
    /// without errors.
    #[serde(default)]
    pub force_all: bool,
    #[serde(default)]
    pub remote_groups: Option<RemoteMode>,
    #[serde(default)]
    pub remote_orgs: Option<RemoteMode>,
    #[serde(default)]
    pub organizations_filter_include: Vec<String>,
    #[serde(default)]
    pub organizations_filter_exclude: Vec<String>,
    #[serde(default)]
    pub groups_filter_include: Vec<String>,
    #[serde(default)]
    pub groups_filter_exclude: Vec<String>,
    /// Tags lower-cased, accents replaced by their ASCII letters, spaces by dashes (CKAN's
    /// `munge_tag`).
    #[serde(default)]
    pub clean_tags: bool,
    #[serde(default)]
    pub user_agent: Option<String>,
}

impl CkanConfig {
    pub fn of(config: &serde_json::Value) -> Result<CkanConfig, String> {
        if config.is_null() {
            return Ok(CkanConfig::default());
        }
        serde_json::from_value(config.clone()).map_err(|e| e.to_string())
    }

    /// The `fq` terms of the organization and group filters, as ckanext-harvest writes them.
    pub fn filter_terms(&self) -> Vec<String> {
        let mut terms = Vec::new();
        for (field, include, exclude) in [
            (
                "organization",
                &self.organizations_filter_include,
                &self.organizations_filter_exclude,
            ),
            (
                "groups",
                &self.groups_filter_include,
                &self.groups_filter_exclude,
            ),
        ] {
            if !include.is_empty() {
                let any: Vec<String> = include.iter().map(|n| format!("{field}:{n}")).collect();
                terms.push(any.join(" OR "));
            } else {
                terms.extend(exclude.iter().map(|n| format!("-{field}:{n}")));
            }
        }
        terms
    }
}

/// Checks a CKAN source's options; the error names the field.
pub(super) fn validate(config: &serde_json::Value) -> Result<(), FieldError> {
    if config.is_null() {
        return Ok(());
    }
    let Some(object) = config.as_object() else {
        return Err(FieldError::new("config", "must be a JSON object"));
    };
    for (key, value) in object {
        let field = format!("config.{key}");
        let fail = |message: &str| Err(FieldError::new(&field, message));
        match key.as_str() {
            "api_version" => {
                let number = value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
                if number.is_none() {
                    return fail("must be an integer");
                }
            }
            "default_tags" => default_tags::validate(value)?,
            "default_groups"
            | "organizations_filter_include"
            | "organizations_filter_exclude"
            | "groups_filter_include"
            | "groups_filter_exclude" => {
                let ok = value
                    .as_array()
                    .is_some_and(|names| names.iter().all(|n| n.as_str().is_some_and(is_name)));
                if !ok {
                    return fail("must be a list of names or ids (letters, digits, '-' and '_')");
                }
            }
            "default_extras" => {
                let Some(extras) = value.as_object() else {
                    return fail("must be a dictionary");
                };
                for (name, value) in extras {
                    if let Some(text) = value.as_str()
                        && let Err(message) = check_placeholders(text)
                    {
                        return Err(FieldError::new(
                            format!("config.default_extras.{name}"),
                            message,
                        ));
                    }
                }
            }
            "override_extras" | "read_only" | "force_all" | "clean_tags" => {
                if !value.is_boolean() {
                    return fail("must be boolean");
                }
            }
            "user" | "api_key" | "user_agent" => {
                if value.as_str().is_none_or(|s| s.trim().is_empty()) {
                    return fail("must be a non-empty string");
                }
            }
            "remote_groups" | "remote_orgs" => {
                if !matches!(value.as_str(), Some("only_local" | "create")) {
                    return fail("must be \"only_local\" or \"create\"");
                }
            }
            SHRINK_THRESHOLD => {}
            _ => return fail("unknown option for a CKAN source"),
        }
    }
    for (kind, include, exclude) in [
        (
            "organizations",
            "organizations_filter_include",
            "organizations_filter_exclude",
        ),
        ("groups", "groups_filter_include", "groups_filter_exclude"),
    ] {
        // Both present is refused only when both name something: ckanext-harvest's README
        // example sets an empty include beside its exclude.
        let named = |key: &str| {
            object
                .get(key)
                .and_then(|v| v.as_array())
                .is_some_and(|a| !a.is_empty())
        };
        if named(include) && named(exclude) {
            return Err(FieldError::new(
                format!("config.{exclude}"),
                format!("cannot be set with {include}: the {kind} are either included or excluded"),
            ));
        }
    }
    Ok(())
}

/// A CKAN name or id: what a Solr `fq` term can carry unquoted.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `{name}` placeholders must be known ones (`{{` and `}}` are literal braces).
fn check_placeholders(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
            rest = &after[1..];
            continue;
        }
        if rest[open..].starts_with('}') {
            return Err("has a '}' without its '{' (write '}}' for a brace)".into());
        }
        let Some(close) = after.find('}') else {
            return Err("has a '{' without its '}' (write '{{' for a brace)".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "names {{{name}}}, which is not one of {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `text` with its placeholders replaced, as Python's `str.format` does.
pub(super) fn fill_placeholders(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        match tail[1..].find('}').map(|close| &tail[1..1 + close]) {
            Some(name) if tail.starts_with('{') => {
                let value = values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                out.push_str(value.unwrap_or(&tail[..name.len() + 2]));
                rest = &tail[name.len() + 2..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(config: serde_json::Value) -> String {
        validate(&config).unwrap_err().field
    }

    #[test]
    fn each_option_refuses_a_wrong_value_naming_its_field() {
        for (config, expected) in [
            (json!({"api_version": "two"}), "config.api_version"),
            (json!({"default_tags": "a,b"}), "config.default_tags"),
            (json!({"default_tags": [1]}), "config.default_tags"),
            (
                json!({"default_groups": [{"id": 1}]}),
                "config.default_groups",
            ),
            (json!({"default_extras": ["a"]}), "config.default_extras"),
            (
                json!({"default_extras": {"u": "{harvest_url}/x"}}),
                "config.default_extras.u",
            ),
            (
                json!({"default_extras": {"u": "{dataset_id"}}),
                "config.default_extras.u",
            ),
            (json!({"override_extras": "yes"}), "config.override_extras"),
            (json!({"user": ""}), "config.user"),
            (json!({"api_key": 5}), "config.api_key"),
            (json!({"read_only": 1}), "config.read_only"),
            (json!({"force_all": "true"}), "config.force_all"),
            (json!({"remote_groups": "all"}), "config.remote_groups"),
            (json!({"remote_orgs": true}), "config.remote_orgs"),
            (
                json!({"organizations_filter_include": "org1"}),
                "config.organizations_filter_include",
            ),
            (
                json!({"organizations_filter_exclude": ["a b"]}),
                "config.organizations_filter_exclude",
            ),
            (
                json!({"organizations_filter_include": ["a"], "organizations_filter_exclude": ["b"]}),
                "config.organizations_filter_exclude",
            ),
            (
                json!({"groups_filter_include": ["a"], "groups_filter_exclude": ["b"]}),
                "config.groups_filter_exclude",
            ),
            (json!({"clean_tags": "no"}), "config.clean_tags"),
            (json!({"harvest_all": true}), "config.harvest_all"),
            (json!([1]), "config"),
        ] {
            assert_eq!(field(config.clone()), expected, "{config}");
        }
    }

    #[test]
    fn the_readmes_example_config_is_accepted() {
        // ckanext-harvest's README example, with the group and organization names it uses.
        let example = json!({
            "api_version": 1, "default_tags": ["new-tag-1", "new-tag-2"],
            "default_groups": ["my-own-group"],
            "default_extras": {"new_extra": "Test", "harvest_url": "{harvest_source_url}/dataset/{dataset_id}"},
            "override_extras": true, "organizations_filter_include": [],
            "organizations_filter_exclude": ["remote-organization"], "user": "harverster-user",
            "api_key": "<REMOTE_API_KEY>", "read_only": true, "remote_groups": "only_local",
            "remote_orgs": "create"
        });
        validate(&example).expect("the README's example");
        let config = CkanConfig::of(&example).unwrap();
        assert_eq!(config.default_tags[1].name(), "new-tag-2");
        assert_eq!(config.filter_terms(), ["-organization:remote-organization"]);
        validate(&json!({"default_tags": [{"name": "a"}], "api_version": "2"})).unwrap();
    }

    #[test]
    fn filters_are_written_as_ckanext_harvest_writes_them() {
        let config = CkanConfig::of(&json!({
            "organizations_filter_include": ["org1", "org2"],
            "groups_filter_exclude": ["g1", "g2"]
        }))
        .unwrap();
        assert_eq!(
            config.filter_terms(),
            [
                "organization:org1 OR organization:org2",
                "-groups:g1",
                "-groups:g2"
            ]
        );
    }

    #[test]
    fn placeholders_are_filled_as_str_format_fills_them() {
        let values = [("dataset_id", "d1"), ("harvest_source_url", "http://h")];
        assert_eq!(
            fill_placeholders("{harvest_source_url}/dataset/{dataset_id}", &values),
            "http://h/dataset/d1"
        );
        assert_eq!(
            fill_placeholders("{{literal}} {dataset_id}", &values),
            "{literal} d1"
        );
        assert_eq!(fill_placeholders("plain", &values), "plain");
    }
}

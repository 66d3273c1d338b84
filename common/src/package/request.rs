//! A ckanpackager request: its parameters as clients send them (form-encoded, JSON, or
//! URL-quoted JSON as in ckanpackager's own examples), checked into a typed request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PackageError;
use crate::fetch::{AddressPolicy, FetchError, check_url};
use crate::mail::is_valid_address;

/// Parameters by name, as strings (JSON numbers and objects are given in their JSON text).
pub type Params = BTreeMap<String, String>;

/// Reads a request body: a JSON object, a URL-quoted JSON object, or form fields.
pub fn parse_params(body: &[u8]) -> Result<Params, PackageError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| PackageError::bad("body", "the request body is not UTF-8"))?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return json_params(trimmed);
    }
    let unquoted = percent_decode(trimmed);
    if unquoted.trim_start().starts_with('{') {
        return json_params(unquoted.trim());
    }
    Ok(form_urlencoded::parse(trimmed.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn percent_decode(text: &str) -> String {
    // `+` stays `+`: urllib.quote leaves spaces as %20, and JSON text has no `+` to mean space.
    let bytes: Vec<u8> =
        form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn json_params(text: &str) -> Result<Params, PackageError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| PackageError::bad("body", format!("the JSON body does not parse: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(PackageError::bad("body", "the JSON body is not an object"));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    Datastore,
    Url,
    DwcArchive,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Datastore => "package_datastore",
            PackageKind::Url => "package_url",
            PackageKind::DwcArchive => "package_dwc_archive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    #[default]
    Csv,
    Tsv,
}

impl TableFormat {
    pub fn delimiter(self) -> u8 {
        match self {
            TableFormat::Csv => b',',
            TableFormat::Tsv => b'\t',
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::Tsv => "tsv",
        }
    }
}

/// A checked request. `email` and `key` (the CKAN API key) travel in queue messages but are
/// never written to the package's status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRequest {
    pub kind: PackageKind,
    pub resource_id: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    /// datastore_search's own parameters, forwarded as given (filters already parsed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doi: Option<String>,
    #[serde(default)]
    pub format: TableFormat,
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, PackageError> {
    match params.get(name).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(PackageError::bad(
            name,
            format!("Parameter {name} is required"),
        )),
    }
}

/// A parameter's value, trimmed; an empty one counts as not given.
pub fn optional<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A whole-number parameter, if given; anything else is a bad request naming it.
pub fn number(params: &Params, name: &str) -> Result<Option<u64>, PackageError> {
    optional(params, name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                PackageError::bad(
                    name,
                    format!("{name} must be a whole number ≥ 0, not {v:?}"),
                )
            })
        })
        .transpose()
}

/// Checks a URL the packager will fetch: http(s), and, when the policy says so, not a private
/// address written literally (names are checked again when they resolve).
fn checked_url(params: &Params, name: &str, policy: AddressPolicy) -> Result<String, PackageError> {
    let url = required(params, name)?;
    match check_url(url, policy) {
        Ok(_) => Ok(url.to_string()),
        Err(FetchError::Refused { reason, .. }) => Err(PackageError::bad(
            name,
            format!("{url} is refused: {reason}"),
        )),
        Err(e) => Err(PackageError::bad(name, e.to_string())),
    }
}

impl PackageRequest {
    /// Checks `params` for `kind`; the error names the parameter to fix.
    pub fn from_params(
        kind: PackageKind,
        params: &Params,
        policy: AddressPolicy,
    ) -> Result<Self, PackageError> {
        let resource_id = required(params, "resource_id")?.to_string();
        let email = required(params, "email")?.to_string();
        if !is_valid_address(&email) {
            return Err(PackageError::bad(
                "email",
                format!("{email:?} is not an email address"),
            ));
        }
        let mut request = PackageRequest {
            kind,
            resource_id,
            email,
            api_url: None,
            resource_url: None,
            search: BTreeMap::new(),
            offset: 0,
            limit: None,
            key: optional(params, "key").map(str::to_string),
            doi: optional(params, "doi").map(str::to_string),
            format: TableFormat::Csv,
        };
        if kind == PackageKind::Url {
            request.resource_url = Some(checked_url(params, "resource_url", policy)?);
            return Ok(request);
        }
        request.api_url = Some(checked_url(params, "api_url", policy)?);
        request.offset = number(params, "offset")?.unwrap_or(0);
        // ckanpackager reads `limit=0` as no limit (every row), as CKAN clients send it.
        request.limit = number(params, "limit")?.filter(|&l| l > 0);
        request.format = match optional(params, "format")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("csv") => TableFormat::Csv,
            Some("tsv") => TableFormat::Tsv,
            Some(other) => {
                return Err(PackageError::bad(
                    "format",
                    format!("format must be csv or tsv, not {other:?}"),
                ));
            }
        };
        if kind == PackageKind::DwcArchive && request.format != TableFormat::Csv {
            return Err(PackageError::bad(
                "format",
                "a Darwin Core Archive is written as CSV",
            ));
        }
        if let Some(filters) = optional(params, "filters") {
            let parsed: serde_json::Value = serde_json::from_str(filters)
                .map_err(|e| PackageError::bad("filters", format!("filters is not JSON: {e}")))?;
            if !parsed.is_object() {
                return Err(PackageError::bad(
                    "filters",
                    "filters must be a JSON object",
                ));
            }
            request.search.insert("filters".into(), parsed);
        }
        for name in ["q", "plain", "language", "fields", "sort"] {
            if let Some(value) = optional(params, name) {
                request
                    .search
                    .insert(name.into(), serde_json::Value::String(value.into()));
            }
        }
        Ok(request)
    }

    /// The cache key: SHA-256 of the canonical request without the email, so two people
    /// asking for the same rows share one zip.
    pub fn cache_key(&self) -> String {
        let mut canonical = self.clone();
        canonical.email = String::new();
        // Serialised from ordered maps and a fixed struct order: canonical by construction.
        let text = serde_json::to_string(&canonical).expect("a request always serialises");
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The host the data comes from, for `{ckan_host}`.
    pub fn host(&self) -> String {
        self.api_url
            .as_deref()
            .or(self.resource_url.as_deref())
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => String::new(),
            })
            .unwrap_or_default()
    }

    /// The name of the data file inside the zip, as ckanpackager names it: the resource
    /// URL's last path segment, or `resource.csv` / `resource.tsv` for datastore rows.
    pub fn entry_name(&self) -> String {
        if let Some(url) = &self.resource_url {
            let last = url::Url::parse(url).ok().and_then(|u| {
                u.path_segments()
                    .and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_string))
            });
            let name = last.unwrap_or_else(|| self.resource_id.clone());
            return safe_entry_name(&name);
        }
        format!("resource.{}", self.format.extension())
    }
}

/// A zip entry name with no directories and nothing a reader could take for a path.
fn safe_entry_name(name: &str) -> String {
    let decoded = percent_decode(name);
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "resource".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AddressPolicy = AddressPolicy::PublicOnly;

    fn datastore(params: &[(&str, &str)]) -> Result<PackageRequest, PackageError> {
        let p: Params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PackageRequest::from_params(PackageKind::Datastore, &p, POLICY)
    }

    const OK: [(&str, &str); 3] = [
        (
            "api_url",
            "https://ckan.example.org/api/3/action/datastore_search",
        ),
        ("resource_id", "abc"),
        ("email", "someone@example.org"),
    ];

    #[test]
    fn the_three_body_shapes_give_the_same_parameters() {
        let form =
            parse_params(b"secret=s&resource_id=abc&limit=10&filters=%7B%22a%22%3A1%7D").unwrap();
        let json =
            parse_params(br#"{"secret":"s","resource_id":"abc","limit":10,"filters":"{\"a\":1}"}"#)
                .unwrap();
        let quoted = parse_params(
            b"%7B%22secret%22%3A%20%22s%22%2C%20%22resource_id%22%3A%20%22abc%22%2C%20%22limit%22%3A%2010%2C%20%22filters%22%3A%20%22%7B%5C%22a%5C%22%3A%201%7D%22%7D",
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(quoted["resource_id"], "abc");
        assert_eq!(quoted["limit"], "10");
        assert_eq!(quoted["filters"], "{\"a\": 1}");
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let named = |extra: (&str, &str)| {
            let mut params = OK.to_vec();
            params.retain(|(k, _)| *k != extra.0);
            params.push(extra);
            match datastore(&params) {
                Err(PackageError::BadRequest { param, .. }) => param,
                other => panic!("{extra:?} accepted: {other:?}"),
            }
        };
        assert_eq!(named(("email", "not-an-address")), "email");
        assert_eq!(named(("limit", "-3")), "limit");
        assert_eq!(named(("offset", "ten")), "offset");
        assert_eq!(named(("filters", "{broken")), "filters");
        assert_eq!(named(("filters", "[1]")), "filters");
        assert_eq!(named(("format", "xlsx")), "format");
        assert_eq!(named(("api_url", "ftp://example.org/x")), "api_url");
        assert_eq!(named(("api_url", "http://10.0.0.1/api")), "api_url");
        assert_eq!(named(("resource_id", "")), "resource_id");
    }

    #[test]
    fn a_limit_of_zero_means_every_row() {
        let mut params = OK.to_vec();
        params.push(("limit", "0"));
        assert_eq!(datastore(&params).unwrap().limit, None);
    }

    #[test]
    fn the_cache_key_ignores_the_email_only() {
        let a = datastore(&OK).unwrap();
        let mut b = a.clone();
        b.email = "other@example.org".into();
        assert_eq!(a.cache_key(), b.cache_key());
        let mut c = a.clone();
        c.limit = Some(5);
        assert_ne!(a.cache_key(), c.cache_key());
    }

    #[test]
    fn entry_names_follow_ckanpackager() {
        let mut r = datastore(&OK).unwrap();
        assert_eq!(r.entry_name(), "resource.csv");
        r.format = TableFormat::Tsv;
        assert_eq!(r.entry_name(), "resource.tsv");
        r.resource_url = Some("https://example.org/files/My%20Data.csv?x=1".into());
        assert_eq!(r.entry_name(), "My Data.csv");
        r.resource_url = Some("https://example.org/../..%2F..%2Fetc".into());
        assert!(!r.entry_name().contains('/'));
    }
}

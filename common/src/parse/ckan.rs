//! CKAN package JSON (a `package_show` result) read into a catalogue record: title, notes,
//! tags, the `spatial` extra (GeoJSON, as ckanext-spatial keeps it) or its `bbox-*` extras as
//! the bbox, temporal extras as the time, author, maintainer, organization and ckanext-dcat's
//! `contact` and `publisher` as contacts, resources as links.

use serde_json::{Map, Value};

use super::{Rejection, clean, dedup, validate};
use crate::domain::record::{
    BBox, CkanFields, Contact, Extra, Link, Metadata, RecordFormat, TimeExtent,
};

/// Reads a package dict, or a `package_show` answer around one.
pub fn read_package(bytes: &[u8]) -> Result<Metadata, Rejection> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Rejection::Json(e.to_string()))?;
    let package = match value.get("result") {
        Some(result) if value.get("success").is_some() => result,
        _ => &value,
    };
    let Some(package) = package.as_object() else {
        return Err(Rejection::Invalid("a CKAN dataset is a JSON object".into()));
    };
    let metadata = read(package)?;
    validate(&metadata)?;
    Ok(metadata)
}

fn text(package: &Map<String, Value>, key: &str) -> Option<String> {
    package.get(key).and_then(Value::as_str).and_then(clean)
}

/// The package's extras as `{key, value}` pairs, whether listed (package_show) or a dict
/// (the old REST form).
fn extras(package: &Map<String, Value>) -> Vec<Extra> {
    match package.get("extras") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|e| {
                Some(Extra {
                    key: e.get("key")?.as_str()?.to_string(),
                    value: e.get("value").cloned().unwrap_or(Value::Null),
                })
            })
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Extra {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn extra<'a>(extras: &'a [Extra], key: &str) -> Option<&'a str> {
    extras
        .iter()
        .find(|e| e.key == key)
        .and_then(|e| e.value.as_str())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Names of a list of `{name}` dicts, or of plain strings.
fn names(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(list)) = value else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|item| match item {
            Value::String(name) => clean(name),
            other => other.get("name").and_then(Value::as_str).and_then(clean),
        })
        .collect()
}

fn read(package: &Map<String, Value>) -> Result<Metadata, Rejection> {
    let name = text(package, "name").unwrap_or_default();
    // A portal always gives an id; a dataset written by hand (ckanext-dcat's examples) may
    // have only its name, which CKAN's API takes in place of the id.
    let id = text(package, "id").unwrap_or_else(|| name.clone());
    let extras = extras(package);
    let organization = package.get("organization").filter(|o| o.is_object());
    let mut contacts = Vec::new();
    let mut person =
        |name: Option<String>, email: Option<String>, org: Option<String>, role: &str| {
            if name.is_some() || email.is_some() || org.is_some() {
                contacts.push(Contact {
                    name,
                    organisation: org,
                    email,
                    role: Some(role.to_string()),
                });
            }
        };
    person(
        text(package, "author"),
        text(package, "author_email"),
        None,
        "author",
    );
    person(
        text(package, "maintainer"),
        text(package, "maintainer_email"),
        None,
        "maintainer",
    );
    if let Some(org) = organization {
        let title = ["title", "name"]
            .iter()
            .find_map(|k| org.get(*k).and_then(Value::as_str).and_then(clean));
        person(None, None, title, "publisher");
    }
    // ckanext-dcat's scheming fields: lists of {name, email}.
    for (field, role) in [("contact", "pointOfContact"), ("publisher", "publisher")] {
        if let Some(Value::Array(people)) = package.get(field) {
            for p in people {
                let get = |k: &str| p.get(k).and_then(Value::as_str).and_then(clean);
                person(get("name"), get("email"), None, role);
            }
        }
    }
    // ckanext-dcat's extras, when the dataset came from a DCAT harvest.
    let own = |key: &str| extra(&extras, key).map(str::to_string);
    person(
        own("dcat_publisher_name"),
        own("dcat_publisher_email"),
        None,
        "publisher",
    );
    person(
        own("dcat_creator_name"),
        own("dcat_creator_email"),
        None,
        "author",
    );

    let mut links = Vec::new();
    if let Some(Value::Array(resources)) = package.get("resources") {
        for resource in resources {
            let get = |k: &str| resource.get(k).and_then(Value::as_str).and_then(clean);
            if let Some(url) = get("url") {
                links.push(Link {
                    url,
                    protocol: get("format").or_else(|| get("mimetype")),
                    name: get("name").or_else(|| get("description")),
                });
            }
        }
    }
    if let Some(url) = text(package, "url") {
        links.push(Link {
            url,
            protocol: Some("WWW:LINK".into()),
            name: Some("Source".into()),
        });
    }
    let start = [
        "temporal-extent-begin",
        "temporal_coverage-from",
        "temporal_start",
    ]
    .iter()
    .find_map(|k| own(k).or_else(|| text(package, k)));
    let end = [
        "temporal-extent-end",
        "temporal_coverage-to",
        "temporal_end",
    ]
    .iter()
    .find_map(|k| own(k).or_else(|| text(package, k)));
    Ok(Metadata {
        title: text(package, "title").unwrap_or_else(|| name.clone()),
        abstract_text: text(package, "notes").unwrap_or_default(),
        keywords: dedup(names(package.get("tags"))),
        bbox: bbox(package, &extras)?,
        time: (start.is_some() || end.is_some()).then_some(TimeExtent { start, end }),
        contacts,
        links,
        format: RecordFormat::Ckan,
        modified: text(package, "metadata_modified").or_else(|| text(package, "modified")),
        ckan: Some(CkanFields {
            name,
            organization: organization
                .and_then(|o| o.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| text(package, "owner_org")),
            groups: names(package.get("groups")),
            extras,
            license_id: text(package, "license_id"),
            user: None,
            read_only: false,
        }),
        id,
    })
}

/// The `spatial` GeoJSON (an extra, or a field of its own) or ckanext-spatial's `bbox-*`
/// extras; a geometry that does not read is a rejection, not a silently missing bbox.
fn bbox(package: &Map<String, Value>, extras: &[Extra]) -> Result<Option<BBox>, Rejection> {
    let spatial = extras
        .iter()
        .find(|e| e.key == "spatial")
        .map(|e| e.value.clone())
        .or_else(|| package.get("spatial").cloned())
        .filter(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()));
    if let Some(spatial) = spatial {
        let geometry = match spatial {
            Value::String(text) => serde_json::from_str(&text).map_err(|e| {
                Rejection::Invalid(format!("the spatial extra is not GeoJSON: {e}"))
            })?,
            other => other,
        };
        let mut points = Vec::new();
        collect_points(&geometry, &mut points);
        let Some(first) = points.first() else {
            return Err(Rejection::Invalid(
                "the spatial extra holds no coordinates".into(),
            ));
        };
        let start = BBox {
            west: first.0,
            south: first.1,
            east: first.0,
            north: first.1,
        };
        let found = points.iter().fold(start, |b, &(x, y)| {
            b.union(BBox {
                west: x,
                south: y,
                east: x,
                north: y,
            })
        });
        return Ok(Some(found));
    }
    let side = |k: &str| {
        extra(extras, k)
            .map(|v| v.parse::<f64>())
            .transpose()
            .map_err(|e| Rejection::Invalid(format!("the {k} extra is not a number: {e}")))
    };
    match (
        side("bbox-west-long")?,
        side("bbox-south-lat")?,
        side("bbox-east-long")?,
        side("bbox-north-lat")?,
    ) {
        (Some(west), Some(south), Some(east), Some(north)) => Ok(Some(BBox {
            west,
            south,
            east,
            north,
        })),
        _ => Ok(None),
    }
}

/// Every `[x, y, ...]` position of a GeoJSON geometry, feature or collection.
fn collect_points(value: &Value, out: &mut Vec<(f64, f64)>) {
    match value {
        Value::Array(items) => {
            if let [Value::Number(x), Value::Number(y), ..] = items.as_slice()
                && let (Some(x), Some(y)) = (x.as_f64(), y.as_f64())
            {
                out.push((x, y));
                return;
            }
            for item in items {
                collect_points(item, out);
            }
        }
        Value::Object(map) => {
            for key in ["coordinates", "geometry", "geometries", "features"] {
                if let Some(inner) = map.get(key) {
                    collect_points(inner, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_json(value: Value) -> Result<Metadata, Rejection> {
        read_package(value.to_string().as_bytes())
    }

    #[test]
    fn a_package_reads_field_by_field() {
        let m = read_json(json!({
            "id": "2988a6aa", "name": "zimbabwe-survey", "title": "Zimbabwe Survey.",
            "notes": "During the period  1982-86 ...", "url": "http://some.source.url.com",
            "author": "A. Author", "maintainer_email": "m@example.org",
            "metadata_modified": "2014-05-09T22:00:01.486366", "license_id": "uk-ogl",
            "organization": {"name": "bgs", "title": "British Geological Survey"},
            "tags": [{"name": "geology"}, {"name": "geochemistry"}, {"name": "geology"}],
            "groups": [{"id": "g1-id", "name": "earth"}],
            "extras": [
                {"key": "spatial", "value": "{\"type\": \"Polygon\", \"coordinates\": [[[25.2, -22.4], [33.1, -22.4], [33.1, -15.6], [25.2, -15.6], [25.2, -22.4]]]}"},
                {"key": "temporal_coverage-from", "value": "1982"},
                {"key": "temporal_coverage-to", "value": ""}
            ],
            "resources": [{"url": "http://www.bgs.ac.uk/gbase/home.html", "format": "text/html", "name": "", "description": "Resource locator"}]
        }))
        .unwrap();
        assert_eq!(m.id, "2988a6aa");
        assert_eq!(m.title, "Zimbabwe Survey.");
        assert_eq!(m.abstract_text, "During the period 1982-86 ...");
        assert_eq!(m.keywords, ["geology", "geochemistry"]);
        assert_eq!(
            m.bbox,
            Some(BBox {
                west: 25.2,
                south: -22.4,
                east: 33.1,
                north: -15.6
            })
        );
        assert_eq!(
            m.time,
            Some(TimeExtent {
                start: Some("1982".into()),
                end: None
            })
        );
        let roles: Vec<_> = m
            .contacts
            .iter()
            .map(|c| c.role.as_deref().unwrap())
            .collect();
        assert_eq!(roles, ["author", "maintainer", "publisher"]);
        assert_eq!(
            m.contacts[2].organisation.as_deref(),
            Some("British Geological Survey")
        );
        assert_eq!(m.links[0].url, "http://www.bgs.ac.uk/gbase/home.html");
        assert_eq!(m.links[0].protocol.as_deref(), Some("text/html"));
        assert_eq!(m.links[0].name.as_deref(), Some("Resource locator"));
        assert_eq!(m.links[1].url, "http://some.source.url.com");
        assert_eq!(m.format, RecordFormat::Ckan);
        assert_eq!(m.modified.as_deref(), Some("2014-05-09T22:00:01.486366"));
        let ckan = m.ckan.unwrap();
        assert_eq!(ckan.name, "zimbabwe-survey");
        assert_eq!(ckan.organization.as_deref(), Some("bgs"));
        assert_eq!(ckan.groups, ["earth"]);
        assert_eq!(ckan.extras.len(), 3);
        assert_eq!(ckan.license_id.as_deref(), Some("uk-ogl"));
    }

    #[test]
    fn a_package_show_answer_and_the_rest_form_read_too() {
        let m = read_json(json!({"success": true, "result": {
            "id": "x", "name": "x-name", "tags": ["a", "b"], "modified": "2024-05-05",
            "contact": [{"name": "Contact 1", "email": "c1@example.org"}],
            "extras": {"bbox-west-long": "-10", "bbox-south-lat": "50", "bbox-east-long": "2", "bbox-north-lat": "61"}
        }}))
        .unwrap();
        assert_eq!(m.title, "x-name");
        assert_eq!(m.modified.as_deref(), Some("2024-05-05"));
        assert_eq!(m.contacts[0].email.as_deref(), Some("c1@example.org"));
        assert_eq!(m.contacts[0].role.as_deref(), Some("pointOfContact"));
        assert_eq!(m.keywords, ["a", "b"]);
        assert_eq!(
            m.bbox,
            Some(BBox {
                west: -10.0,
                south: 50.0,
                east: 2.0,
                north: 61.0
            })
        );
    }

    #[test]
    fn broken_packages_are_rejected_with_why() {
        let reason = |v: Value| read_json(v).unwrap_err().to_string();
        assert!(reason(json!({"title": "t"})).contains("no identifier"));
        assert!(reason(json!([1])).contains("JSON object"));
        assert!(
            reason(json!({"id": "i", "title": "t", "extras": [{"key": "spatial", "value": "{not json"}]}))
                .contains("not GeoJSON")
        );
        assert!(
            reason(json!({"id": "i", "title": "t", "spatial": {"type": "Point", "coordinates": [200, 10]}}))
                .contains("outside")
        );
        assert!(
            read_package(b"{\"id\": ")
                .unwrap_err()
                .to_string()
                .contains("unreadable JSON")
        );
    }
}

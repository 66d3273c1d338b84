//! A record as schema.org `Dataset` JSON-LD, the markup search engines (Google Dataset
//! Search) index a catalogue page by.

use serde_json::{Value, json};

use crate::domain::record::Record;

/// `page` is the record's own address in this catalogue.
pub fn dataset(record: &Record, page: &str) -> Value {
    let m = &record.metadata;
    let mut out = json!({
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": page,
        "url": page,
        "identifier": m.id,
        "name": m.title,
        "description": m.abstract_text,
        "sameAs": record.original_url,
        "includedInDataCatalog": {"@type": "DataCatalog", "name": record.source},
    });
    let o = out.as_object_mut().expect("an object");
    if !m.keywords.is_empty() {
        o.insert("keywords".into(), json!(m.keywords));
    }
    if let Some(modified) = &m.modified {
        o.insert("dateModified".into(), json!(modified));
    }
    if let Some(b) = &m.bbox {
        // schema.org's box: "south west north east".
        o.insert(
            "spatialCoverage".into(),
            json!({"@type": "Place", "geo": {"@type": "GeoShape",
                "box": format!("{} {} {} {}", b.south, b.west, b.north, b.east)}}),
        );
    }
    if let Some(t) = &m.time
        && (t.start.is_some() || t.end.is_some())
    {
        // An ISO 8601 interval; ".." is an open end.
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "..".into());
        o.insert(
            "temporalCoverage".into(),
            json!(format!("{}/{}", side(&t.start), side(&t.end))),
        );
    }
    let people: Vec<Value> = m
        .contacts
        .iter()
        .filter_map(|c| {
            let (kind, name) = match (&c.name, &c.organisation) {
                (Some(n), _) => ("Person", n),
                (None, Some(org)) => ("Organization", org),
                (None, None) => return None,
            };
            let mut p = json!({"@type": kind, "name": name});
            if let Some(email) = &c.email {
                p["email"] = json!(email);
            }
            if let (Some(_), Some(org)) = (&c.name, &c.organisation) {
                p["affiliation"] = json!({"@type": "Organization", "name": org});
            }
            Some(p)
        })
        .collect();
    if !people.is_empty() {
        o.insert("creator".into(), json!(people));
    }
    let downloads: Vec<Value> = m
        .links
        .iter()
        .map(|l| {
            let mut d = json!({"@type": "DataDownload", "contentUrl": l.url});
            if let Some(p) = &l.protocol {
                d["encodingFormat"] = json!(p);
            }
            if let Some(n) = &l.name {
                d["name"] = json!(n);
            }
            d
        })
        .collect();
    if !downloads.is_empty() {
        o.insert("distribution".into(), json!(downloads));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::{BBox, Contact, Link, Metadata, RecordFormat, TimeExtent};

    #[test]
    fn a_record_reads_as_a_schema_org_dataset() {
        let record = Record {
            metadata: Metadata {
                id: "sst-1".into(),
                title: "Sea surface temperature".into(),
                abstract_text: "Daily grids".into(),
                keywords: vec!["oceans".into()],
                bbox: Some(BBox {
                    west: -10.0,
                    south: 50.0,
                    east: 2.0,
                    north: 61.0,
                }),
                time: Some(TimeExtent {
                    start: Some("2010-01-01".into()),
                    end: None,
                }),
                contacts: vec![Contact {
                    name: Some("A. Scientist".into()),
                    organisation: Some("Met Office".into()),
                    email: Some("a@example.org".into()),
                    role: Some("author".into()),
                }],
                links: vec![Link {
                    url: "https://example.org/sst.nc".into(),
                    protocol: Some("NetCDF".into()),
                    name: None,
                }],
                format: RecordFormat::Iso19139,
                modified: Some("2020-05-01".into()),
                ckan: None,
            },
            source: "noaa".into(),
            original_url: "https://example.org/waf/sst.xml".into(),
            harvested: "2026-01-01T00:00:00Z".into(),
            sha256: "0".repeat(64),
        };
        let d = dataset(
            &record,
            "https://cat.example.org/api/catalog/records/sst-1.jsonld",
        );
        assert_eq!(d["@type"], "Dataset");
        assert_eq!(d["name"], "Sea surface temperature");
        assert_eq!(d["identifier"], "sst-1");
        assert_eq!(d["spatialCoverage"]["geo"]["box"], "50 -10 61 2");
        assert_eq!(d["temporalCoverage"], "2010-01-01/..");
        assert_eq!(d["creator"][0]["@type"], "Person");
        assert_eq!(d["creator"][0]["affiliation"]["name"], "Met Office");
        assert_eq!(
            d["distribution"][0]["contentUrl"],
            "https://example.org/sst.nc"
        );
        assert_eq!(d["distribution"][0]["encodingFormat"], "NetCDF");
        assert_eq!(d["sameAs"], "https://example.org/waf/sst.xml");
        assert_eq!(d["keywords"][0], "oceans");
    }
}

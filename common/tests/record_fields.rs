//! Each format's reader, field by field, against an independent reader: OWSLib's ISO 19139
//! and Dublin Core models and CKAN's package keys (`tests/record_oracle.py`), over the
//! project's test records. `extra_fixtures.rs` runs the same over the real ones.

mod support;

use std::path::PathBuf;

use support::*;

fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "xml" || e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn every_reader_agrees_with_owslib_field_by_field() {
    let waf = workspace_root().join("tests/records/waf");
    let mut files = Vec::new();
    for folder in ["iso19139", "dublin-core"] {
        files_under(&waf.join(folder), &mut files);
    }
    files.sort();
    let (compared, differences) = differences_from_owslib(&files);
    assert!(compared >= 8, "compared {compared} of {}", files.len());
    assert!(differences.is_empty(), "{differences:#?}");
}

/// ISO 19115-3, which OWSLib 0.28 does not read: the test record's every field as written.
#[test]
fn iso_19115_3_is_read_field_by_field() {
    use common::domain::record::{BBox, Contact, Link, RecordFormat};
    let bytes =
        std::fs::read(workspace_root().join("tests/records/waf/iso19115-3/geological-model.xml"))
            .expect("test record");
    let m = common::parse::read_metadata(&bytes, common::parse::XmlLimits::default())
        .expect("a valid record");
    assert_eq!(m.format, RecordFormat::Iso19115_3);
    assert_eq!(m.id, "3d7c1e52-9a4b-4f0e-8c6d-2b1a0f9e8d73");
    assert_eq!(m.title, "3D geological model of a sedimentary basin");
    assert_eq!(
        m.abstract_text,
        "A three-dimensional geological model built from boreholes, seismic lines and maps."
    );
    assert_eq!(
        m.bbox,
        Some(BBox {
            west: 143.0,
            south: -39.4,
            east: 144.0,
            north: -38.4
        })
    );
    assert_eq!(
        m.keywords,
        ["geology", "3D model"],
        "a gcx:Anchor is a keyword too"
    );
    assert_eq!(m.time, None);
    assert_eq!(m.modified.as_deref(), Some("2022-11-03T06:17:02"));
    assert_eq!(
        m.contacts,
        [Contact {
            name: Some("Modelling Team".into()),
            organisation: Some("Example Geological Survey".into()),
            email: Some("geo@example.org".into()),
            role: Some("pointOfContact".into()),
        }]
    );
    assert_eq!(
        m.links,
        [Link {
            url: "https://data.example.org/geomodel/model.zip".into(),
            protocol: Some("WWW:DOWNLOAD-1.0-http--download".into()),
            name: Some("Model download".into()),
        }]
    );
}

//! The catalogue as OGC API – Records (Part 1, what pycsw 3 and GeoNetwork 4 serve beside
//! CSW): a landing page, conformance, one collection (`metadata`) whose items are the records
//! as GeoJSON features, searched with `q`, `bbox`, `datetime`, `filter` (CQL text) and paged
//! with `limit` / `offset` and next links. `html.rs` renders the same documents for people.

pub mod html;
mod params;

pub use params::{ItemsQuery, ParamError};

use serde_json::{Value, json};

use crate::catalog::Hits;
use crate::domain::record::{BBox, Record};

pub const COLLECTION: &str = "metadata";
pub const GEOJSON: &str = "application/geo+json";

const CONFORMANCE: [&str; 9] = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-core",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
];

fn link(rel: &str, kind: &str, href: String, title: &str) -> Value {
    json!({"rel": rel, "type": kind, "href": href, "title": title})
}

pub fn landing(base: &str) -> Value {
    json!({
        "title": "Sheaf catalogue",
        "description": "Metadata harvested from WAF, CSW, CKAN and OAI-PMH sources into one catalogue.",
        "links": [
            link("self", "application/json", format!("{base}?f=json"), "this document"),
            link("alternate", "text/html", format!("{base}?f=html"), "this document as HTML"),
            link("conformance", "application/json", format!("{base}/conformance"), "conformance"),
            link("data", "application/json", format!("{base}/collections"), "collections"),
        ],
    })
}

pub fn conformance() -> Value {
    json!({"conformsTo": CONFORMANCE})
}

pub fn collection(base: &str) -> Value {
    let here = format!("{base}/collections/{COLLECTION}");
    json!({
        "id": COLLECTION,
        "title": "Sheaf catalogue",
        "description": "Every record of the catalogue.",
        "itemType": "record",
        "type": "Collection",
        "links": [
            link("self", "application/json", here.clone(), "this collection"),
            link("alternate", "text/html", format!("{here}?f=html"), "this collection as HTML"),
            link("items", GEOJSON, format!("{here}/items"), "the records"),
        ],
    })
}

pub fn collections(base: &str) -> Value {
    json!({
        "collections": [collection(base)],
        "links": [link("self", "application/json", format!("{base}/collections"), "collections")],
    })
}

/// A box as GeoJSON geometry: one polygon, or two where it crosses the antimeridian.
fn geometry(b: &BBox) -> Value {
    let ring = |w: f64, e: f64| {
        json!([[
            [w, b.south],
            [e, b.south],
            [e, b.north],
            [w, b.north],
            [w, b.south]
        ]])
    };
    if b.west > b.east {
        json!({"type": "MultiPolygon", "coordinates": [ring(b.west, 180.0), ring(-180.0, b.east)]})
    } else {
        json!({"type": "Polygon", "coordinates": ring(b.west, b.east)})
    }
}

/// The item's URL: an identifier may hold `/` or `:`, so it is percent-encoded.
pub fn item_url(base: &str, id: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    format!("{base}/collections/{COLLECTION}/items/{encoded}")
}

/// A record as an OGC API – Records GeoJSON feature.
pub fn record(base: &str, api: &str, r: &Record) -> Value {
    let m = &r.metadata;
    let here = item_url(base, &m.id);
    let encoded = percent_encoding::utf8_percent_encode(&m.id, percent_encoding::NON_ALPHANUMERIC);
    let mut links = vec![
        link("self", GEOJSON, here.clone(), "this record"),
        link(
            "alternate",
            "text/html",
            format!("{here}?f=html"),
            "this record as HTML",
        ),
        link(
            "alternate",
            "application/xml",
            format!("{api}/catalog/records/{encoded}.xml"),
            "the original document",
        ),
        link(
            "collection",
            "application/json",
            format!("{base}/collections/{COLLECTION}"),
            "the catalogue",
        ),
    ];
    for l in &m.links {
        let mut item = json!({"rel": "related", "href": l.url});
        if let Some(name) = &l.name {
            item["title"] = json!(name);
        }
        if let Some(protocol) = &l.protocol {
            item["protocol"] = json!(protocol);
        }
        links.push(item);
    }
    let contacts: Vec<Value> = m
        .contacts
        .iter()
        .map(|c| {
            let mut contact = json!({});
            if let Some(name) = &c.name {
                contact["name"] = json!(name);
            }
            if let Some(org) = &c.organisation {
                contact["organization"] = json!(org);
            }
            if let Some(email) = &c.email {
                contact["emails"] = json!([{"value": email}]);
            }
            if let Some(role) = &c.role {
                contact["roles"] = json!([role]);
            }
            contact
        })
        .collect();
    let time = m.time.as_ref().map(|t| {
        json!({"interval": [
            t.start.as_deref().unwrap_or(".."),
            t.end.as_deref().unwrap_or(".."),
        ]})
    });
    let mut feature = json!({
        "id": m.id,
        "type": "Feature",
        "conformsTo": ["http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-core"],
        "geometry": m.bbox.as_ref().map(geometry),
        "time": time,
        "properties": {
            "type": "dataset",
            "title": m.title,
            "description": m.abstract_text,
            "keywords": m.keywords,
            "updated": m.modified,
            "contacts": contacts,
            "formats": [{"name": m.format}],
            "sheaf:source": r.source,
        },
        "links": links,
    });
    if let Some(b) = &m.bbox {
        feature["bbox"] = json!([b.west, b.south, b.east, b.north]);
    }
    feature
}

/// A page of items, with next and previous links that keep the query.
pub fn items(base: &str, api: &str, query: &ItemsQuery, hits: &Hits) -> Value {
    let here = format!("{base}/collections/{COLLECTION}/items");
    let page =
        |offset: u64, format: &str| format!("{here}?{}", query.to_query_string(offset, format));
    let returned = hits.records.len() as u64;
    let mut links = vec![
        link("self", GEOJSON, page(query.offset, "json"), "this page"),
        link(
            "alternate",
            "text/html",
            page(query.offset, "html"),
            "this page as HTML",
        ),
        link(
            "collection",
            "application/json",
            format!("{base}/collections/{COLLECTION}"),
            "the catalogue",
        ),
    ];
    if query.offset + returned < hits.total {
        links.push(link(
            "next",
            GEOJSON,
            page(query.offset + returned, "json"),
            "next page",
        ));
    }
    if query.offset > 0 {
        let previous = query.offset.saturating_sub(query.limit);
        links.push(link(
            "prev",
            GEOJSON,
            page(previous, "json"),
            "previous page",
        ));
    }
    json!({
        "type": "FeatureCollection",
        "numberMatched": hits.total,
        "numberReturned": returned,
        "timeStamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "features": hits.records.iter().map(|r| record(base, api, r)).collect::<Vec<_>>(),
        "links": links,
    })
}

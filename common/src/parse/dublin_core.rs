//! Dublin Core: `csw:Record` (CSW 2.0.2), `oai_dc:dc`, and simple DC containers.
//! Every DC element is optional, so a record without a title takes its identifier as title.

use super::{Rejection, clean, dedup};
use crate::domain::record::{BBox, Contact, Link, Metadata, RecordFormat};
use crate::parse::Element;

fn values(root: &Element, names: &[&str]) -> Vec<String> {
    root.children
        .iter()
        .filter(|c| names.contains(&c.name.as_str()))
        .filter_map(|c| clean(&c.all_text()))
        .collect()
}

fn first(root: &Element, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| values(root, &[n]).into_iter().next())
}

/// `ows:BoundingBox`: EPSG:4326 URNs put latitude first, CRS84 (and no CRS) longitude first.
fn bbox(root: &Element) -> Result<Option<BBox>, Rejection> {
    let Some(b) = root
        .child("BoundingBox")
        .or_else(|| root.child("WGS84BoundingBox"))
    else {
        return Ok(None);
    };
    let corner = |name: &str| -> Result<(f64, f64), Rejection> {
        let text = b.child(name).map(|c| c.all_text()).unwrap_or_default();
        let nums: Vec<f64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Rejection::Invalid(format!("bounding box {name} {text:?} is not two numbers"))
            })?;
        match nums.as_slice() {
            [a, b] => Ok((*a, *b)),
            _ => Err(Rejection::Invalid(format!(
                "bounding box {name} {text:?} is not two numbers"
            ))),
        }
    };
    let (lower, upper) = (corner("LowerCorner")?, corner("UpperCorner")?);
    let crs = b.attr("crs").unwrap_or_default();
    let lat_first = b.name == "BoundingBox" && crs.contains("4326") && !crs.contains("CRS84");
    let bbox = if lat_first {
        BBox {
            south: lower.0,
            west: lower.1,
            north: upper.0,
            east: upper.1,
        }
    } else {
        BBox {
            west: lower.0,
            south: lower.1,
            east: upper.0,
            north: upper.1,
        }
    };
    bbox.validate().map_err(Rejection::Invalid)?;
    Ok(Some(bbox))
}

pub(super) fn read(root: &Element) -> Result<Metadata, Rejection> {
    let id = first(root, &["identifier"]).unwrap_or_default();
    let title = first(root, &["title"]).unwrap_or_else(|| id.clone());
    let contacts = ["creator", "publisher", "contributor"]
        .iter()
        .flat_map(|role| {
            values(root, &[role]).into_iter().map(move |name| Contact {
                name: None,
                organisation: Some(name),
                email: None,
                role: Some(role.to_string()),
            })
        })
        .collect();
    let links = values(root, &["references", "URI", "source"])
        .into_iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|url| Link {
            url,
            protocol: None,
            name: None,
        })
        .collect();
    Ok(Metadata {
        id,
        title,
        abstract_text: first(root, &["abstract", "description"]).unwrap_or_default(),
        keywords: dedup(values(root, &["subject"])),
        bbox: bbox(root)?,
        time: None,
        contacts,
        links,
        format: RecordFormat::DublinCore,
        modified: first(root, &["modified", "date"]),
    })
}

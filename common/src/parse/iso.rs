//! ISO 19139 (`gmd:MD_Metadata`, `gmi:MI_Metadata`) and ISO 19115-3 (`mdb:MD_Metadata`).
//! Both are matched by local names under a root already identified by namespace; where the
//! two schemas name things differently, each reader says so.

use super::{Rejection, clean, dedup};
use crate::domain::record::{BBox, Contact, Link, Metadata, RecordFormat, TimeExtent};
use crate::parse::Element;

/// The text of a property: its `CharacterString`/`Anchor` (not the translations beside it),
/// else all its text.
pub(super) fn text(property: &Element) -> Option<String> {
    property
        .children
        .iter()
        .find(|c| {
            matches!(
                c.name.as_str(),
                "CharacterString" | "Anchor" | "URL" | "Decimal" | "Date" | "DateTime" | "Real"
            )
        })
        .map(|c| c.all_text())
        .and_then(|t| clean(&t))
        .or_else(|| clean(&property.all_text()))
}

fn first_text(root: &Element, path: &[&str]) -> Option<String> {
    root.select(path).into_iter().find_map(text)
}

fn number(property: Option<&Element>) -> Option<f64> {
    text(property?)?.parse().ok()
}

/// The union of every geographic bounding box under `scope`; a box with a missing or
/// unreadable side is an error, not silently dropped.
fn bbox(scope: &[&Element]) -> Result<Option<BBox>, Rejection> {
    let mut out: Option<BBox> = None;
    for b in scope
        .iter()
        .flat_map(|s| s.descendants("EX_GeographicBoundingBox"))
    {
        let side = |name: &str| {
            number(b.child(name)).ok_or_else(|| {
                Rejection::Invalid(format!("bounding box {name} is missing or not a number"))
            })
        };
        let found = BBox {
            west: side("westBoundLongitude")?,
            east: side("eastBoundLongitude")?,
            south: side("southBoundLatitude")?,
            north: side("northBoundLatitude")?,
        };
        found.validate().map_err(Rejection::Invalid)?;
        out = Some(out.map_or(found, |o| o.union(found)));
    }
    Ok(out)
}

/// The first temporal extent: a period's begin/end, or an instant as both.
fn time(scope: &[&Element]) -> Option<TimeExtent> {
    for t in scope
        .iter()
        .flat_map(|s| s.descendants("EX_TemporalExtent"))
    {
        if let Some(period) = t.descendants("TimePeriod").first() {
            let position = |names: &[&str]| {
                names.iter().find_map(|n| {
                    period
                        .descendants(n)
                        .first()
                        .and_then(|e| clean(&e.all_text()))
                })
            };
            let start = position(&["beginPosition", "begin"]);
            let end = position(&["endPosition", "end"]);
            if start.is_some() || end.is_some() {
                return Some(TimeExtent { start, end });
            }
        }
        if let Some(instant) = t.descendants("timePosition").first() {
            let at = clean(&instant.all_text());
            if at.is_some() {
                return Some(TimeExtent {
                    start: at.clone(),
                    end: at,
                });
            }
        }
    }
    None
}

fn keywords(identification: &[&Element]) -> Vec<String> {
    dedup(
        identification
            .iter()
            .flat_map(|i| i.descendants("MD_Keywords"))
            .flat_map(|k| k.children_named("keyword"))
            .filter_map(text)
            .collect(),
    )
}

fn role(element: Option<&Element>) -> Option<String> {
    let code = element?.descendants("CI_RoleCode").into_iter().next()?;
    code.attr("codeListValue")
        .and_then(clean)
        .or_else(|| clean(&code.all_text()))
}

fn links(root: &Element, distribution: &str) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for d in root.children_named(distribution) {
        for r in d.descendants("CI_OnlineResource") {
            let Some(url) = r.child("linkage").and_then(text) else {
                continue;
            };
            if out.iter().any(|l| l.url == url) {
                continue;
            }
            out.push(Link {
                url,
                protocol: r.child("protocol").and_then(text),
                name: r.child("name").and_then(text),
            });
        }
    }
    out
}

pub(super) fn read_iso19139(root: &Element) -> Result<Metadata, Rejection> {
    let identification: Vec<&Element> = root.select(&["identificationInfo", "*"]);
    let contacts = root
        .select(&["contact", "CI_ResponsibleParty"])
        .into_iter()
        .chain(
            identification
                .iter()
                .flat_map(|i| i.select(&["pointOfContact", "CI_ResponsibleParty"])),
        )
        .map(|p| Contact {
            name: p.child("individualName").and_then(text),
            organisation: p.child("organisationName").and_then(text),
            email: p
                .descendants("electronicMailAddress")
                .into_iter()
                .find_map(text),
            role: role(p.child("role")),
        })
        .collect::<Vec<_>>();
    let id = first_text(root, &["fileIdentifier"]).unwrap_or_default();
    let modified = first_text(root, &["dateStamp"]);
    assemble(
        root,
        &identification,
        id,
        contacts,
        RecordFormat::Iso19139,
        modified,
    )
}

pub(super) fn read_iso19115_3(root: &Element) -> Result<Metadata, Rejection> {
    let identification: Vec<&Element> = root.select(&["identificationInfo", "*"]);
    let mut contacts = Vec::new();
    let responsibilities = root
        .select(&["contact", "CI_Responsibility"])
        .into_iter()
        .chain(
            identification
                .iter()
                .flat_map(|i| i.select(&["pointOfContact", "CI_Responsibility"])),
        );
    for r in responsibilities {
        let role = role(r.child("role"));
        for party in r.children_named("party").flat_map(|p| p.children.iter()) {
            let (name, organisation) = match party.name.as_str() {
                "CI_Organisation" => {
                    let individual = party
                        .descendants("CI_Individual")
                        .into_iter()
                        .find_map(|i| i.child("name").and_then(text));
                    (individual, party.child("name").and_then(text))
                }
                _ => (party.child("name").and_then(text), None),
            };
            contacts.push(Contact {
                name,
                organisation,
                email: party
                    .descendants("electronicMailAddress")
                    .into_iter()
                    .find_map(text),
                role: role.clone(),
            });
        }
    }
    // The revision date, else the creation date, else any date of the metadata.
    let dates: Vec<(Option<String>, Option<String>)> = root
        .select(&["dateInfo", "CI_Date"])
        .into_iter()
        .map(|d| {
            (
                d.child("dateType")
                    .and_then(|t| t.descendants("CI_DateTypeCode").into_iter().next())
                    .and_then(|c| c.attr("codeListValue").map(str::to_string)),
                d.child("date").and_then(text),
            )
        })
        .collect();
    let date_of = |kind: &str| {
        dates
            .iter()
            .find(|(t, _)| t.as_deref() == Some(kind))
            .and_then(|(_, d)| d.clone())
    };
    let modified = date_of("revision")
        .or_else(|| date_of("creation"))
        .or_else(|| dates.iter().find_map(|(_, d)| d.clone()));
    let id = first_text(root, &["metadataIdentifier", "MD_Identifier", "code"]).unwrap_or_default();
    assemble(
        root,
        &identification,
        id,
        contacts,
        RecordFormat::Iso19115_3,
        modified,
    )
}

/// What both ISO schemas hold in the same places (by local name): citation title, abstract,
/// keywords, extents and online resources.
fn assemble(
    root: &Element,
    identification: &[&Element],
    id: String,
    contacts: Vec<Contact>,
    format: RecordFormat,
    modified: Option<String>,
) -> Result<Metadata, Rejection> {
    Ok(Metadata {
        id,
        title: identification
            .iter()
            .find_map(|i| first_text(i, &["citation", "CI_Citation", "title"]))
            .unwrap_or_default(),
        abstract_text: identification
            .iter()
            .find_map(|i| first_text(i, &["abstract"]))
            .unwrap_or_default(),
        keywords: keywords(identification),
        bbox: bbox(identification)?,
        time: time(identification),
        contacts: dedup_contacts(contacts),
        links: links(root, "distributionInfo"),
        format,
        modified,
        ckan: None,
    })
}

fn dedup_contacts(contacts: Vec<Contact>) -> Vec<Contact> {
    let mut out: Vec<Contact> = Vec::new();
    for c in contacts {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

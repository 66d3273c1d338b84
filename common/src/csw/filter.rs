//! OGC Filter Encoding 1.1 (and a little CQL) read into the catalogue's `Filter`.
//!
//! The queryables are those of CSW's core (`csw:AnyText`, `dc:title`, `dc:subject`,
//! `dc:identifier`, `dc:format`, `dc:type`, `dct:abstract`, `dct:modified`,
//! `ows:BoundingBox`) and their ISO application profile names (`apiso:Title`,
//! `apiso:TempExtent_begin`, ...); a prefix is not checked, the local name decides.

use super::error::CswError;
use super::request::text_of;
use crate::catalog::{
    Compare, DateField, Edge, ExactField, Filter, TextField, parse_bbox, seconds,
};
use crate::domain::record::BBox;
use crate::parse::xml::Element;

const GML_NS: &str = "http://www.opengis.net/gml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queryable {
    Text(TextField),
    Exact(ExactField),
    /// `dc:subject`: words with a wildcard, the keyword itself without.
    Subject,
    Date(DateField),
    /// `dc:type`: every record here describes a dataset.
    Type,
    BoundingBox,
}

fn queryable(name: &str) -> Result<Queryable, CswError> {
    let local = name
        .trim()
        .rsplit(':')
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    Ok(match local.as_str() {
        "anytext" | "abstract" => Queryable::Text(TextField::Any),
        "title" => Queryable::Text(TextField::Title),
        "subject" | "keywords" => Queryable::Subject,
        "identifier" => Queryable::Exact(ExactField::Identifier),
        "format" => Queryable::Exact(ExactField::Format),
        "source" => Queryable::Exact(ExactField::Source),
        "modified" | "date" => Queryable::Date(DateField::Modified),
        "tempextent_begin" => Queryable::Date(DateField::TimeBegin),
        "tempextent_end" => Queryable::Date(DateField::TimeEnd),
        "type" => Queryable::Type,
        "boundingbox" => Queryable::BoundingBox,
        _ => {
            return Err(CswError::invalid(
                "Constraint",
                format!("{name:?} is not a queryable of this catalogue"),
            ));
        }
    })
}

/// Reads an `ogc:Filter` element.
pub fn ogc_filter(filter: &Element) -> Result<Filter, CswError> {
    let mut parts = filter.children.iter();
    match (parts.next(), parts.next()) {
        (Some(only), None) => condition(only),
        (None, _) => Err(CswError::invalid("Constraint", "the filter is empty")),
        _ => Err(CswError::invalid(
            "Constraint",
            "a filter holds one condition: join several with And or Or",
        )),
    }
}

fn condition(e: &Element) -> Result<Filter, CswError> {
    let each = || {
        e.children
            .iter()
            .map(condition)
            .collect::<Result<Vec<_>, _>>()
    };
    match e.name.as_str() {
        "And" => Ok(Filter::And(each()?)),
        "Or" => Ok(Filter::Or(each()?)),
        "Not" => {
            let inner = e
                .children
                .first()
                .ok_or_else(|| CswError::invalid("Constraint", "Not holds no condition"))?;
            Ok(Filter::Not(Box::new(condition(inner)?)))
        }
        "PropertyIsLike" => {
            let wild = e.attr("wildCard").unwrap_or("%");
            let single = e.attr("singleChar").unwrap_or("_");
            let (name, pattern) = property_and_literal(e)?;
            like(&name, &pattern, wild, single)
        }
        "PropertyIsEqualTo" => {
            let (name, value) = property_and_literal(e)?;
            compare(&name, Compare::Equal, &value)
        }
        "PropertyIsNotEqualTo" => {
            let (name, value) = property_and_literal(e)?;
            Ok(Filter::Not(Box::new(compare(
                &name,
                Compare::Equal,
                &value,
            )?)))
        }
        "PropertyIsLessThan" => compare_element(e, Compare::Less),
        "PropertyIsLessThanOrEqualTo" => compare_element(e, Compare::LessOrEqual),
        "PropertyIsGreaterThan" => compare_element(e, Compare::Greater),
        "PropertyIsGreaterThanOrEqualTo" => compare_element(e, Compare::GreaterOrEqual),
        "PropertyIsBetween" => {
            let name = required_text(e, "PropertyName")?;
            let bound = |which: &str| {
                e.child(which)
                    .map(|b| b.all_text())
                    .ok_or_else(|| CswError::invalid("Constraint", format!("{which} is missing")))
            };
            Ok(Filter::And(vec![
                compare(&name, Compare::GreaterOrEqual, &bound("LowerBoundary")?)?,
                compare(&name, Compare::LessOrEqual, &bound("UpperBoundary")?)?,
            ]))
        }
        "BBOX" => {
            if let Some(name) = e.child("PropertyName").map(|p| p.all_text())
                && queryable(&name)? != Queryable::BoundingBox
            {
                return Err(CswError::invalid(
                    "Constraint",
                    format!("BBOX applies to ows:BoundingBox, not {name}"),
                ));
            }
            let envelope = e
                .children
                .iter()
                .find(|c| c.ns == GML_NS && c.name == "Envelope")
                .ok_or_else(|| CswError::invalid("Constraint", "BBOX needs a gml:Envelope"))?;
            Ok(Filter::BBox(envelope_box(envelope)?))
        }
        other => Err(CswError::invalid(
            "Constraint",
            format!("{other} is not a filter operator this catalogue offers"),
        )),
    }
}

fn required_text(e: &Element, name: &str) -> Result<String, CswError> {
    text_of(e, name)
        .ok_or_else(|| CswError::invalid("Constraint", format!("{} needs {name}", e.name)))
}

fn property_and_literal(e: &Element) -> Result<(String, String), CswError> {
    let name = required_text(e, "PropertyName")?;
    let literal = e
        .child("Literal")
        .map(|c| c.all_text())
        .ok_or_else(|| CswError::invalid("Constraint", format!("{} needs Literal", e.name)))?;
    Ok((name, literal))
}

fn compare_element(e: &Element, how: Compare) -> Result<Filter, CswError> {
    let (name, value) = property_and_literal(e)?;
    compare(&name, how, &value)
}

fn like(name: &str, pattern: &str, wild: &str, single: &str) -> Result<Filter, CswError> {
    let has_wildcard = pattern.contains(wild) || pattern.contains(single);
    let words = pattern.replace(wild, " ").replace(single, " ");
    let words = || {
        if words.trim().is_empty() {
            Filter::All
        } else {
            Filter::Words {
                field: TextField::Any,
                words: words.clone(),
            }
        }
    };
    match queryable(name)? {
        Queryable::Text(field) => Ok(match words() {
            Filter::Words { words, .. } => Filter::Words { field, words },
            all => all,
        }),
        Queryable::Subject if has_wildcard => Ok(words()),
        Queryable::Subject => Ok(Filter::Equals {
            field: ExactField::Keyword,
            value: pattern.to_string(),
        }),
        Queryable::Exact(field) if !has_wildcard => Ok(Filter::Equals {
            field,
            value: pattern.to_string(),
        }),
        Queryable::Type => compare(name, Compare::Equal, pattern),
        _ => Err(CswError::invalid(
            "Constraint",
            format!(
                "PropertyIsLike with wildcards does not apply to {name}: use PropertyIsEqualTo"
            ),
        )),
    }
}

fn compare(name: &str, how: Compare, value: &str) -> Result<Filter, CswError> {
    match (queryable(name)?, how) {
        (Queryable::Date(field), _) => date(field, how, value),
        (Queryable::Text(field), Compare::Equal) => Ok(match field {
            TextField::Title => Filter::Equals {
                field: ExactField::Title,
                value: value.trim().to_string(),
            },
            TextField::Any => Filter::Words {
                field,
                words: value.to_string(),
            },
        }),
        (Queryable::Subject, Compare::Equal) => Ok(Filter::Equals {
            field: ExactField::Keyword,
            value: value.trim().to_string(),
        }),
        (Queryable::Exact(field), Compare::Equal) => Ok(Filter::Equals {
            field,
            value: value.trim().to_string(),
        }),
        (Queryable::Type, Compare::Equal) => Ok(if value.trim().eq_ignore_ascii_case("dataset") {
            Filter::All
        } else {
            Filter::Not(Box::new(Filter::All))
        }),
        _ => Err(CswError::invalid(
            "Constraint",
            format!("{name} is not compared by order: only dates are"),
        )),
    }
}

/// A date compared with a day (or month, or year) takes the part of it that makes the
/// comparison inclusive: `<= 2014` is up to the last moment of 2014.
fn date(field: DateField, how: Compare, value: &str) -> Result<Filter, CswError> {
    let at = |edge| {
        seconds(value.trim(), edge)
            .ok_or_else(|| CswError::invalid("Constraint", format!("{value:?} is not a date")))
    };
    let one = |compare, seconds| Filter::Date {
        field,
        compare,
        seconds,
    };
    Ok(match how {
        Compare::Less => one(Compare::Less, at(Edge::First)?),
        Compare::LessOrEqual => one(Compare::LessOrEqual, at(Edge::Last)?),
        Compare::Greater => one(Compare::Greater, at(Edge::Last)?),
        Compare::GreaterOrEqual => one(Compare::GreaterOrEqual, at(Edge::First)?),
        Compare::Equal => Filter::And(vec![
            one(Compare::GreaterOrEqual, at(Edge::First)?),
            one(Compare::LessOrEqual, at(Edge::Last)?),
        ]),
    })
}

/// A `gml:Envelope`; its corners are latitude first under the EPSG URNs and URIs of 4326
/// (as pycsw reads them), longitude first under `EPSG:4326`, CRS84 or no srsName.
fn envelope_box(envelope: &Element) -> Result<BBox, CswError> {
    let corner = |name: &str| -> Result<(f64, f64), CswError> {
        let text = envelope
            .child(name)
            .map(|c| c.all_text())
            .ok_or_else(|| CswError::invalid("Constraint", format!("gml:Envelope needs {name}")))?;
        let numbers: Vec<f64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                CswError::invalid("Constraint", format!("{name} {text:?} is not two numbers"))
            })?;
        match numbers[..] {
            [a, b] => Ok((a, b)),
            _ => Err(CswError::invalid(
                "Constraint",
                format!("{name} {text:?} is not two numbers"),
            )),
        }
    };
    let (a1, b1) = corner("lowerCorner")?;
    let (a2, b2) = corner("upperCorner")?;
    let srs = envelope.attr("srsName").unwrap_or("").to_ascii_lowercase();
    let latitude_first = srs.ends_with("4326")
        && (srs.starts_with("urn:") || srs.starts_with("http://www.opengis.net/def/crs/epsg"));
    let (west, south, east, north) = if latitude_first {
        (b1, a1, b2, a2)
    } else {
        (a1, b1, a2, b2)
    };
    let bbox = BBox {
        west,
        south,
        east,
        north,
    };
    bbox.validate()
        .map_err(|e| CswError::invalid("Constraint", e))?;
    Ok(bbox)
}

/// A little CQL: comparisons (`=`, `<>`, `<`, `<=`, `>`, `>=`, `like`) of a queryable with a
/// quoted literal and `BBOX(ows:BoundingBox, W, S, E, N)`, joined by AND or by OR.
pub fn cql_to_filter(text: &str) -> Result<Filter, CswError> {
    let bad = |why: &str| CswError::invalid("constraint", format!("CQL {text:?}: {why}"));
    let (clauses, joiner) =
        split_outside_quotes(text).ok_or_else(|| bad("AND and OR mixed: use an OGC filter"))?;
    let mut parts = Vec::new();
    for clause in clauses {
        let clause = clause.trim();
        if let Some(args) = clause
            .strip_prefix("BBOX(")
            .or_else(|| clause.strip_prefix("bbox("))
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let (name, corners) = args
                .split_once(',')
                .ok_or_else(|| bad("BBOX needs a box"))?;
            if queryable(name)? != Queryable::BoundingBox {
                return Err(bad("BBOX applies to ows:BoundingBox"));
            }
            let bbox = parse_bbox(corners).map_err(|e| bad(&e))?;
            parts.push(Filter::BBox(bbox));
            continue;
        }
        let quote = clause
            .find('\'')
            .ok_or_else(|| bad("a literal is quoted with '"))?;
        let literal = clause[quote + 1..]
            .strip_suffix('\'')
            .ok_or_else(|| bad("an unclosed quote"))?
            .replace("''", "'");
        let head = clause[..quote].trim();
        let split = head
            .find(|c: char| c.is_whitespace() || matches!(c, '=' | '<' | '>' | '!'))
            .unwrap_or(head.len());
        let (name, operator) = (head[..split].trim(), head[split..].trim());
        if name.is_empty() || operator.is_empty() {
            return Err(bad("a clause is PROPERTY OPERATOR 'literal'"));
        }
        let filter = match operator.to_ascii_lowercase().as_str() {
            "like" | "ilike" => like(name, &literal, "%", "_")?,
            "=" => compare(name, Compare::Equal, &literal)?,
            "<>" | "!=" => Filter::Not(Box::new(compare(name, Compare::Equal, &literal)?)),
            "<" => compare(name, Compare::Less, &literal)?,
            "<=" => compare(name, Compare::LessOrEqual, &literal)?,
            ">" => compare(name, Compare::Greater, &literal)?,
            ">=" => compare(name, Compare::GreaterOrEqual, &literal)?,
            other => return Err(bad(&format!("{other:?} is not an operator offered"))),
        };
        parts.push(filter);
    }
    Ok(match (parts.len(), joiner) {
        (1, _) => parts.pop().expect("one clause"),
        (_, Some(Joiner::Or)) => Filter::Or(parts),
        _ => Filter::And(parts),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joiner {
    And,
    Or,
}

/// Splits on ` AND ` or ` OR ` outside quotes; None when both occur.
fn split_outside_quotes(text: &str) -> Option<(Vec<String>, Option<Joiner>)> {
    let mut clauses = vec![String::new()];
    let mut joiner = None;
    let mut quoted = false;
    let words: Vec<&str> = text.split(' ').collect();
    for word in words {
        let upper = word.to_ascii_uppercase();
        let this = match upper.as_str() {
            "AND" if !quoted => Some(Joiner::And),
            "OR" if !quoted => Some(Joiner::Or),
            _ => None,
        };
        match this {
            Some(j) if joiner.is_some_and(|k| k != j) => return None,
            Some(j) => {
                joiner = Some(j);
                clauses.push(String::new());
            }
            None => {
                let current = clauses.last_mut().expect("a clause");
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
                quoted ^= word.matches('\'').count() % 2 == 1;
            }
        }
    }
    Some((clauses, joiner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::xml::{XmlLimits, parse};

    fn read(xml: &str) -> Result<Filter, CswError> {
        ogc_filter(&parse(xml.as_bytes(), XmlLimits::default()).unwrap())
    }

    const OGC: &str =
        r#"xmlns:ogc="http://www.opengis.net/ogc" xmlns:gml="http://www.opengis.net/gml""#;

    #[test]
    fn like_on_any_text_is_words() {
        let f = read(&format!(
            r#"<ogc:Filter {OGC}><ogc:PropertyIsLike wildCard="%" singleChar="_" escapeChar="\"><ogc:PropertyName>csw:AnyText</ogc:PropertyName><ogc:Literal>%sea ice%</ogc:Literal></ogc:PropertyIsLike></ogc:Filter>"#
        ))
        .unwrap();
        assert_eq!(
            f,
            Filter::Words {
                field: TextField::Any,
                words: " sea ice ".into()
            }
        );
    }

    #[test]
    fn envelope_axis_order_follows_the_crs() {
        let env = |srs: &str| {
            read(&format!(
                r#"<ogc:Filter {OGC}><ogc:BBOX><ogc:PropertyName>ows:BoundingBox</ogc:PropertyName><gml:Envelope srsName="{srs}"><gml:lowerCorner>10 -20</gml:lowerCorner><gml:upperCorner>30 40</gml:upperCorner></gml:Envelope></ogc:BBOX></ogc:Filter>"#
            ))
            .unwrap()
        };
        let lon_first = BBox {
            west: 10.0,
            south: -20.0,
            east: 30.0,
            north: 40.0,
        };
        let lat_first = BBox {
            west: -20.0,
            south: 10.0,
            east: 40.0,
            north: 30.0,
        };
        assert_eq!(env("EPSG:4326"), Filter::BBox(lon_first));
        assert_eq!(env("urn:ogc:def:crs:EPSG::4326"), Filter::BBox(lat_first));
        assert_eq!(
            env("http://www.opengis.net/def/crs/EPSG/0/4326"),
            Filter::BBox(lat_first)
        );
    }

    #[test]
    fn an_unknown_property_or_operator_is_refused_by_name() {
        let e = read(&format!(
            r#"<ogc:Filter {OGC}><ogc:PropertyIsEqualTo><ogc:PropertyName>dc:colour</ogc:PropertyName><ogc:Literal>red</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>"#
        ))
        .unwrap_err();
        assert!(e.text.contains("dc:colour"), "{e}");
        let e = read(&format!(
            r#"<ogc:Filter {OGC}><ogc:Intersects/></ogc:Filter>"#
        ))
        .unwrap_err();
        assert!(e.text.contains("Intersects"), "{e}");
    }

    #[test]
    fn cql_clauses_join_with_and_or_or() {
        let f = cql_to_filter("AnyText like '%ice%' AND dct:modified >= '2020-01-01'").unwrap();
        let Filter::And(parts) = f else {
            panic!("{f:?}")
        };
        assert_eq!(parts.len(), 2);
        assert!(matches!(
            parts[1],
            Filter::Date {
                field: DateField::Modified,
                compare: Compare::GreaterOrEqual,
                ..
            }
        ));
        let f = cql_to_filter("dc:title = 'A' OR dc:title = 'B and C'").unwrap();
        assert!(matches!(f, Filter::Or(ref p) if p.len() == 2), "{f:?}");
        assert!(cql_to_filter("dc:title = 'A' AND dc:title = 'B' OR x = 'c'").is_err());
    }
}

//! The items query of OGC API – Records, checked: a bad value is refused with its name.

use crate::catalog::{Edge, Search, Sort, parse_bbox, seconds};
use crate::csw::cql_to_filter;

const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 1000;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ParamError {
    pub parameter: &'static str,
    pub message: String,
}

fn bad(parameter: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter,
        message: message.into(),
    }
}

/// What a page of items was asked for; it rebuilds the query for next and previous links.
#[derive(Debug, Clone, Default)]
pub struct ItemsQuery {
    /// The parameters that select records, as given (kept for the paging links).
    kept: Vec<(&'static str, String)>,
    pub search: Search,
    pub offset: u64,
    pub limit: u64,
}

const KEPT: [&str; 6] = ["q", "bbox", "datetime", "filter", "filter-lang", "sortby"];

impl ItemsQuery {
    /// Unknown parameters are ignored (clients add their own, as OWSLib's `datetime_`).
    pub fn parse(pairs: &[(String, String)]) -> Result<ItemsQuery, ParamError> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str, default: u64| {
            get(name).map_or(Ok(default), |v| {
                v.parse::<u64>()
                    .map_err(|_| bad(name, format!("{v:?} is not a whole number")))
            })
        };
        let limit = number("limit", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT);
        let offset = number("offset", 0)?;
        let bbox = get("bbox")
            .map(|b| {
                let numbers = b.split(',').count();
                if numbers == 6 {
                    return Err(bad("bbox", "three-dimensional boxes are not offered"));
                }
                parse_bbox(b).map_err(|e| bad("bbox", e))
            })
            .transpose()?;
        let (start, end) = match get("datetime") {
            None => (None, None),
            Some(text) => interval(text)?,
        };
        let filter = match (get("filter"), get("filter-lang")) {
            (None, _) => None,
            (Some(text), None | Some("cql-text") | Some("cql2-text")) => {
                Some(cql_to_filter(text).map_err(|e| bad("filter", e.text))?)
            }
            (Some(_), Some(other)) => {
                return Err(bad("filter-lang", format!("{other:?} is not cql-text")));
            }
        };
        let sort = match get("sortby") {
            None => None,
            Some("title" | "+title") => Some(Sort::Title),
            Some("-updated" | "-modified") => Some(Sort::Date),
            Some(other) => {
                return Err(bad(
                    "sortby",
                    format!("{other:?} is not offered: title or -updated"),
                ));
            }
        };
        let kept = KEPT
            .iter()
            .filter_map(|name| get(name).map(|v| (*name, v.to_string())))
            .collect();
        Ok(ItemsQuery {
            kept,
            search: Search {
                text: get("q").map(|q| q.replace(',', " ")),
                bbox,
                start,
                end,
                filter,
                sort,
                offset,
                limit,
                ..Search::default()
            },
            offset,
            limit,
        })
    }

    pub fn to_query_string(&self, offset: u64, format: &str) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.kept {
            out.append_pair(name, value);
        }
        out.append_pair("limit", &self.limit.to_string());
        out.append_pair("offset", &offset.to_string());
        out.append_pair("f", format);
        out.finish()
    }

    /// The filter as the HTML page's search form shows it.
    pub fn given(&self, name: &str) -> &str {
        self.kept
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `datetime`: an instant, or `start/end` with `..` (or nothing) for an open end.
fn interval(text: &str) -> Result<(Option<i64>, Option<i64>), ParamError> {
    let moment = |t: &str, edge| -> Result<Option<i64>, ParamError> {
        match t.trim() {
            "" | ".." => Ok(None),
            t => seconds(t, edge)
                .map(Some)
                .ok_or_else(|| bad("datetime", format!("{t:?} is not an RFC 3339 date or time"))),
        }
    };
    match text.split_once('/') {
        Some((a, b)) => Ok((moment(a, Edge::First)?, moment(b, Edge::Last)?)),
        None => Ok((moment(text, Edge::First)?, moment(text, Edge::Last)?)),
    }
}

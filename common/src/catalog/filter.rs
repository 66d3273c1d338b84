//! A search as a tree of conditions: what a standard query language (CSW's OGC filter, CQL)
//! says and a flat `Search` cannot (Or, Not, comparisons). Each index translates it into its
//! own query; the tree names catalogue properties, not index fields.

use crate::domain::record::BBox;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every record.
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// Words that must all occur in the text (stemmed, as the free-text search).
    Words {
        field: TextField,
        words: String,
    },
    /// A property with exactly this value (case is ignored for keywords and titles).
    Equals {
        field: ExactField,
        value: String,
    },
    /// A date compared with a moment, in seconds since 1970.
    Date {
        field: DateField,
        compare: Compare,
        seconds: i64,
    },
    /// The record's box meets this one (west greater than east crosses the antimeridian).
    BBox(BBox),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// Title, abstract, keywords and contacts.
    Any,
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactField {
    Identifier,
    Title,
    Keyword,
    /// The record's format (`iso19139`, `dublin-core`, ...).
    Format,
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    Modified,
    /// The start of the time extent (an open start is the beginning of time).
    TimeBegin,
    /// Its end (an open end is the end of time).
    TimeEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

//! The catalogue record: the normalised JSON every reader produces. Its field names are a
//! contract users' scripts rely on: `id`, `title`, `abstract`, `keywords`, `bbox`, `time`,
//! `contacts`, `links`, `source`, `format`, `original_url`, `modified`, `harvested`, `sha256`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordFormat {
    Iso19139,
    #[serde(rename = "iso19115-3")]
    Iso19115_3,
    DublinCore,
    Ckan,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl BBox {
    /// A box on the globe: longitudes within ±180, latitudes within ±90, south ≤ north
    /// (west > east is allowed: a box across the antimeridian).
    pub fn validate(&self) -> Result<(), String> {
        let lon = -180.0..=180.0;
        let lat = -90.0..=90.0;
        if !lon.contains(&self.west) || !lon.contains(&self.east) {
            return Err(format!(
                "bounding box longitudes {} / {} are outside -180..180",
                self.west, self.east
            ));
        }
        if !lat.contains(&self.south) || !lat.contains(&self.north) {
            return Err(format!(
                "bounding box latitudes {} / {} are outside -90..90",
                self.south, self.north
            ));
        }
        if self.south > self.north {
            return Err(format!(
                "bounding box south {} is north of its north {}",
                self.south, self.north
            ));
        }
        Ok(())
    }

    pub fn union(self, other: BBox) -> BBox {
        BBox {
            west: self.west.min(other.west),
            south: self.south.min(other.south),
            east: self.east.max(other.east),
            north: self.north.max(other.north),
        }
    }

    pub fn intersects(&self, other: &BBox) -> bool {
        self.west <= other.east
            && other.west <= self.east
            && self.south <= other.north
            && other.south <= self.north
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeExtent {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: Option<String>,
    pub organisation: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

/// What a reader extracts from a document; the pipeline adds where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub id: String,
    pub title: String,
    #[serde(rename = "abstract")]
    pub abstract_text: String,
    pub keywords: Vec<String>,
    pub bbox: Option<BBox>,
    pub time: Option<TimeExtent>,
    pub contacts: Vec<Contact>,
    pub links: Vec<Link>,
    pub format: RecordFormat,
    pub modified: Option<String>,
    /// A CKAN dataset's own fields, after its source's options; only on CKAN records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ckan: Option<CkanFields>,
}

/// What a CKAN dataset holds beyond the common fields: what ckanext-harvest would have put in
/// the local package, so a CKAN site's users find their groups, organization and extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkanFields {
    /// The dataset's URL name at its CKAN.
    pub name: String,
    /// The organization's name (see the source's `remote_orgs`).
    pub organization: Option<String>,
    /// Group names (the source's `remote_groups` and `default_groups`).
    pub groups: Vec<String>,
    /// `{key, value}` pairs, as CKAN lists them (with the source's `default_extras`).
    pub extras: Vec<Extra>,
    pub license_id: Option<String>,
    /// The source's `user`: who the record is harvested as.
    pub user: Option<String>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    pub key: String,
    pub value: serde_json::Value,
}

/// A catalogue record as stored at `catalog/records/ID.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub metadata: Metadata,
    pub source: String,
    pub original_url: String,
    pub harvested: String,
    pub sha256: String,
}

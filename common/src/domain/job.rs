//! Harvest jobs and their objects.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    New,
    Running,
    Finished,
    Aborted,
}

impl JobStatus {
    pub fn is_done(self) -> bool {
        matches!(self, JobStatus::Finished | JobStatus::Aborted)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStats {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub errored: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    pub message: String,
    pub original_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub source: String,
    pub status: JobStatus,
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub stats: JobStats,
    pub gather_errors: Vec<ErrorEntry>,
    pub object_errors: Vec<ErrorEntry>,
    /// Objects the gather found; `None` until the gather has completed.
    #[serde(default)]
    pub object_count: Option<u64>,
    /// Objects done at the last check, and when that number last grew.
    #[serde(default)]
    pub done_count: u64,
    #[serde(default)]
    pub last_progress: Option<String>,
    /// Only the check message carrying this number may continue: a re-sent check replaces
    /// the old chain instead of running beside it.
    #[serde(default)]
    pub check_seq: u64,
    #[serde(default)]
    pub last_check: Option<String>,
    /// Accept a gather that found far fewer documents than the last one (`run-test
    /// --allow-shrink`): its missing documents' records are deleted.
    #[serde(default)]
    pub allow_shrink: bool,
    /// A re-import (`sheaf import`): the documents already in the central WAF are imported
    /// again, nothing is fetched, and nothing is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reimport: bool,
    /// An incremental harvest: its gather listed only what changed since this time, so the
    /// job removes only what the source said it deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<String>,
    /// The owner's email about a job that ended with errors: `pending` is written in the same
    /// write that ends the job, `sent` once it went (`pipeline/owner_notice.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_notice: Option<NoticeState>,
}

/// Where the owner's email about a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    Pending,
    Sent,
    /// The source has no owner to tell.
    NoOwner,
}

impl Job {
    pub fn new(source: &str) -> Self {
        let now = chrono::Utc::now();
        Job {
            // Sortable by creation time; the suffix keeps two jobs of one second apart.
            id: format!(
                "{}-{}",
                now.format("%Y%m%dT%H%M%SZ"),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            source: source.to_string(),
            status: JobStatus::New,
            created: super::now(),
            started: None,
            finished: None,
            stats: JobStats::default(),
            gather_errors: Vec::new(),
            object_errors: Vec::new(),
            object_count: None,
            done_count: 0,
            last_progress: None,
            check_seq: 0,
            last_check: None,
            allow_shrink: false,
            reimport: false,
            changed_since: None,
            owner_notice: None,
        }
    }
}

/// What a source's harvests remember between jobs: the evidence a later gather's deletions
/// are weighed against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHarvestState {
    /// Documents found by the last gather that completed without error, and its job.
    pub last_gathered: u64,
    pub last_job: String,
    /// When that job finished: records older than this are stale after
    /// `stale_expiration_days`.
    #[serde(default)]
    pub finished: Option<String>,
    /// When the last harvest that ended without any error started: an incremental harvest
    /// lists what changed since (less a margin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_free_started: Option<String>,
}

/// How one harvest object ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Added,
    Updated,
    Unchanged,
    Errored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Added => "added",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Errored => "errored",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "added" => Some(Outcome::Added),
            "updated" => Some(Outcome::Updated),
            "unchanged" => Some(Outcome::Unchanged),
            "errored" => Some(Outcome::Errored),
            _ => None,
        }
    }
}

/// A document's line in its folder's listing (an nginx or Apache index: its modification
/// time, to the minute, and size), with the server's clock when the listing was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub entry: String,
    /// The listing's `Date` header.
    pub served: String,
}

/// One document of one job: what the gather found and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarvestObject {
    pub id: String,
    pub guid: String,
    pub url: String,
    /// Where the document is kept in the central WAF.
    pub waf_key: String,
    pub sha256: Option<String>,
    /// The validators of the fetched copy, kept for the next conditional GET.
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// Decided before the import writes anything, so a rerun counts the same.
    #[serde(default)]
    pub planned: Option<Outcome>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub record_id: Option<String>,
    /// The document's listing line, when the gather read one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Listed>,
    /// `listed.entry`, once the fetch knows it describes the fetched copy (see
    /// `pipeline::listed`); the import keeps it in the document's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_entry: Option<String>,
}

/// What Sheaf remembers of a document between jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentState {
    pub guid: String,
    pub url: String,
    pub waf_key: String,
    pub sha256: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The record the document became; `None` when it was rejected.
    pub record_id: Option<String>,
    /// The listing line that describes the kept copy: while the listing shows it, and the
    /// record is there, the document is unchanged without a request (`pipeline::listed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<String>,
}

//! The harvest pipeline: gather → fetch → import, the check that finishes a job, and the
//! index stage that keeps the search index in step with the records.
//!
//! Every handler is idempotent: it reads what is already done and redoes only the rest, and it
//! writes its outcome last, so a message delivered twice or a handler killed at any line and
//! run again leaves the same state.

mod abort;
mod changes;
mod check;
mod clear;
mod error;
mod gather;
mod import;
mod incoming;
mod index;
mod integrity;
mod jobs;
mod listed;
mod message;
mod object_fetch;
mod objects;
mod owner_notice;
mod purge;
mod rebuild;
mod records;
mod redrive;
mod reimport;
mod run_test;
mod schedule;
mod stale;

pub use crate::sources::load_source;
pub use abort::abort_job;
pub use clear::clear_source;
pub use error::PipelineError;
pub use incoming::{Incoming, handle_incoming};
pub use index::{
    IndexMessage, MESSAGE_KIND as INDEX_MESSAGE_KIND, apply_keys as apply_index_keys,
    drain as drain_index, reindex,
};
pub use integrity::{
    CatalogIntegrity, SourceIntegrity, catalog_integrity, list_rejected, source_integrity,
};
pub use jobs::{JobOptions, find_job, get_job, list_jobs, start_job, start_job_with};
pub use message::{Kind, Message};
pub use objects::Rejected;
pub use purge::{PURGE_REASON, PurgeReport, purge_queues};
pub use rebuild::{
    MESSAGE_KIND as REBUILD_MESSAGE_KIND, RebuildMessage, RebuildState, RebuildStatus, ReportEntry,
    rebuild_report, rebuild_state, run_rebuild, send_rebuild, start_rebuild,
};
pub use redrive::{RedriveReport, redrive};
pub use run_test::{run_test, run_test_with};
pub use schedule::{RunReport, run_scheduled};

use crate::queue::MAX_RECEIVE_COUNT;
use crate::services::Services;

/// Handles one message; an `Err` leaves it on its queue for another try. On a message's last
/// delivery a document's failure is recorded as its object's error, so its job can finish.
pub async fn handle(
    services: &Services,
    message: &Message,
    receive_count: u32,
) -> Result<(), PipelineError> {
    let result = match message.kind {
        Kind::Gather => gather::gather(services, &message.source, &message.job).await,
        Kind::Fetch => {
            object_fetch::fetch(
                services,
                &message.source,
                &message.job,
                message.object()?,
                receive_count,
            )
            .await
        }
        Kind::Import => import::import(services, message, message.object()?).await,
        Kind::CheckJob => {
            check::check_job(services, &message.source, &message.job, message.seq).await
        }
    };
    match (result, message.object.as_deref()) {
        (Err(error), Some(object)) if receive_count >= MAX_RECEIVE_COUNT => {
            objects::give_up(services, &message.source, &message.job, object, &error)
                .await
                .map(|_| ())
                .map_err(|_| error)
        }
        (result, _) => result,
    }
}

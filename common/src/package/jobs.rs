//! A package request's life: accepted by the API onto the fast or slow queue, then built (or
//! found in the cache), emailed, and counted, once, however often its message arrives.
//!
//! State, all in the store: `packages/KEY.zip` and `packages/KEY.json` (the zip of a request
//! and what it holds, KEY = `PackageRequest::cache_key`), `packages/KEY.building` (a build in
//! progress, created once: an identical request waits for it instead of reading the datastore
//! again), and `packages/requests/ID.json`, the
//! outcome of one request, written last: a redelivered message that finds it does nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::archive::{ZipState, ZipStreamWriter};
use super::build::{Built, TablePlace, resume_package, write_package};
use super::datastore::Datastore;
use super::email::{failure_email, link_email};
use super::links::LinkSigner;
use super::request::{PackageKind, PackageRequest};
use super::sink::MultipartSink;
use super::{PackageError, resume, stats};
use crate::fetch::FetchError;
use crate::queue::{MAX_RECEIVE_COUNT, QueueName};
use crate::services::Services;
use crate::store::{PutMode, StoreError, get_json, put_json};

pub const MESSAGE_KIND: &str = "package";

/// The queue message: the whole request (it is small), who asked and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMessage {
    pub kind: String,
    pub v: u32,
    pub request_id: String,
    /// Unix seconds when the API accepted it (the statistics' timestamp).
    pub received: i64,
    /// Where links point: this Sheaf's public address as the API saw it.
    pub public_url: String,
    pub request: PackageRequest,
}

impl PackageMessage {
    pub fn new(request: PackageRequest, public_url: &str) -> Self {
        PackageMessage {
            kind: MESSAGE_KIND.into(),
            v: 1,
            request_id: uuid::Uuid::new_v4().to_string(),
            received: Utc::now().timestamp(),
            public_url: public_url.to_string(),
            request,
        }
    }
}

/// What a built zip holds (no email, no API key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDoc {
    pub key: String,
    pub kind: PackageKind,
    pub resource_id: String,
    pub zip: String,
    pub rows: u64,
    pub bytes: u64,
    pub finished: DateTime<Utc>,
}

/// The outcome of one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn zip_key(cache_key: &str) -> String {
    format!("packages/{cache_key}.zip")
}

fn doc_key(cache_key: &str) -> String {
    format!("packages/{cache_key}.json")
}

fn building_key(cache_key: &str) -> String {
    format!("packages/{cache_key}.building")
}

/// Claims the build of `cache_key`: created once, or taken over when its builder has been
/// silent past `build_stale_after` (a Lambda that died). `false`: another delivery builds it.
async fn claim_build(services: &Services, cache_key: &str) -> Result<bool, PackageError> {
    let claimed = crate::store::claim::claim(
        services.store.as_ref(),
        &building_key(cache_key),
        services.settings.packager.build_stale_after,
    )
    .await?;
    Ok(claimed.is_some())
}

fn outcome_key(request_id: &str) -> String {
    format!("packages/requests/{request_id}.json")
}

/// The package of `cache_key` if it was finished within CACHE_TIME and its zip is there.
pub async fn fresh_package(
    services: &Services,
    cache_key: &str,
) -> Result<Option<PackageDoc>, PackageError> {
    let Some((doc, _)) =
        get_json::<PackageDoc>(services.store.as_ref(), &doc_key(cache_key)).await?
    else {
        return Ok(None);
    };
    let age = Utc::now().signed_duration_since(doc.finished);
    let cache_time = services.settings.packager.cache_time;
    if age.to_std().unwrap_or(Duration::ZERO) >= cache_time {
        return Ok(None);
    }
    let present = services
        .store
        .list(&doc.zip)
        .await?
        .iter()
        .any(|e| e.key == doc.zip);
    Ok(present.then_some(doc))
}

/// What became of a build.
pub enum Build {
    Whole(PackageDoc),
    /// Set aside for the next invocation (its time ran short).
    Continues,
}

/// Builds the zip into the store by multipart upload, or goes on with a build a previous
/// invocation set aside; nothing is offered unless the upload completes.
pub async fn build_package(
    services: &Services,
    request: &PackageRequest,
) -> Result<Build, PackageError> {
    let key = request.cache_key();
    let zip = zip_key(&key);
    let (mut sink, resumed) = match resume::load(services, &key).await? {
        Some((state, tail)) => {
            match MultipartSink::resume(&services.store, &zip, &state.upload, &tail).await {
                Ok(sink) => (sink, Some(state)),
                Err(e) => {
                    // The upload is gone: the next delivery builds anew.
                    resume::discard(services, &key, Some(&state.tail)).await?;
                    return Err(e);
                }
            }
        }
        None => (
            MultipartSink::start(&services.store, &zip, "application/zip").await?,
            None,
        ),
    };
    let previous_tail = resumed.as_ref().map(|s| s.tail.clone());
    let runs = resumed.as_ref().map_or(0, |s| s.runs) + 1;
    let (fetcher, settings) = (services.fetcher.as_ref(), &services.settings.packager);
    let built = match resumed {
        Some(state) => match ZipStreamWriter::resume(&mut sink, state.zip) {
            Ok(writer) => resume_package(fetcher, settings, request, writer, state.place).await,
            Err(e) => Err(e),
        },
        None => write_package(fetcher, settings, request, &mut sink).await,
    };
    let built = match built {
        Ok(Built::OutOfTime(writer, place)) => {
            let (zip, _) = writer.suspend().await?;
            return set_aside(services, &key, zip, sink, place, runs, previous_tail).await;
        }
        Ok(Built::Whole(_, summary)) => summary,
        // A resumed build that failed for now goes on from its state again at the next
        // delivery (the parts it wrote since are written over), unless its upload is gone.
        Err(e) if previous_tail.is_some() && e.is_transient() && !upload_gone(&e) => {
            return Err(e);
        }
        Err(e) => {
            sink.abort().await;
            resume::discard(services, &key, previous_tail.as_deref()).await?;
            return Err(e);
        }
    };
    let bytes = sink.complete().await?;
    let doc = PackageDoc {
        key: key.clone(),
        kind: request.kind,
        resource_id: request.resource_id.clone(),
        zip,
        rows: built.rows,
        bytes,
        finished: Utc::now(),
    };
    put_json(
        services.store.as_ref(),
        &doc_key(&key),
        &doc,
        PutMode::Overwrite,
    )
    .await?;
    if previous_tail.is_some() {
        resume::discard(services, &key, previous_tail.as_deref()).await?;
        tracing::info!(package = %key, runs, "a build over several invocations is whole");
    }
    Ok(Build::Whole(doc))
}

fn upload_gone(e: &PackageError) -> bool {
    matches!(
        e,
        PackageError::Store(StoreError::NotFound(_) | StoreError::Precondition(_))
    )
}

/// Hands a build whose time runs short to the next invocation (its zip flushed to `sink`):
/// the whole parts uploaded, the rest and the state set aside.
async fn set_aside(
    services: &Services,
    key: &str,
    zip: ZipState,
    sink: MultipartSink,
    place: TablePlace,
    runs: u32,
    previous_tail: Option<String>,
) -> Result<Build, PackageError> {
    let (upload, tail) = sink.suspend().await?;
    let state = resume::Suspended {
        v: 1,
        upload,
        zip,
        place,
        runs,
        tail: String::new(),
    };
    resume::save(services, key, state, tail, previous_tail.as_deref()).await?;
    tracing::info!(package = %key, runs, rows = place.rows, "time runs short: the build goes on in the next invocation");
    Ok(Build::Continues)
}

/// Picks the queue of a checked request and sends its message: a cached package or a file is
/// fast; datastore rows are counted first (a `limit=0` call) against SLOW_REQUEST. A datastore
/// address refused by the address policy is a bad request; other failures of the count leave
/// the request to the slow queue, whose worker retries and tells the requester.
pub async fn accept(
    services: &Services,
    request: PackageRequest,
    public_url: &str,
) -> Result<QueueName, PackageError> {
    let queue = if fresh_package(services, &request.cache_key())
        .await?
        .is_some()
        || request.kind == PackageKind::Url
    {
        QueueName::PackageFast
    } else {
        let datastore = Datastore::new(services.fetcher.as_ref(), &request)?;
        match datastore.describe().await {
            Ok(info) if info.rows_for(&request) < services.settings.packager.slow_request => {
                QueueName::PackageFast
            }
            Ok(_) => QueueName::PackageSlow,
            Err(PackageError::Fetch(FetchError::Refused { reason, .. })) => {
                return Err(PackageError::bad("api_url", format!("refused: {reason}")));
            }
            Err(PackageError::Fetch(FetchError::InvalidUrl { reason, .. })) => {
                return Err(PackageError::bad("api_url", reason));
            }
            // The worker will try again and tell the requester if it keeps failing.
            Err(e) => {
                tracing::warn!(error = %e, "counting the rows failed; queued as slow");
                QueueName::PackageSlow
            }
        }
    };
    let message = PackageMessage::new(request, public_url);
    let body = serde_json::to_string(&message).expect("a message always serialises");
    services
        .queues
        .get(queue)?
        .send(body, Duration::ZERO)
        .await?;
    Ok(queue)
}

/// Handles one delivery. `Err` asks for another delivery (a transient failure before the last
/// attempt); any other failure is recorded, emailed, and ends the request.
pub async fn handle_message(
    services: &Services,
    message: &PackageMessage,
    receive_count: u32,
) -> Result<(), PackageError> {
    let outcome_at = outcome_key(&message.request_id);
    if get_json::<Outcome>(services.store.as_ref(), &outcome_at)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let request = &message.request;
    let outcome = match serve(services, message).await {
        // The next invocation goes on with the build and answers the request.
        Ok(None) => return Ok(()),
        Ok(Some(doc)) => {
            stats::record_request(
                services,
                &message.request_id,
                message.received,
                &request.resource_id,
                &request.email,
                Some(doc.rows),
            )
            .await?;
            Outcome {
                status: "sent".into(),
                package: Some(doc.key),
                error: None,
            }
        }
        Err(PackageError::Busy) => {
            // Back later, when the build it waits for has finished (a new message, so the
            // wait does not count as a failed delivery).
            let body = serde_json::to_string(message).expect("a message always serialises");
            let delay = services.settings.packager.wait_for_build;
            services
                .queues
                .get(QueueName::PackageFast)?
                .send(body, delay)
                .await?;
            return Ok(());
        }
        Err(e) if e.is_transient() && receive_count < MAX_RECEIVE_COUNT => return Err(e),
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(request = %message.request_id, error = %reason, "package failed");
            stats::record_error(
                services,
                &message.request_id,
                message.received,
                &request.resource_id,
                &request.email,
                &reason,
            )
            .await?;
            let email = failure_email(&services.settings.mail_from, request, &reason);
            if let Err(mail) = services.mailer.send(&email).await {
                tracing::warn!(error = %mail, "the failure email could not be sent");
            }
            Outcome {
                status: "failed".into(),
                package: None,
                error: Some(reason),
            }
        }
    };
    put_json(
        services.store.as_ref(),
        &outcome_at,
        &outcome,
        PutMode::Overwrite,
    )
    .await?;
    Ok(())
}

/// The zip (cached or built) and the email with its link; `None` when the build goes on in
/// another invocation, which this one has sent the message to.
async fn serve(
    services: &Services,
    message: &PackageMessage,
) -> Result<Option<PackageDoc>, PackageError> {
    let request = &message.request;
    let cache_key = request.cache_key();
    let doc = match fresh_package(services, &cache_key).await? {
        Some(doc) => doc,
        None if claim_build(services, &cache_key).await? => {
            let built = build_package(services, request).await;
            services.store.delete(&building_key(&cache_key)).await?;
            match built? {
                Build::Whole(doc) => doc,
                Build::Continues => {
                    // The same message goes on: on the slow queue, whose function may take
                    // Lambda's longest time.
                    let body = serde_json::to_string(message).expect("a message always serialises");
                    services
                        .queues
                        .get(QueueName::PackageSlow)?
                        .send(body, Duration::ZERO)
                        .await?;
                    return Ok(None);
                }
            }
        }
        None => return Err(PackageError::Busy),
    };
    let link = download_link(services, &message.public_url, &doc).await?;
    let file_name = doc.zip.rsplit('/').next().unwrap_or(&doc.zip);
    let email = link_email(
        &services.settings.packager,
        &services.settings.mail_from,
        request,
        file_name,
        &link,
    );
    services.mailer.send(&email).await?;
    Ok(Some(doc))
}

/// A link valid for as long as the zip is kept: CACHE_TIME after it was made, and at least a day.
pub async fn download_link(
    services: &Services,
    public_url: &str,
    doc: &PackageDoc,
) -> Result<String, StoreError> {
    let signer = LinkSigner::load(services.store.as_ref()).await?;
    let keep = services
        .settings
        .packager
        .cache_time
        .max(Duration::from_secs(86_400));
    let expires = doc.finished.timestamp().max(0) as u64 + keep.as_secs();
    Ok(signer.link(public_url, &doc.zip, expires))
}

/// Removes every cached zip and its description (`/clear_cache`).
pub async fn clear_cache(services: &Services) -> Result<usize, PackageError> {
    let mut removed = 0;
    for entry in services.store.list("packages/").await? {
        let top_level = !entry.key["packages/".len()..].contains('/');
        if top_level && (entry.key.ends_with(".zip") || entry.key.ends_with(".json")) {
            services.store.delete(&entry.key).await?;
            removed += usize::from(entry.key.ends_with(".zip"));
        }
    }
    Ok(removed)
}

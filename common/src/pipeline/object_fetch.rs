//! Fetch: get one document, recognise it unchanged by SHA-256 (only while the record it made
//! is still there), else keep it in the central WAF and send its import; note the listing
//! line the kept copy settled on.

use std::time::Duration;

use super::jobs::send;
use super::listed;
use super::objects::{
    finish_object, finish_object_after, open_object_and_source, save_in_order, sha256_hex,
};
use super::records::kept_state;
use super::{Kind, Message, PipelineError};
use crate::domain::job::{DocumentState, Outcome};
use crate::domain::keys;
use crate::harvest::{Fetched, harvester_for};
use crate::queue::MAX_RECEIVE_COUNT;
use crate::services::Services;
use crate::store::{PutMode, Write};

pub(super) async fn fetch(
    services: &Services,
    source_name: &str,
    job_id: &str,
    object_id: &str,
    receive_count: u32,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let Some((mut tracked, source)) =
        open_object_and_source(services, source_name, job_id, object_id).await?
    else {
        return Ok(());
    };
    let import = Message::for_object(Kind::Import, source_name, job_id, object_id);
    if tracked.object.sha256.is_some() {
        // Fetched before a crash: the import is what is left.
        return send(services, &import, Duration::ZERO).await;
    }
    let Some(harvester) = harvester_for(source.source_type) else {
        return Err(PipelineError::Conflict(format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        )));
    };
    let state_key = keys::document_state(source_name, object_id);
    let previous = kept_state(store, source_name, object_id, &tracked.object.waf_key).await?;
    // (A document unchanged by its listing line was ended by the gather.)
    let listed = tracked.object.listed.clone();
    let fetched = match harvester
        .fetch(services, &source, &tracked.object, previous.as_ref())
        .await
    {
        Ok(f) => f,
        Err(e) if e.is_transient() && receive_count < MAX_RECEIVE_COUNT => {
            tracing::warn!(source = source_name, url = %tracked.object.url, error = %e, "fetch failed, will retry");
            return Err(e.into());
        }
        Err(e) => {
            tracing::warn!(source = source_name, url = %tracked.object.url, error = %e, "fetch failed");
            let message = e.to_string();
            return finish_object(
                services,
                source_name,
                job_id,
                tracked,
                Outcome::Errored,
                Some(message),
            )
            .await;
        }
    };
    let (body, etag, last_modified) = match fetched {
        Fetched::NotModified { last_modified } => {
            let Some(prev) = &previous else {
                return Err(PipelineError::Conflict(format!(
                    "{} answered 304 to an unconditional GET",
                    tracked.object.url
                )));
            };
            // The listing line now describes the kept copy (or no longer does).
            let settled = listed::settled_entry(listed.as_ref(), last_modified.as_deref());
            let mut before = Vec::new();
            if settled != prev.listed {
                let state = DocumentState {
                    listed: settled,
                    ..prev.clone()
                };
                before.push(vec![Write::json(&state_key, &state, PutMode::Overwrite)?]);
            }
            return finish_object_after(
                services,
                source_name,
                job_id,
                tracked,
                Outcome::Unchanged,
                None,
                before,
            )
            .await;
        }
        Fetched::Document {
            body,
            etag,
            last_modified,
        } => (body, etag, last_modified),
    };
    let sha256 = sha256_hex(&body);
    let settled = listed::settled_entry(listed.as_ref(), last_modified.as_deref());
    if let Some(prev) = &previous
        && prev.sha256 == sha256
    {
        // The same bytes as last time: nothing is rewritten, only the validators refreshed.
        let mut before = Vec::new();
        if prev.etag != etag || prev.last_modified != last_modified || prev.listed != settled {
            let state = DocumentState {
                etag,
                last_modified,
                listed: settled,
                ..prev.clone()
            };
            before.push(vec![Write::json(&state_key, &state, PutMode::Overwrite)?]);
        }
        return finish_object_after(
            services,
            source_name,
            job_id,
            tracked,
            Outcome::Unchanged,
            None,
            before,
        )
        .await;
    }
    let kept = Write::Put {
        key: tracked.object.waf_key.clone(),
        body,
        content_type: "application/xml",
        mode: PutMode::Overwrite,
    };
    tracked.object.sha256 = Some(sha256);
    tracked.object.etag = etag;
    tracked.object.last_modified = last_modified;
    tracked.object.settled_entry = settled;
    // The copy first: the object's sha256 says it is kept.
    let steps = vec![vec![kept], vec![tracked.save(source_name, job_id)?]];
    save_in_order(services, source_name, job_id, &mut tracked, steps).await?;
    send(services, &import, Duration::ZERO).await
}

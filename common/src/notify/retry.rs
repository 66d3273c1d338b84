//! What the schedule does for notifications: retry each enabled target's failures once its
//! retry interval has passed (GeoNetwork: once every 24 hours), and resume a backfill whose
//! chain of messages stopped.

use serde::Serialize;

use super::NotifyError;
use super::deliver::failed_keys;
use super::targets::{Target, list_targets, load_target};
use crate::domain::keys;
use crate::services::Services;
use crate::store::{PutMode, StoreError, put_json};

/// A backfill that has not moved for this long has lost its message.
const BACKFILL_STALLED: chrono::Duration = chrono::Duration::minutes(15);

#[derive(Debug, Default, Serialize)]
pub struct ScheduleReport {
    /// Failed deliveries sent again.
    pub retried: u64,
    /// Targets whose stalled backfill was resumed.
    pub backfills_resumed: Vec<String>,
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn on_schedule(services: &Services) -> Result<ScheduleReport, NotifyError> {
    let store = services.store.as_ref();
    let now = chrono::Utc::now();
    let mut report = ScheduleReport::default();
    for target in list_targets(store).await? {
        if !target.enabled {
            continue;
        }
        if let Some(b) = &target.backfill
            && !b.done
            && parse_time(&b.updated).is_none_or(|t| now - t > BACKFILL_STALLED)
        {
            // Its message was lost: sent again from where it stopped.
            super::backfill::start(services, &target).await?;
            report.backfills_resumed.push(target.name.clone());
        }
        let next_round = target.next_retry.as_deref().and_then(parse_time);
        if next_round.is_some_and(|due| due > now) {
            // Not due: the failures are not even looked at.
            continue;
        }
        let has_failures = !store
            .list_keys_page(&keys::notify_failures_of(&target.name), None, 1)
            .await?
            .is_empty();
        match next_round {
            _ if !has_failures => {}
            // The first failures since the last round: their round is an interval away.
            None => {
                set_next_retry(services, &target.name, false).await?;
            }
            Some(_) => {
                if set_next_retry(services, &target.name, true).await? {
                    report.retried += retry_target(services, &target).await?;
                }
            }
        }
    }
    Ok(report)
}

/// Retries every enabled target's failures now (`sheaf notify retry`); the next round is an
/// interval away. Returns the deliveries sent again.
pub async fn retry_now(services: &Services) -> Result<u64, NotifyError> {
    let mut retried = 0;
    for target in list_targets(services.store.as_ref()).await? {
        if target.enabled {
            set_next_retry(services, &target.name, false).await?;
            retried += retry_target(services, &target).await?;
        }
    }
    Ok(retried)
}

async fn retry_target(services: &Services, target: &Target) -> Result<u64, NotifyError> {
    let failed = failed_keys(services.store.as_ref(), &target.name).await?;
    super::send_keys(
        services,
        &failed,
        Some(&target.name),
        std::time::Duration::ZERO,
    )
    .await?;
    Ok(failed.len() as u64)
}

/// Moves the target's next round an interval from now. With `only_if_due`, only when it is
/// due, and only one of two schedules running at once gets `true` (the write is `If-Match`).
async fn set_next_retry(
    services: &Services,
    name: &str,
    only_if_due: bool,
) -> Result<bool, NotifyError> {
    let store = services.store.as_ref();
    let now = chrono::Utc::now();
    let interval = chrono::Duration::from_std(services.settings.notify_retry_interval)
        .unwrap_or(chrono::Duration::hours(24));
    let Some((mut target, etag)) = load_target(store, name).await? else {
        return Ok(false);
    };
    if only_if_due
        && target
            .next_retry
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|due| due > now)
    {
        return Ok(false);
    }
    target.next_retry = Some(stamp(now + interval));
    match put_json(
        store,
        &keys::notify_target(name),
        &target,
        PutMode::Update(etag),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Precondition(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

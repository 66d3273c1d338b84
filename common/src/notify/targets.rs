//! Notification targets: adding, changing, removing and listing them (the API and the command
//! line share these).

use serde::{Deserialize, Serialize};

use super::NotifyError;
use crate::domain::keys;
use crate::domain::now;
use crate::domain::source::{FieldError, validate_name};
use crate::fetch::check_url;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, PutMode, StoreError, get_json, put_json};

/// A partner catalogue that receives every change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Target {
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub created: String,
    pub modified: String,
    /// Starts again when the target is created or re-enabled: what it received before counts
    /// for nothing, so the backfill sends every record.
    pub generation: String,
    /// The backfill of this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    /// When the schedule next retries this target's failures (set once it has some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<String>,
}

/// Where a backfill is in the catalogue's listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Backfill {
    /// The last record key sent on; none, the backfill has not sent a page yet.
    pub after: Option<String>,
    pub done: bool,
    /// Records sent on so far.
    pub sent: u64,
    /// When it last moved: a backfill that stops moving is resumed by the schedule.
    pub updated: String,
}

/// A new target as the API and the command line take it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The fields a PATCH may change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetPatch {
    pub url: Option<String>,
    pub enabled: Option<bool>,
}

/// A target's URL: http or https, with a host this Sheaf may reach (the sources' address
/// policy), checked before it is kept.
fn validate_url(services: &Services, url: &str) -> Result<(), FieldError> {
    let parsed = url::Url::parse(url).map_err(|e| FieldError::new("url", e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(FieldError::new("url", "must be an http or https URL"));
    }
    check_url(url, services.fetcher.address_policy())
        .map_err(|e| FieldError::new("url", e.to_string()))?;
    Ok(())
}

fn new_generation() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

fn fresh_backfill() -> Backfill {
    Backfill {
        after: None,
        done: false,
        sent: 0,
        updated: now(),
    }
}

pub async fn add_target(services: &Services, new: NewTarget) -> Result<Target, NotifyError> {
    validate_name(&new.name)?;
    validate_url(services, &new.url)?;
    let stamp = now();
    let enabled = new.enabled.unwrap_or(true);
    let target = Target {
        name: new.name,
        url: new.url,
        enabled,
        created: stamp.clone(),
        modified: stamp,
        generation: new_generation(),
        backfill: enabled.then(fresh_backfill),
        next_retry: None,
    };
    let store = services.store.as_ref();
    match put_json(
        store,
        &keys::notify_target(&target.name),
        &target,
        PutMode::Create,
    )
    .await
    {
        Ok(_) => {}
        Err(StoreError::Precondition(_)) => {
            return Err(NotifyError::Conflict(format!(
                "a notification target named {} exists already",
                target.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    if enabled {
        super::backfill::start(services, &target).await?;
    }
    Ok(target)
}

pub async fn list_targets(store: &dyn ObjectStore) -> Result<Vec<Target>, NotifyError> {
    let mut out = Vec::new();
    let mut pages = Pages::new(store, keys::NOTIFY_TARGETS);
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            if let Some((target, _)) = get_json::<Target>(store, &entry.key).await? {
                out.push(target);
            }
        }
    }
    Ok(out)
}

pub(super) async fn load_target(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<Option<(Target, String)>, NotifyError> {
    Ok(get_json::<Target>(store, &keys::notify_target(name)).await?)
}

/// Changes `name` with `If-Match`; enabling a disabled target starts a new generation and
/// its backfill.
pub async fn patch_target(
    services: &Services,
    name: &str,
    patch: TargetPatch,
) -> Result<Target, NotifyError> {
    if let Some(url) = &patch.url {
        validate_url(services, url)?;
    }
    let store = services.store.as_ref();
    for _ in 0..10 {
        let (mut target, etag) = load_target(store, name)
            .await?
            .ok_or_else(|| NotifyError::NotFound(format!("notification target {name}")))?;
        let enabling = patch.enabled == Some(true) && !target.enabled;
        if let Some(url) = &patch.url {
            target.url = url.clone();
        }
        if let Some(enabled) = patch.enabled {
            target.enabled = enabled;
        }
        if enabling {
            target.generation = new_generation();
            target.backfill = Some(fresh_backfill());
        }
        target.modified = now();
        match put_json(
            store,
            &keys::notify_target(name),
            &target,
            PutMode::Update(etag),
        )
        .await
        {
            Ok(_) => {
                if enabling {
                    super::backfill::start(services, &target).await?;
                }
                return Ok(target);
            }
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(NotifyError::Conflict(format!(
        "notification target {name} kept changing under us"
    )))
}

/// Removes a target with its failures (nothing is retried for it any more) and what it
/// received.
pub async fn remove_target(services: &Services, name: &str) -> Result<(), NotifyError> {
    let store = services.store.as_ref();
    if load_target(store, name).await?.is_none() {
        return Err(NotifyError::NotFound(format!("notification target {name}")));
    }
    store.delete(&keys::notify_target(name)).await?;
    for prefix in [
        keys::notify_failures_of(name),
        keys::notify_delivered_of(name),
    ] {
        let mut pages = Pages::new(store, &prefix);
        while let Some(entries) = pages.next().await? {
            futures::future::try_join_all(entries.iter().map(|e| store.delete(&e.key))).await?;
        }
    }
    Ok(())
}

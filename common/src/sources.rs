//! Adding, changing and listing harvest sources (shared by the API and the command line).

use serde::Deserialize;

use crate::domain::keys;
use crate::domain::now;
use crate::domain::source::{FieldError, Frequency, Source, SourceType};
use crate::harvest::validate_source;
use crate::pipeline::PipelineError;
use crate::store::{ObjectStore, PutMode, StoreError, get_json, put_json};

/// What the API shows instead of a secret in a source's config (a CKAN `api_key`).
pub const SECRET_MASK: &str = "********";

/// A new source as the API and the command line take it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    pub url: String,
    #[serde(rename = "type")]
    pub source_type: SourceType,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub frequency: Option<Frequency>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

/// The fields a PATCH may change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    pub url: Option<String>,
    pub title: Option<String>,
    pub active: Option<bool>,
    pub owner: Option<String>,
    pub frequency: Option<Frequency>,
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

pub async fn add_source(store: &dyn ObjectStore, new: NewSource) -> Result<Source, PipelineError> {
    let stamp = now();
    let source = Source {
        title: new.title.unwrap_or_else(|| new.name.clone()),
        name: new.name,
        url: new.url,
        source_type: new.source_type,
        active: new.active.unwrap_or(true),
        owner: new.owner.filter(|o| !o.is_empty()),
        frequency: new.frequency.unwrap_or_default(),
        config: new.config.unwrap_or_else(|| serde_json::json!({})),
        created: stamp.clone(),
        modified: stamp,
    };
    validate_source(&source)?;
    match put_json(store, &keys::source(&source.name), &source, PutMode::Create).await {
        Ok(_) => Ok(source),
        Err(StoreError::Precondition(_)) => Err(PipelineError::Conflict(format!(
            "a source named {} exists already",
            source.name
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn list_sources(
    store: &dyn ObjectStore,
    include_inactive: bool,
) -> Result<Vec<Source>, PipelineError> {
    let mut out = Vec::new();
    for entry in store.list(keys::SOURCES).await? {
        if let Some((source, _)) = get_json::<Source>(store, &entry.key).await?
            && (include_inactive || source.active)
        {
            out.push(source);
        }
    }
    Ok(out)
}

/// Applies `patch` with `If-Match`, validating the result as a whole.
pub async fn patch_source(
    store: &dyn ObjectStore,
    name: &str,
    patch: SourcePatch,
) -> Result<Source, PipelineError> {
    let key = keys::source(name);
    for _ in 0..10 {
        let (mut source, etag) = get_json::<Source>(store, &key)
            .await?
            .ok_or_else(|| PipelineError::NotFound(format!("source {name}")))?;
        if let Some(url) = &patch.url {
            source.url = url.clone();
        }
        if let Some(title) = &patch.title {
            source.title = title.clone();
        }
        if let Some(active) = patch.active {
            source.active = active;
        }
        if let Some(owner) = &patch.owner {
            source.owner = (!owner.is_empty()).then(|| owner.clone());
        }
        if let Some(frequency) = patch.frequency {
            source.frequency = frequency;
        }
        if let Some(config) = &patch.config {
            let kept_key = source.config.get("api_key").cloned();
            source.config = config.clone();
            // The masked key a client read and sent back is the key it had.
            if source.config.get("api_key").and_then(|k| k.as_str()) == Some(SECRET_MASK)
                && let (Some(object), Some(key)) = (source.config.as_object_mut(), kept_key)
            {
                object.insert("api_key".into(), key);
            }
        }
        source.modified = now();
        validate_source(&source)?;
        match put_json(store, &key, &source, PutMode::Update(etag)).await {
            Ok(_) => return Ok(source),
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PipelineError::Conflict(format!(
        "source {name} kept changing under us"
    )))
}

/// Deactivates a source; its records stay.
pub async fn deactivate_source(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<Source, PipelineError> {
    load_source(store, name).await?;
    patch_source(
        store,
        name,
        SourcePatch {
            active: Some(false),
            ..Default::default()
        },
    )
    .await
}

/// A 400's field from a deserialisation error path (`config.x`, or the missing field).
pub fn field_of_json_error(path: &str, message: &str) -> FieldError {
    let field = if path.is_empty() || path == "." {
        message
            .split('`')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| "body".into())
    } else {
        path.to_string()
    };
    FieldError::new(field, message.to_string())
}

/// A source by name; `NotFound` when there is none.
pub async fn load_source(store: &dyn ObjectStore, name: &str) -> Result<Source, PipelineError> {
    get_json::<Source>(store, &keys::source(name))
        .await?
        .map(|(s, _)| s)
        .ok_or_else(|| PipelineError::NotFound(format!("source {name}")))
}

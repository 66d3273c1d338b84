//! `sheaf import`: a job that imports again the documents kept in the central WAF, without
//! fetching (a new reader reaches old documents this way). Its "gather" lists the source's
//! document states a page at a time; each object carries the SHA-256 of its kept copy, so the
//! fetch stage hands it straight to the import; the finish removes nothing.

use crate::domain::job::DocumentState;
use crate::domain::keys;
use crate::harvest::{GatherError, GatherPage, Gathered};
use crate::store::{ObjectStore, PAGE_SIZE, get_json};

/// One page of the kept documents: the states after `cursor` (the last state key read).
pub(super) async fn kept_page(
    store: &dyn ObjectStore,
    source: &str,
    cursor: Option<&serde_json::Value>,
) -> Result<GatherPage, GatherError> {
    let failed = |e: crate::store::StoreError| GatherError {
        message: format!("reading the kept documents: {e}"),
        url: None,
    };
    let after = cursor.and_then(|c| c.as_str());
    let prefix = keys::document_states(source);
    let entries = store
        .list_keys_page(&prefix, after, PAGE_SIZE)
        .await
        .map_err(failed)?;
    let waf = keys::waf_prefix(source);
    let mut documents = Vec::with_capacity(entries.len());
    for entry in &entries {
        let Some((state, _)) = get_json::<DocumentState>(store, &entry.key)
            .await
            .map_err(failed)?
        else {
            continue;
        };
        let Some(waf_name) = state.waf_key.strip_prefix(&waf) else {
            continue;
        };
        documents.push(Gathered {
            guid: state.guid.clone(),
            url: state.url.clone(),
            waf_name: waf_name.to_string(),
            kept_sha256: Some(state.sha256.clone()),
            listed: None,
        });
    }
    let next = (entries.len() == PAGE_SIZE)
        .then(|| {
            entries
                .last()
                .map(|e| serde_json::Value::String(e.key.clone()))
        })
        .flatten();
    Ok(GatherPage {
        documents,
        next,
        ..GatherPage::default()
    })
}

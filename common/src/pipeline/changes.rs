//! A record written or removed is announced to the search index and to the notification
//! targets; both look at what the store holds when their message arrives, so one
//! announcement delivered twice, late or out of order leaves them as the store is.

use std::time::Duration;

use super::PipelineError;
use crate::services::Services;

/// Announces that the records of `id_keys` changed, after `delay`.
pub(super) async fn announce(
    services: &Services,
    id_keys: &[String],
    delay: Duration,
) -> Result<(), PipelineError> {
    // Independent sends, made at once (locally they share a commit).
    tokio::try_join!(
        super::index::send_changes(services, id_keys, delay),
        async {
            crate::notify::send_changes(services, id_keys, delay)
                .await
                .map_err(PipelineError::from)
        },
    )?;
    Ok(())
}

//! The time the running invocation has left. A Lambda function is stopped at its timeout,
//! mid-line; work that knows the deadline can instead end cleanly before it (abort its upload,
//! record why, tell the requester) rather than be killed and delivered again to the same end.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` (none: no limit, as in `serve` and the CLI).
pub async fn scope<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    match deadline {
        Some(d) => DEADLINE.scope(d, work).await,
        None => work.await,
    }
}

/// Time left before the deadline of the current task, if it has one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// Whether less than `margin` is left.
pub fn near(margin: Duration) -> bool {
    remaining().is_some_and(|left| left < margin)
}

//! Unchanged by its listing line: a WAF's generated index (nginx, Apache) shows each file's
//! modification time to the minute, so a re-harvest can know a document unchanged without
//! asking for it, when the line it shows now is the line that described the copy kept.
//!
//! A line describes the copy only when the file was last modified at least a minute before
//! the listing was served (both times by the server's clock: the document's `Last-Modified`,
//! the listing's `Date`). Then the copy fetched after the listing is the file as listed, and
//! any later change moves the file's time past that minute, so its line changes. A file
//! changed within the minute it was listed in gets no settled line, and is asked for with a
//! conditional GET, as without a listing. What this cannot see: a file rewritten with its old
//! modification time set back to the same minute (and, for nginx, the same size).

use chrono::{DateTime, Duration};

use super::PipelineError;
use super::records::kept_states;
use crate::domain::job::{DocumentState, HarvestObject, Listed};
use crate::store::ObjectStore;

/// The listing's resolution: a change this long after the time it shows moves the line.
const RESOLUTION: Duration = Duration::seconds(60);

/// `listed.entry`, when it describes a copy last modified at `last_modified`.
pub(super) fn settled_entry(
    listed: Option<&Listed>,
    last_modified: Option<&str>,
) -> Option<String> {
    let listed = listed?;
    let modified = DateTime::parse_from_rfc2822(last_modified?).ok()?;
    let served = DateTime::parse_from_rfc2822(&listed.served).ok()?;
    (modified + RESOLUTION <= served).then(|| listed.entry.clone())
}

/// Whether the listing shows the line that described the kept copy.
fn unchanged(previous: &DocumentState, listed: Option<&Listed>) -> bool {
    matches!((&previous.listed, listed), (Some(kept), Some(now)) if *kept == now.entry)
}

/// For each of `objects`, as gathered, whether it is unchanged by its listing line: the state
/// kept for it (its record still there, `records::kept_state`) settled on the line listed now.
/// The gather decides it, so such a document needs no fetch; a page's states are read at once.
pub(super) async fn unchanged_by_lines(
    store: &dyn ObjectStore,
    source: &str,
    objects: &[HarvestObject],
) -> Result<Vec<bool>, PipelineError> {
    // Only documents with a line can be unchanged by it; their states are read, in order.
    let documents: Vec<(&str, &str)> = objects
        .iter()
        .filter(|o| o.listed.is_some())
        .map(|o| (o.id.as_str(), o.waf_key.as_str()))
        .collect();
    let mut kept = kept_states(store, source, &documents).await?.into_iter();
    Ok(objects
        .iter()
        .map(|object| {
            object.listed.is_some()
                && kept
                    .next()
                    .flatten()
                    .is_some_and(|state| unchanged(&state, object.listed.as_ref()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(entry: &str, served: &str) -> Listed {
        Listed {
            entry: entry.into(),
            served: served.into(),
        }
    }

    #[test]
    fn a_line_settles_a_minute_after_the_files_time() {
        let line = listed("03-Dec-2026 03:01 8344", "Thu, 03 Dec 2026 03:02:10 GMT");
        assert_eq!(
            settled_entry(Some(&line), Some("Thu, 03 Dec 2026 03:01:10 GMT")).as_deref(),
            Some("03-Dec-2026 03:01 8344")
        );
        // Modified 59 s before the listing: a change later in that minute would not show.
        assert_eq!(
            settled_entry(Some(&line), Some("Thu, 03 Dec 2026 03:01:11 GMT")),
            None
        );
        // No validator, or one that does not read: no line.
        assert_eq!(settled_entry(Some(&line), None), None);
        assert_eq!(settled_entry(Some(&line), Some("yesterday")), None);
        assert_eq!(
            settled_entry(None, Some("Thu, 03 Dec 2026 03:01:10 GMT")),
            None
        );
    }
}

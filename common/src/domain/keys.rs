//! Every object key Sheaf writes, in one place. Only `waf/` is a contract.

use sha2::{Digest, Sha256};

pub fn source(name: &str) -> String {
    format!("sources/{name}.json")
}
pub const SOURCES: &str = "sources/";

pub fn job(source: &str, job: &str) -> String {
    format!("jobs/{source}/{job}.json")
}
pub fn jobs_of(source: &str) -> String {
    format!("jobs/{source}/")
}
pub const JOBS: &str = "jobs/";
/// Which source a job id belongs to, so `/api/harvest/jobs/ID` needs no scan.
pub fn job_index(job: &str) -> String {
    format!("job-index/{job}")
}
/// Jobs newest first, every source's (`RECENT_JOBS`) and one source's: empty markers whose
/// keys sort the newest job first, so a page of jobs lists only that page.
pub fn recent_job(job: &str, source: &str) -> String {
    format!("{RECENT_JOBS}{}/{source}", newest_first(job))
}
pub const RECENT_JOBS: &str = "recent-jobs/";
pub fn recent_job_of(source: &str, job: &str) -> String {
    format!("{}{}", recent_jobs_of(source), newest_first(job))
}
pub fn recent_jobs_of(source: &str) -> String {
    format!("recent-jobs-of/{source}/")
}
/// A job id (`YYYYMMDDTHHMMSSZ-xxxxxx`) whose time's digits count down, and back again.
pub fn newest_first(job: &str) -> String {
    job.char_indices()
        .map(|(i, c)| match c.to_digit(10) {
            Some(d) if i < 16 => char::from_digit(9 - d, 10).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Held while a source has an unfinished job: at most one at a time.
pub fn job_lock(source: &str) -> String {
    format!("locks/jobs/{source}")
}
/// A job's working objects live apart from the job documents, so listing `jobs/SOURCE/`
/// costs the jobs, not their objects.
pub fn job_works(source: &str) -> String {
    format!("job-work/{source}/")
}
pub fn job_object(source: &str, job: &str, object: &str) -> String {
    format!("job-work/{source}/{job}/objects/{object}.json")
}
/// A job's object documents: one per GUID its gather listed, so also the listing deduplicated.
pub fn job_objects(source: &str, job: &str) -> String {
    format!("job-work/{source}/{job}/objects/")
}
/// An empty marker whose key carries the outcome, so a job's counts are one listing.
pub fn job_done(source: &str, job: &str, object: &str, outcome: &str) -> String {
    format!("job-work/{source}/{job}/done/{object}={outcome}")
}
pub fn job_done_prefix(source: &str, job: &str) -> String {
    format!("job-work/{source}/{job}/done/")
}
/// The GUIDs a gather found, one document per listing page it read (`PAGE` zero-padded, so
/// the listing is in page order).
pub fn job_gathered_page(source: &str, job: &str, page: u64) -> String {
    format!("job-work/{source}/{job}/gathered/{page:08}.json")
}
pub fn job_gathered(source: &str, job: &str) -> String {
    format!("job-work/{source}/{job}/gathered/")
}
/// Where a gather that continues in a following invocation takes up its listing.
pub fn job_gather_cursor(source: &str, job: &str) -> String {
    format!("job-work/{source}/{job}/gather-cursor.json")
}
/// What a finishing job removes (records, documents that left), written before it removes them.
pub fn job_removals(source: &str, job: &str) -> String {
    format!("job-work/{source}/{job}/removals.json")
}

/// What a source's harvests remember between jobs (the last completed gather's count).
pub fn source_harvest_state(source: &str) -> String {
    format!("harvest-state/{source}.json")
}

pub fn document_state(source: &str, object: &str) -> String {
    format!("state/{source}/{object}.json")
}
pub fn document_states(source: &str) -> String {
    format!("state/{source}/")
}

pub fn waf_prefix(source: &str) -> String {
    format!("waf/{source}/")
}

pub fn record_json(id_key: &str) -> String {
    format!("catalog/records/{id_key}.json")
}
pub fn record_xml(id_key: &str) -> String {
    format!("catalog/records/{id_key}.xml")
}
pub const RECORDS: &str = "catalog/records/";
pub fn record_marker(source: &str, id_key: &str) -> String {
    format!("catalog/by-source/{source}/{id_key}")
}
pub fn record_markers(source: &str) -> String {
    format!("catalog/by-source/{source}/")
}
/// Which source owns an identifier: the first to import it.
pub fn record_owner(id_key: &str) -> String {
    format!("catalog/owners/{id_key}")
}
pub fn rejected(source: &str, object: &str) -> String {
    format!("catalog/rejected/{source}/{object}.json")
}
pub fn rejected_of(source: &str) -> String {
    format!("catalog/rejected/{source}/")
}

/// A remote notification target (GeoNetwork's "remote notification destination").
pub fn notify_target(name: &str) -> String {
    format!("{NOTIFY_TARGETS}{name}.json")
}
pub const NOTIFY_TARGETS: &str = "notify/targets/";
/// What a target last received of a record (the SHA-256 of the XML sent), per generation of
/// the target: a target created again or re-enabled starts a generation that has received
/// nothing, so its backfill sends everything.
pub fn notify_delivered(target: &str, generation: &str, id_key: &str) -> String {
    format!("notify/delivered/{target}/{generation}/{id_key}")
}
pub fn notify_delivered_of(target: &str) -> String {
    format!("notify/delivered/{target}/")
}
/// A delivery to a target that failed, to be retried (one per target and record: the record's
/// latest state is what a retry sends).
pub fn notify_failure(target: &str, id_key: &str) -> String {
    format!("{}{id_key}.json", notify_failures_of(target))
}
pub fn notify_failures_of(target: &str) -> String {
    format!("notify/failures/{target}/")
}
/// Held while one delivery sends a record's changes, so they reach every target in order.
pub fn notify_lease(id_key: &str) -> String {
    format!("notify/leases/{id_key}")
}

/// A stable short id for a GUID (a URL, an identifier), safe as a key segment.
pub fn object_id(guid: &str) -> String {
    hex::encode(&Sha256::digest(guid.as_bytes())[..12])
}

/// A record identifier as a key segment: readable where it is safe, hashed where it is not.
pub fn id_key(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = hex::encode(&Sha256::digest(id.as_bytes())[..6]);
    if safe == id && safe.len() <= 150 && !safe.starts_with('.') {
        safe
    } else {
        let short: String = safe.chars().take(100).collect();
        format!("{short}~{digest}")
    }
}

/// One path segment made safe for a key, keeping readable names readable.
pub fn safe_segment(segment: &str) -> String {
    let decoded = url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_string());
    let safe: String = decoded
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    match safe.trim_start_matches('.') {
        "" => "_".to_string(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_jobs_sort_newest_first() {
        let (older, newer) = ("20261202T112400Z-a1b2c3", "20261202T112401Z-000000");
        assert!(newest_first(newer) < newest_first(older));
        assert_eq!(newest_first(&newest_first(older)), older);
        assert_eq!(
            recent_job(older, "s"),
            "recent-jobs/79738797T887599Z-a1b2c3/s"
        );
    }

    #[test]
    fn id_keys_are_safe_and_distinct() {
        assert_eq!(id_key("abc-123"), "abc-123");
        let a = id_key("urn:uuid:1/2");
        let b = id_key("urn:uuid:1_2");
        assert_ne!(a, b);
        assert!(crate::store::validate_key(&record_json(&a)).is_ok());
        assert!(crate::store::validate_key(&record_json(&id_key(".."))).is_ok());
    }

    #[test]
    fn segments_never_escape() {
        assert_eq!(safe_segment("record%201.xml"), "record_1.xml");
        assert_eq!(safe_segment(".."), "_");
        assert_eq!(safe_segment("../x"), "_x");
    }
}

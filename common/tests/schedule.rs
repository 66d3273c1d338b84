//! The schedule: due sources get a job, running jobs keep moving, stalled jobs are aborted so
//! none stays in limbo.

mod support;

use std::time::Duration;

use common::domain::job::JobStatus;
use common::domain::source::{Frequency, SourceType};
use common::pipeline::{self, get_job, list_jobs, run_scheduled};
use common::services::Services;
use common::sources::{NewSource, add_source};

#[tokio::test]
async fn due_sources_start_once_and_stalled_jobs_are_aborted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services: Services = support::local_services(dir.path());
    services.settings.stall_timeout = Duration::from_secs(3600);
    for (name, frequency) in [("daily", Frequency::Daily), ("manual", Frequency::Manual)] {
        add_source(
            services.store.as_ref(),
            NewSource {
                name: name.into(),
                url: "https://example.org/waf/".into(),
                source_type: SourceType::Waf,
                title: None,
                active: None,
                owner: None,
                frequency: Some(frequency),
                config: None,
            },
        )
        .await
        .expect("source");
    }
    let report = run_scheduled(&services).await.expect("run");
    assert_eq!(report.started.len(), 1, "{report:?}");
    let job = &list_jobs(services.store.as_ref(), Some("daily"))
        .await
        .expect("jobs")[0];
    assert!(
        list_jobs(services.store.as_ref(), Some("manual"))
            .await
            .expect("jobs")
            .is_empty()
    );

    let again = run_scheduled(&services).await.expect("run");
    assert!(
        again.started.is_empty() && again.aborted.is_empty(),
        "one unfinished job at a time: {again:?}"
    );

    // Nothing consumes the gather queue here, so the job never moves: past the stall timeout
    // the schedule aborts it, and the source can run again.
    services.settings.stall_timeout = Duration::ZERO;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stalled = run_scheduled(&services).await.expect("run");
    assert_eq!(stalled.aborted, vec![job.id.clone()]);
    let aborted = get_job(services.store.as_ref(), "daily", &job.id)
        .await
        .expect("job");
    assert_eq!(aborted.status, JobStatus::Aborted);
    assert!(aborted.finished.is_some());
    pipeline::start_job(&services, "daily")
        .await
        .expect("the lock was released");
}

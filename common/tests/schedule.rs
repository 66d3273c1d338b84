//! The schedule: due sources get a job, running jobs keep moving, stalled jobs are aborted so
//! none stays in limbo.

mod support;

use std::time::Duration;

use common::domain::job::JobStatus;
use common::domain::source::{Frequency, SourceType};
use common::pipeline::{self, get_job, list_jobs, run_scheduled};
use common::queue::{MAX_RECEIVE_COUNT, QueueName};
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
        .expect("an ended job's lock is taken over");
}

/// A fetch whose handler kept dying reaches the dead-letter queue unrecorded: the next tick
/// ends its document as errored, and the job finishes with the error in it, not an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_document_ends_as_an_error_of_its_job() {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    std::fs::copy(
        support::workspace_root().join("tests/records/waf/iso19139/glider-mission.xml"),
        waf.join("glider.xml"),
    )
    .expect("copy");
    let nginx = support::Nginx::serve(site.path());
    let dir = tempfile::tempdir().expect("tempdir");
    dead_letter_scenario(support::local_services(dir.path()), &nginx).await;
    let moto = support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    dead_letter_scenario(support::aws_services(&moto, dir.path()).await, &nginx).await;
}

async fn dead_letter_scenario(services: Services, nginx: &support::Nginx) {
    add_source(
        services.store.as_ref(),
        support::waf_source("dead", nginx.url("waf/")),
    )
    .await
    .expect("source");
    let job = pipeline::start_job(&services, "dead").await.expect("job");
    let gather = services.queues.get(QueueName::Gather).expect("gather");
    let fetch = services.queues.get(QueueName::Fetch).expect("fetch");
    for m in gather
        .receive(10, Duration::from_secs(60))
        .await
        .expect("gather")
    {
        pipeline::handle_body(&services, &m.body, 1)
            .await
            .expect("gathered");
        gather.delete(&m.receipt).await.expect("delete");
    }
    // Received and never answered, as by a function killed at its timeout, until SQS (here
    // the local queue) moves the message to the dead-letter queue.
    for _ in 0..=MAX_RECEIVE_COUNT {
        fetch.receive(10, Duration::ZERO).await.expect("receive");
    }
    assert_eq!(fetch.depth().await.expect("depth").dead_letters, 1);

    let report = run_scheduled(&services).await.expect("run");
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    // The job's check (delayed by check_delay) now finds every document done.
    let mut done = get_job(services.store.as_ref(), "dead", &job.id)
        .await
        .expect("job");
    for _ in 0..50 {
        if done.status.is_done() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for m in gather
            .receive(10, Duration::from_secs(60))
            .await
            .expect("check")
        {
            pipeline::handle_body(&services, &m.body, 1)
                .await
                .expect("checked");
            gather.delete(&m.receipt).await.expect("delete");
        }
        done = get_job(services.store.as_ref(), "dead", &job.id)
            .await
            .expect("job");
    }
    assert_eq!(done.status, JobStatus::Finished, "{done:?}");
    assert_eq!(done.stats.errored, 1);
    assert!(
        done.object_errors[0].message.contains("dead-letter"),
        "{:?}",
        done.object_errors
    );
    assert_eq!(
        done.object_errors[0].original_url.as_deref(),
        Some(nginx.url("waf/glider.xml").as_str())
    );
    let again = run_scheduled(&services).await.expect("run");
    assert!(again.dead_lettered.is_empty(), "ended once: {again:?}");
}

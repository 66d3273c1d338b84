//! The schedule: due sources get a job, running jobs keep moving, stalled jobs are aborted so
//! none stays in limbo.

mod support;

use std::time::Duration;

use common::domain::job::{JobStatus, NoticeState};
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
    let job = &list_jobs(services.store.as_ref(), Some("daily"), 100, 0)
        .await
        .expect("jobs")[0];
    assert!(
        list_jobs(services.store.as_ref(), Some("manual"), 100, 0)
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
        support::handle_body(&services, &m.body, 1)
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
            support::handle_body(&services, &m.body, 1)
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

/// A mailer that fails its first sends (SES throttling, a network blip), then hands on.
struct FlakyMailer {
    inner: std::sync::Arc<dyn common::mail::Mailer>,
    failures_left: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl common::mail::Mailer for FlakyMailer {
    async fn send(&self, email: &common::mail::Email) -> Result<(), common::mail::MailError> {
        use std::sync::atomic::Ordering;
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(common::mail::MailError::Send("throttled".into()));
        }
        self.inner.send(email).await
    }
}

/// Where a test reads the emails sent: the local outbox, or what moto's SES received.
enum Sent {
    Outbox(std::path::PathBuf),
    Ses(String),
}

impl Sent {
    async fn mails(&self) -> Vec<String> {
        match self {
            Sent::Outbox(dir) => std::fs::read_dir(dir.join("outbox"))
                .map(|entries| {
                    entries
                        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail"))
                        .collect()
                })
                .unwrap_or_default(),
            Sent::Ses(endpoint) => {
                let text = reqwest::get(format!("{endpoint}/moto-api/data.json"))
                    .await
                    .expect("moto")
                    .text()
                    .await
                    .expect("body");
                let dump: serde_json::Value = serde_json::from_str(&text).expect("moto json");
                dump["ses"]["RawMessage"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|m| m["raw_data"].as_str().expect("raw").to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// A job that ends with errors owes its owner one email. When sending fails at the end of the
/// job, the job stays finished with the email pending; the schedule sends it, once, and later
/// ticks send nothing more. A job without errors sends none.
async fn the_owners_email_goes_once(mut services: Services, sent: Sent) {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let records = support::workspace_root().join("tests/records/waf");
    std::fs::copy(
        records.join("iso19139/glider-mission.xml"),
        waf.join("glider.xml"),
    )
    .unwrap();
    std::fs::copy(records.join("bad/no-title.xml"), waf.join("no-title.xml")).unwrap();
    let nginx = support::Nginx::serve(site.path());

    services.mailer = std::sync::Arc::new(FlakyMailer {
        inner: services.mailer.clone(),
        failures_left: std::sync::atomic::AtomicU32::new(MAX_RECEIVE_COUNT * 2),
    });
    add_source(
        services.store.as_ref(),
        NewSource {
            owner: Some("owner@example.org".into()),
            ..support::waf_source("flaky", nginx.url("/waf/"))
        },
    )
    .await
    .expect("source");
    let job = pipeline::run_test(&services, "flaky", &|_: u64, _: Option<u64>| {})
        .await
        .expect("the job ends, the email aside");
    assert_eq!(job.status, JobStatus::Finished);
    assert_eq!(job.stats.errored, 1, "{:?}", job.stats);
    assert_eq!(job.owner_notice, Some(NoticeState::Pending), "{job:?}");
    assert!(sent.mails().await.is_empty());

    // The schedule tries again while sending fails, then sends it.
    let mut ticks = 0;
    while sent.mails().await.is_empty() {
        ticks += 1;
        assert!(ticks <= 20, "the email never went");
        let report = run_scheduled(&services).await.expect("run");
        assert!(
            sent.mails().await.len() == 1 || report.errors.iter().any(|e| e.contains("throttled")),
            "{report:?}"
        );
    }
    for _ in 0..3 {
        run_scheduled(&services).await.expect("run");
    }
    let mails = sent.mails().await;
    assert_eq!(mails.len(), 1, "one email, whatever the retries");
    let (headers, bodies) = support::email_parts(&mails[0]);
    assert!(headers.contains("To: owner@example.org"), "{headers}");
    assert!(bodies[0].contains("no-title.xml"), "{bodies:?}");
    let job = get_job(services.store.as_ref(), "flaky", &job.id)
        .await
        .expect("job");
    assert_eq!(job.owner_notice, Some(NoticeState::Sent));

    // A harvest without errors owes nothing.
    std::fs::remove_file(waf.join("no-title.xml")).unwrap();
    let clean = pipeline::run_test(&services, "flaky", &|_: u64, _: Option<u64>| {})
        .await
        .expect("job");
    assert_eq!(
        (clean.stats.errored, clean.owner_notice),
        (0, None),
        "{clean:?}"
    );
    run_scheduled(&services).await.expect("run");
    assert_eq!(sent.mails().await.len(), 1);
}

#[tokio::test]
async fn the_owners_email_goes_once_even_when_sending_fails_at_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = support::local_services(dir.path());
    the_owners_email_goes_once(services, Sent::Outbox(dir.path().to_path_buf())).await;
}

#[tokio::test]
async fn the_owners_email_goes_once_through_ses_on_moto() {
    let moto = support::Moto::start();
    let moto_ses = support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services = support::aws_services(&moto, dir.path()).await;
    let ses = aws_sdk_ses::Client::new(&moto_ses.sdk_config().await);
    ses.verify_email_identity()
        .email_address(&services.settings.mail_from)
        .send()
        .await
        .expect("verify");
    services.mailer = std::sync::Arc::new(common::mail::SesMailer::new(ses));
    the_owners_email_goes_once(services, Sent::Ses(moto_ses.endpoint())).await;
}

/// Records whose source has had no completed harvest for `stale_expiration_days` are removed
/// by the schedule and logged; sooner, or with the setting unset, nothing is.
#[tokio::test]
async fn stale_records_expire_only_after_the_configured_days() {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let records = support::workspace_root().join("tests/records/waf");
    std::fs::copy(
        records.join("iso19139/glider-mission.xml"),
        waf.join("glider.xml"),
    )
    .unwrap();
    std::fs::copy(
        records.join("iso19139/wms-service.xml"),
        waf.join("wms.xml"),
    )
    .unwrap();
    let nginx = support::Nginx::serve(site.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut services: Services = support::local_services(dir.path());
    add_source(
        services.store.as_ref(),
        support::waf_source("old", nginx.url("/waf/")),
    )
    .await
    .expect("source");
    let job = pipeline::run_test(&services, "old", &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest");
    assert_eq!(job.stats.added, 2);

    // Unset: never. Set, but the last complete harvest is recent: not yet.
    let report = run_scheduled(&services).await.expect("run");
    assert!(report.expired.is_empty(), "{report:?}");
    services.settings.stale_expiration_days = Some(3);
    let report = run_scheduled(&services).await.expect("run");
    assert!(report.expired.is_empty(), "{report:?}");
    assert_eq!(support::catalogue_ids(&services, "old").await.len(), 2);

    // The last complete harvest was four days ago (the server has been failing since).
    let key = common::domain::keys::source_harvest_state("old");
    let mut state: serde_json::Value =
        serde_json::from_slice(&services.store.get(&key).await.expect("state").body).unwrap();
    let four_days_ago = (chrono::Utc::now() - chrono::Duration::days(4)).to_rfc3339();
    state["finished"] = serde_json::Value::String(four_days_ago);
    services
        .store
        .put(
            &key,
            serde_json::to_vec(&state).unwrap().into(),
            "application/json",
            common::store::PutMode::Overwrite,
        )
        .await
        .expect("put");
    assert!(state["error_free_started"].is_string(), "{state}");
    let report = run_scheduled(&services).await.expect("run");
    assert_eq!(report.expired, vec!["old: 2".to_string()], "{report:?}");
    assert!(support::catalogue_ids(&services, "old").await.is_empty());
    // An incremental harvest (CKAN, OAI-PMH) would list only what changed: the next one
    // lists everything again.
    let state: serde_json::Value =
        serde_json::from_slice(&services.store.get(&key).await.expect("state").body).unwrap();
    assert!(state.get("error_free_started").is_none(), "{state}");
    let log = common::harvest_log::list(services.store.as_ref(), Some("INFO"), 50, 0)
        .await
        .expect("log");
    assert!(
        serde_json::to_string(&log)
            .unwrap()
            .contains("Removed 2 stale records of source old"),
        "{log:?}"
    );
    // A harvest that completes brings them back, and they are fresh again.
    let job = pipeline::run_test(&services, "old", &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest");
    assert_eq!(job.stats.added, 2, "{:?}", job.stats);
    let report = run_scheduled(&services).await.expect("run");
    assert!(report.expired.is_empty(), "{report:?}");
}

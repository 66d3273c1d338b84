//! `redrive`: a dead letter sent back does its work, not nothing. A fetch message that died
//! in a job the schedule then finished is taken over by a new job of its source, which
//! imports the document; one whose job still runs goes back as it is; one whose running job
//! ended its document waits for that job; one of an inactive source is dropped. On the local
//! queue and on SQS (moto).

mod support;

use std::time::Duration;

use common::domain::job::{HarvestObject, Job, JobStatus};
use common::domain::keys;
use common::pipeline::{self, get_job, run_scheduled};
use common::queue::{MAX_RECEIVE_COUNT, QueueName};
use common::services::Services;
use common::sources::{add_source, deactivate_source};
use common::store::get_json;

const SOURCE: &str = "redrive";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_message_does_its_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(support::local_services(dir.path())).await;
    let moto = support::Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(support::aws_services(&moto, dir.path()).await).await;
}

async fn scenario(services: Services) {
    // A WAF of two documents, its own for each run (a run changes one).
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    for name in ["glider-mission.xml", "seabed-habitats.xml"] {
        std::fs::copy(
            support::workspace_root()
                .join("tests/records/waf/iso19139")
                .join(name),
            waf.join(name),
        )
        .expect("copy");
    }
    let nginx = support::Nginx::serve(site.path());
    add_source(
        services.store.as_ref(),
        support::waf_source(SOURCE, nginx.url("waf/")),
    )
    .await
    .expect("source");
    let fetch = services
        .queues
        .get(QueueName::Fetch)
        .expect("fetch")
        .clone();

    // A job whose second document's fetch dies: the schedule ends it as errored, the job
    // finishes, and the document has no record.
    let first = pipeline::start_job(&services, SOURCE).await.expect("job");
    run_until_one_fetch_dies(&services, &first).await;
    let report = run_scheduled(&services).await.expect("tick");
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    let first = pump_until_done(&services, &first).await;
    assert_eq!(
        (first.stats.added, first.stats.errored),
        (1, 1),
        "{first:?}"
    );
    assert_eq!(support::catalogue_ids(&services, SOURCE).await.len(), 1);
    assert_eq!(
        fetch.depth().await.expect("depth").dead_letters,
        1,
        "the schedule's look leaves the dead letter for a redrive"
    );

    // Redriven, as it was it would do nothing (its job has ended): a new job takes it over.
    let redriven = pipeline::redrive(&services, QueueName::Fetch, 100)
        .await
        .expect("redrive");
    assert_eq!(
        (redriven.looked_at, redriven.taken_over, redriven.resent),
        (1, 1, 0),
        "{redriven:?}"
    );
    assert_eq!(redriven.jobs_started.len(), 1, "{redriven:?}");
    assert_eq!(fetch.depth().await.expect("depth").dead_letters, 0);
    let second = get_job(services.store.as_ref(), SOURCE, &redriven.jobs_started[0])
        .await
        .expect("the job started");
    let second = pump_until_done(&services, &second).await;
    assert_eq!(second.status, JobStatus::Finished);
    assert_eq!(second.stats.errored, 0, "{second:?}");
    assert_eq!(
        support::catalogue_ids(&services, SOURCE).await.len(),
        2,
        "the redriven document is in the catalogue"
    );
    let again = pipeline::redrive(&services, QueueName::Fetch, 100)
        .await
        .expect("redrive");
    assert_eq!(again.looked_at, 0, "{again:?}");

    // A fetch that dies while its job runs on, redriven before the schedule ends it, goes
    // back as it is and fetches the document as it is now.
    let third = pipeline::start_job(&services, SOURCE).await.expect("job");
    let dead = run_until_one_fetch_dies(&services, &third).await;
    let changed = std::fs::read_to_string(waf.join(&dead))
        .expect("document")
        .replacen(
            "<gmd:title><gco:CharacterString>",
            "<gmd:title><gco:CharacterString>Redriven ",
            1,
        );
    std::fs::write(waf.join(&dead), changed).expect("change the document");
    let redriven = pipeline::redrive(&services, QueueName::Fetch, 100)
        .await
        .expect("redrive");
    assert_eq!(
        (redriven.resent, redriven.taken_over),
        (1, 0),
        "{redriven:?}"
    );
    let third = pump_until_done(&services, &third).await;
    assert_eq!(
        (
            third.stats.updated,
            third.stats.unchanged,
            third.stats.errored
        ),
        (1, 1, 0),
        "{third:?}"
    );
    support::catalogue_ids(&services, SOURCE).await;
    let found = common::catalog::search(
        services.index.as_ref(),
        &common::catalog::SearchQuery {
            q: Some("redriven".into()),
            ..common::catalog::SearchQuery::default()
        },
    )
    .await
    .expect("search");
    assert_eq!(found.total, 1, "the changed title is in the catalogue");

    // Ended by the schedule while its job still runs: left until the job has finished, then
    // taken over.
    let fourth = pipeline::start_job(&services, SOURCE).await.expect("job");
    run_until_one_fetch_dies(&services, &fourth).await;
    let report = run_scheduled(&services).await.expect("tick");
    assert_eq!(report.dead_lettered.len(), 1, "{report:?}");
    let waiting = pipeline::redrive(&services, QueueName::Fetch, 100)
        .await
        .expect("redrive");
    assert_eq!(
        (waiting.left.len(), waiting.resent, waiting.taken_over),
        (1, 0, 0),
        "{waiting:?}"
    );
    assert!(waiting.left[0].contains("still running"), "{waiting:?}");
    assert_eq!(fetch.depth().await.expect("depth").dead_letters, 1);
    pump_until_done(&services, &fourth).await;

    // Its source deactivated: nothing to do, dropped with the reason.
    deactivate_source(services.store.as_ref(), SOURCE)
        .await
        .expect("deactivate");
    let dropped = pipeline::redrive(&services, QueueName::Fetch, 100)
        .await
        .expect("redrive");
    assert_eq!(dropped.dropped.len(), 1, "{dropped:?}");
    assert!(dropped.dropped[0].contains("inactive"), "{dropped:?}");
    assert_eq!(fetch.depth().await.expect("depth").dead_letters, 0);
}

/// Runs `job`'s gather, fetches its first document and lets the second one's fetch message
/// die (received and never answered until the queue moves it to its dead-letter queue).
/// Returns the file name of the document whose message died.
async fn run_until_one_fetch_dies(services: &Services, job: &Job) -> String {
    let gather = services.queues.get(QueueName::Gather).expect("gather");
    let fetch = services.queues.get(QueueName::Fetch).expect("fetch");
    for m in gather
        .receive(10, Duration::from_secs(60))
        .await
        .expect("gather")
    {
        support::handle_body(services, &m.body, 1)
            .await
            .expect("gathered");
        gather.delete(&m.receipt).await.expect("delete");
    }
    let mut messages = Vec::new();
    for _ in 0..20 {
        messages.extend(
            fetch
                .receive(10, Duration::from_secs(60))
                .await
                .expect("receive"),
        );
        if messages.len() >= 2 {
            break;
        }
    }
    assert_eq!(messages.len(), 2, "one fetch message a document");
    support::handle_body(services, &messages[0].body, 1)
        .await
        .expect("fetched");
    fetch.delete(&messages[0].receipt).await.expect("delete");
    fetch
        .change_visibility(&messages[1].receipt, Duration::ZERO)
        .await
        .expect("visible");
    for _ in 0..=MAX_RECEIVE_COUNT {
        fetch.receive(10, Duration::ZERO).await.expect("receive");
    }
    assert_eq!(fetch.depth().await.expect("depth").dead_letters, 1);
    let message: pipeline::Message = serde_json::from_str(&messages[1].body).expect("message");
    let object = message.object.expect("a fetch names its object");
    let (object, _) = get_json::<HarvestObject>(
        services.store.as_ref(),
        &keys::job_object(SOURCE, &job.id, &object),
    )
    .await
    .expect("read")
    .expect("the object");
    object
        .url
        .rsplit('/')
        .next()
        .expect("a file name")
        .to_string()
}

/// Handles the harvest's messages (the fetch and import of the first document among them)
/// until `job` has ended.
async fn pump_until_done(services: &Services, job: &Job) -> Job {
    for _ in 0..200 {
        for name in [QueueName::Gather, QueueName::Fetch, QueueName::Import] {
            let queue = services.queues.get(name).expect("queue");
            for m in queue
                .receive(10, Duration::from_secs(60))
                .await
                .expect("receive")
            {
                support::handle_body(services, &m.body, m.receive_count)
                    .await
                    .expect("handled");
                queue.delete(&m.receipt).await.expect("delete");
            }
        }
        let now = get_job(services.store.as_ref(), SOURCE, &job.id)
            .await
            .expect("job");
        if now.status.is_done() {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {} did not end", job.id);
}

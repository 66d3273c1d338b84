//! The `infra/events/*.json` files are real events of their kind, carrying messages Sheaf reads.
#![cfg(feature = "lambda")]

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use common::pipeline::{Kind, Message};

fn messages(event: &[u8]) -> Vec<Message> {
    let event: SqsEvent = serde_json::from_slice(event).expect("an SQS event");
    event
        .records
        .iter()
        .map(|r| serde_json::from_str(r.body.as_deref().expect("body")).expect("a Sheaf message"))
        .collect()
}

#[test]
fn sqs_events_carry_pipeline_messages_of_their_stage() {
    let gather = messages(include_bytes!("../../../infra/events/gather.json"));
    assert_eq!(
        gather.iter().map(|m| m.kind).collect::<Vec<_>>(),
        [Kind::Gather, Kind::CheckJob]
    );
    let fetch = messages(include_bytes!("../../../infra/events/fetch.json"));
    assert!(
        fetch
            .iter()
            .all(|m| m.kind == Kind::Fetch && m.object.is_some())
    );
    let import = messages(include_bytes!("../../../infra/events/import.json"));
    assert!(
        import
            .iter()
            .all(|m| m.kind == Kind::Import && m.object.is_some())
    );
}

#[test]
fn the_index_event_carries_record_keys() {
    let event: SqsEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/index.json"))
            .expect("an SQS event");
    let body = event.records[0].body.as_deref().expect("body");
    let message: common::pipeline::IndexMessage =
        serde_json::from_str(body).expect("index message");
    assert_eq!(message.kind, common::pipeline::INDEX_MESSAGE_KIND);
    assert_eq!(message.keys, ["sheaf-example-land-cover"]);
}

#[test]
fn the_notify_event_carries_record_keys() {
    let event: SqsEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/notify.json"))
            .expect("an SQS event");
    let body = event.records[0].body.as_deref().expect("body");
    let message: common::notify::NotifyMessage =
        serde_json::from_str(body).expect("notify message");
    assert_eq!(message.kind, common::notify::MESSAGE_KIND);
    assert_eq!(message.keys, ["sheaf-example-land-cover"]);
    assert_eq!(message.target, None, "every enabled target");
}

#[test]
fn the_rebuild_event_names_a_rebuild() {
    let event: SqsEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/rebuild.json"))
            .expect("an SQS event");
    let body = event.records[0].body.as_deref().expect("body");
    let message: common::pipeline::RebuildMessage =
        serde_json::from_str(body).expect("rebuild message");
    assert_eq!(message.kind, common::pipeline::REBUILD_MESSAGE_KIND);
    assert_eq!(message.id, "3f2a9c81d7e4");
}

#[test]
fn the_package_event_carries_a_package_message() {
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/package.json"))
            .expect("event");
    let body = event.records[0].body.as_deref().expect("body");
    let message: common::package::PackageMessage =
        serde_json::from_str(body).expect("package message");
    assert_eq!(message.kind, common::package::MESSAGE_KIND);
    assert_eq!(message.request.limit, Some(100_000));
}

#[test]
fn scheduler_and_api_events_parse() {
    let tick: CloudWatchEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/scheduler.json"))
            .expect("scheduled event");
    assert_eq!(tick.detail_type.as_deref(), Some("Scheduled Event"));
    let api: serde_json::Value =
        serde_json::from_slice(include_bytes!("../../../infra/events/api.json")).expect("json");
    assert_eq!(api["requestContext"]["http"]["path"], "/api/catalog/search");
}

/// A message that fails is reported alone (partial batch response); the others are done.
#[tokio::test]
async fn a_failing_message_is_reported_as_a_partial_batch_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = edge::Config::from_env();
    config.bucket = None;
    config.data_dir = dir.path().to_path_buf();
    let built = edge::build_services(&config).await.expect("services");
    let event: SqsEvent =
        serde_json::from_slice(include_bytes!("../../../infra/events/gather.json")).expect("event");
    let ids: Vec<String> = event
        .records
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect();
    let response = edge::lambda::handle_sqs(
        &built.services,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .expect("handled");
    // The gather names a job that does not exist (an error worth retrying); the check of a
    // missing job has nothing to do.
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [ids[0].as_str()]);
}

/// Every function of the template names a handler the one bootstrap runs (a typo would be a
/// function that fails at every start, found only on AWS).
#[test]
fn every_handler_of_the_template_is_one_the_bootstrap_runs() {
    let template = include_str!("../../../template.yaml");
    let handlers: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Handler: "))
        .collect();
    assert_eq!(handlers.len(), 10, "one Handler a function: {handlers:?}");
    for handler in &handlers {
        assert!(
            edge::lambda::Handler::parse(handler).is_some(),
            "the bootstrap runs no {handler:?}"
        );
    }
    for wanted in ["api", "scheduler"]
        .iter()
        .chain(edge::lambda::QUEUE_HANDLERS.iter())
    {
        assert!(handlers.contains(wanted), "no function runs {wanted}");
    }
    assert_eq!(edge::lambda::Handler::parse("bootstrap"), None);
}

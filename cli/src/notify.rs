//! `sheaf notify ...`: the remote notification targets. In local mode the deliveries a command
//! queues run before it returns, so a target added here has its backfill when it ends.

use std::process::ExitCode;

use common::notify::{self, NewTarget, Target, TargetPatch};
use common::services::Services;

use crate::output;
use crate::{NotifyCommand, TargetCommand};

pub async fn run(
    services: &Services,
    local: bool,
    command: NotifyCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = services.store.as_ref();
    match command {
        NotifyCommand::Targets => {
            let targets = notify::list_targets(store).await?;
            if json {
                output::json(&targets)?;
            } else if targets.is_empty() {
                println!("no notification targets");
            } else {
                targets.iter().for_each(print_target);
            }
            return Ok(ExitCode::SUCCESS);
        }
        NotifyCommand::Retry => {
            let retried = notify::retry_now(services).await?;
            drain_here(services, local).await?;
            let failing = notify::list_failures(store, usize::MAX).await?;
            if json {
                output::json(&serde_json::json!({"retried": retried, "failures": failing}))?;
            } else {
                println!(
                    "retried {retried} notifications; {} still failing",
                    failing.len()
                );
                for f in &failing {
                    println!("  {} {} {}: {}", f.target, f.action, f.uuid, f.error);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        NotifyCommand::Target(TargetCommand::Rm { name }) => {
            notify::remove_target(services, &name).await?;
            if json {
                output::json(&serde_json::json!({"removed": name}))?;
            } else {
                println!("notification target {name} removed");
            }
            return Ok(ExitCode::SUCCESS);
        }
        NotifyCommand::Target(command) => {
            let target = match command {
                TargetCommand::Add {
                    name,
                    url,
                    disabled,
                } => {
                    let new = NewTarget {
                        name,
                        url,
                        enabled: Some(!disabled),
                    };
                    notify::add_target(services, new).await?
                }
                TargetCommand::Enable { name } => set_enabled(services, &name, true).await?,
                TargetCommand::Disable { name } => set_enabled(services, &name, false).await?,
                TargetCommand::Rm { .. } => unreachable!("handled above"),
            };
            drain_here(services, local).await?;
            // Read again: the backfill has moved since.
            let target = notify::list_targets(store)
                .await?
                .into_iter()
                .find(|t| t.name == target.name)
                .unwrap_or(target);
            if json {
                output::json(&target)?;
            } else {
                print_target(&target);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(services: &Services, name: &str, enabled: bool) -> anyhow::Result<Target> {
    let patch = TargetPatch {
        enabled: Some(enabled),
        ..TargetPatch::default()
    };
    Ok(notify::patch_target(services, name, patch).await?)
}

/// In local mode, delivers what the command queued (no worker may be running).
async fn drain_here(services: &Services, local: bool) -> anyhow::Result<()> {
    if local {
        common::worker::drain(services, common::queue::QueueName::Notify).await?;
    }
    Ok(())
}

fn print_target(t: &Target) {
    let state = if t.enabled { "enabled" } else { "disabled" };
    let backfill = match &t.backfill {
        Some(b) if b.done => format!("backfill done ({} records)", b.sent),
        Some(b) => format!("backfill running ({} records so far)", b.sent),
        None => "no backfill".to_string(),
    };
    println!("{}  {}  {state}  {backfill}", t.name, t.url);
    if let Some(next) = &t.next_retry {
        println!("  next retry of failures: {next}");
    }
}

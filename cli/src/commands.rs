//! One function per command; they call the same `common` functions the API does.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use common::domain::job::Job;
use common::pipeline::{self, JobOptions, run_test_with};
use common::sources::{self, NewSource};

use crate::output;
use crate::{Cli, Command, SourceCommand};

pub fn config_of(cli: &Cli) -> edge::Config {
    let mut config = edge::Config::from_env();
    config.data_dir = cli.data_dir.clone();
    config.bucket = cli.bucket.clone();
    config.listen = cli.listen.clone();
    config
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = config_of(&cli);
    if matches!(cli.command, Command::Serve) {
        return crate::serve::serve(config).await.map(|_| ExitCode::SUCCESS);
    }
    // In local mode the commands may reach `serve`'s example WAF, as `serve` does.
    let built = edge::build_services(&config).await?;
    let services = &built.services;
    let local = built.local_store.is_some();
    let store = services.store.as_ref();
    match cli.command {
        Command::Serve => unreachable!("handled above"),
        Command::Package(command) => return crate::package::run(services, command, cli.json).await,
        Command::Catalog(command) => return crate::catalog::run(services, command, cli.json).await,
        Command::Notify(command) => {
            return crate::notify::run(services, local, command, cli.json).await;
        }
        Command::Source(SourceCommand::Add {
            name,
            url,
            source_type,
            title,
            owner,
            frequency,
            config,
            inactive,
        }) => {
            let config = config
                .map(|c| serde_json::from_str(&c).context("--config is not JSON"))
                .transpose()?;
            let new = NewSource {
                name,
                url,
                source_type: source_type.parse().map_err(anyhow::Error::msg)?,
                title,
                active: Some(!inactive),
                owner,
                frequency: frequency
                    .map(|f| f.parse())
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                config,
            };
            let source = sources::add_source(store, new).await?;
            if cli.json {
                output::json(&source)?
            } else {
                output::source(&source)
            }
        }
        Command::Source(SourceCommand::Show { name }) => {
            let source = pipeline::load_source(store, &name).await?;
            if cli.json {
                output::json(&source)?
            } else {
                output::source(&source)
            }
        }
        Command::Source(SourceCommand::Rm { name }) => {
            let source = sources::deactivate_source(store, &name).await?;
            if cli.json {
                output::json(&source)?
            } else {
                println!("source {name} deactivated; its records stay")
            }
        }
        Command::Source(SourceCommand::Clear { name }) => {
            let removed = pipeline::clear_source(services, &name).await?;
            if cli.json {
                output::json(&serde_json::json!({"source": name, "records_removed": removed}))?
            } else {
                println!("source {name} cleared: {removed} records removed");
            }
        }
        Command::Sources { all } => {
            let list = sources::list_sources(store, all).await?;
            if cli.json {
                output::json(&list)?
            } else {
                output::sources(&list)
            }
        }
        Command::Job { name } => {
            let Some(job) = pipeline::list_jobs(store, Some(&name), 1, 0)
                .await?
                .into_iter()
                .next()
            else {
                pipeline::load_source(store, &name).await?;
                bail!("source {name} has no job yet");
            };
            if cli.json {
                output::json(&job)?
            } else {
                output::job(&job)
            }
        }
        Command::Jobs {
            source,
            limit,
            offset,
        } => {
            let list = pipeline::list_jobs(store, source.as_deref(), limit, offset).await?;
            if cli.json {
                output::json(&list)?
            } else {
                output::jobs(&list)
            }
        }
        Command::JobAbort { name } => {
            let open = pipeline::list_jobs(store, Some(&name), 1, 0)
                .await?
                .into_iter()
                .find(|j| !j.status.is_done())
                .with_context(|| format!("source {name} has no unfinished job"))?;
            let job =
                pipeline::abort_job(services, &name, &open.id, "aborted from the command line")
                    .await?;
            if cli.json {
                output::json(&job)?
            } else {
                output::job(&job)
            }
        }
        Command::JobAll => {
            let mut started: Vec<Job> = Vec::new();
            let mut failed = false;
            for source in sources::list_sources(store, false).await? {
                match pipeline::start_job(services, &source.name).await {
                    Ok(job) => started.push(job),
                    Err(e) => {
                        failed = true;
                        eprintln!("sheaf: {}: {e}", source.name);
                    }
                }
            }
            if cli.json {
                output::json(&started)?
            } else {
                output::jobs(&started)
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::PurgeQueues => {
            let report = pipeline::purge_queues(services).await?;
            if cli.json {
                output::json(&report)?
            } else {
                for q in &report.queues {
                    println!("{}: {} messages purged", q.queue, q.messages);
                }
                for job in &report.aborted {
                    println!("aborted job {job} ({})", pipeline::PURGE_REASON);
                }
            }
        }
        Command::Redrive { queue, max } => {
            let report = pipeline::redrive(services, queue, max).await?;
            if cli.json {
                output::json(&report)?
            } else {
                println!(
                    "{}: {} sent back, {} taken over by a harvest job",
                    report.queue, report.resent, report.taken_over
                );
                for job in &report.jobs_started {
                    println!("started job {job}");
                }
                for line in &report.dropped {
                    println!("dropped {line}");
                }
                for line in &report.left {
                    println!("left {line}");
                }
            }
        }
        Command::Run => {
            let report = pipeline::run_scheduled(services).await?;
            if local {
                // No worker may be running: the notifications the run queued go now.
                common::worker::drain(services, common::queue::QueueName::Notify).await?;
            }
            if cli.json {
                output::json(&report)?
            } else {
                println!(
                    "started {}, re-checked {}, aborted {}",
                    report.started.len(),
                    report.checked.len(),
                    report.aborted.len()
                );
                for e in &report.errors {
                    println!("  {e}");
                }
            }
        }
        Command::Import { name } => {
            let names = match name {
                Some(name) => vec![name],
                None => sources::list_sources(store, false)
                    .await?
                    .into_iter()
                    .map(|s| s.name)
                    .collect(),
            };
            let options = JobOptions {
                reimport: true,
                ..JobOptions::default()
            };
            let mut jobs = Vec::new();
            for name in &names {
                jobs.push(run_test_with_progress(services, name, options).await?);
            }
            if cli.json {
                output::json(&jobs)?
            } else {
                jobs.iter().for_each(output::job);
            }
            if jobs.iter().any(|j| !j.gather_errors.is_empty()) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::CleanLog { days } => {
            let removed = common::harvest_log::clean(store, days).await?;
            if cli.json {
                output::json(&serde_json::json!({"removed": removed, "days": days}))?
            } else {
                println!("removed {removed} log entries older than {days} days");
            }
        }
        Command::RunTest { name, allow_shrink } => {
            let options = JobOptions {
                allow_shrink,
                ..JobOptions::default()
            };
            let job = run_test_with_progress(services, &name, options).await?;
            if local {
                common::worker::drain(services, common::queue::QueueName::Notify).await?;
            }
            if cli.json {
                output::json(&job)?
            } else {
                output::job(&job)
            }
            if !job.gather_errors.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; plain lines (at most one per tenth) otherwise.
async fn run_test_with_progress(
    services: &common::services::Services,
    name: &str,
    options: JobOptions,
) -> anyhow::Result<Job> {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("harvesting {name}"));
    let last_tenth = std::sync::atomic::AtomicU64::new(u64::MAX);
    let progress = |done: u64, total: Option<u64>| {
        if terminal {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        } else if let Some(total) = total {
            let tenth = (done * 10).checked_div(total).unwrap_or(10);
            if last_tenth.swap(tenth, std::sync::atomic::Ordering::Relaxed) != tenth {
                eprintln!("{name}: {done}/{total} documents");
            }
        }
    };
    let job = run_test_with(services, name, options, &progress).await;
    bar.finish_and_clear();
    Ok(job?)
}

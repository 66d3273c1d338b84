//! `sheaf`: every Sheaf function in one process over a local folder (or against AWS when a
//! bucket is configured), and the commands to manage sources, jobs and the catalogue.

mod catalog;
mod commands;
mod examples;
mod notify;
mod output;
mod package;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Harvest metadata into a central WAF and a catalogue.
#[derive(Parser)]
#[command(name = "sheaf", version)]
pub struct Cli {
    /// Local store, queues and outbox.
    #[arg(
        long,
        global = true,
        env = "SHEAF_DATA_DIR",
        default_value = "./sheaf-data"
    )]
    pub data_dir: PathBuf,
    /// Use S3 (and SQS, SES) instead of the local folder.
    #[arg(long, global = true, env = "SHEAF_BUCKET")]
    pub bucket: Option<String>,
    /// Address of `serve`.
    #[arg(
        long,
        global = true,
        env = "SHEAF_LISTEN",
        default_value = "127.0.0.1:8765"
    )]
    pub listen: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the API, every stage's worker and the scheduler in one process.
    Serve,
    /// Manage one harvest source.
    #[command(subcommand)]
    Source(SourceCommand),
    /// List active sources (all with --all).
    Sources {
        #[arg(long)]
        all: bool,
    },
    /// The latest job of a source.
    Job { name: String },
    /// Jobs, newest first, a page at a time.
    Jobs {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Abort the unfinished job of a source.
    JobAbort { name: String },
    /// Start a job for every active source.
    JobAll,
    /// What the schedule does: start due jobs, keep running ones moving, abort stalled ones.
    Run,
    /// Harvest one source synchronously and print the job.
    RunTest {
        name: String,
        /// Accept a gather that lists far fewer documents than the last one (or none): the
        /// records of the missing documents are deleted.
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Import the documents kept in the central WAF again, without fetching (all active
    /// sources, or NAME): a new reader reaches old documents this way.
    Import { name: Option<String> },
    /// Empty the harvest's stage queues (gather, fetch, import); the running jobs this starves
    /// are aborted.
    PurgeQueues,
    /// Send a queue's dead letters back to do their work (gather, fetch, import, index,
    /// rebuild, notify, package-fast, package-slow). A harvest message whose job has ended is
    /// taken over by a new harvest job of its source.
    Redrive {
        #[arg(value_parser = parse_queue)]
        queue: common::queue::QueueName,
        /// Dead letters looked at, at most.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
    /// Remove harvest log entries older than N days.
    CleanLog {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Package data into a zip, as the packager API does, without the queue.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Search and check the catalogue.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Remote notification targets (GeoNetwork's): partner catalogues told of every change.
    #[command(subcommand)]
    Notify(NotifyCommand),
}

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Add, remove, enable or disable a target.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Every target with its backfill and next retry.
    Targets,
    /// Send every enabled target's failed notifications again now.
    Retry,
}

#[derive(Subcommand)]
pub enum TargetCommand {
    /// Add a target; it receives every existing record (a backfill), then every change.
    Add {
        name: String,
        url: String,
        /// Keep it disabled (nothing is sent until it is enabled).
        #[arg(long)]
        disabled: bool,
    },
    /// Remove a target with its pending failures.
    Rm { name: String },
    /// Enable a target: it receives every existing record again, then every change.
    Enable { name: String },
    /// Disable a target: nothing is sent to it until it is enabled.
    Disable { name: String },
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Per source: documents in the central WAF, records, rejected, missing and orphan
    /// records; the records against what the search index holds. Exits 1 when they differ.
    Status,
    /// Import every kept document again, remove the records no document backs, and make the
    /// search index anew.
    Rebuild,
    /// Rejected documents with their reasons.
    Rejected {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Search the catalogue.
    Search {
        /// Words, all of which must match (stemmed: "surveys" finds "survey").
        #[arg(long)]
        q: Option<String>,
        /// W,S,E,N (west greater than east crosses the antimeridian).
        #[arg(long)]
        bbox: Option<String>,
        /// Records whose time extent overlaps [start, end] (YYYY[-MM[-DD]] or RFC 3339).
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        keyword: Option<String>,
        /// iso19139, iso19115-3, dublin-core or ckan.
        #[arg(long)]
        format: Option<String>,
        /// relevance, date or title.
        #[arg(long)]
        sort: Option<String>,
        #[arg(long)]
        page: Option<u64>,
        #[arg(long)]
        page_size: Option<u64>,
    },
    /// One record (its original document with --xml).
    Show {
        id: String,
        #[arg(long)]
        xml: bool,
    },
}

#[derive(Subcommand)]
pub enum PackageCommand {
    /// Datastore rows (a CKAN datastore_search API) into a zip: a file with --out, else the
    /// store (the link is printed, and emailed with --email).
    Datastore {
        #[arg(long)]
        api_url: String,
        #[arg(long)]
        resource_id: String,
        #[arg(long)]
        email: Option<String>,
        /// datastore_search filters, a JSON object.
        #[arg(long)]
        filters: Option<String>,
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        offset: Option<u64>,
        #[arg(long, value_parser = ["csv", "tsv"], default_value = "csv")]
        format: String,
        /// A Darwin Core Archive instead of one table.
        #[arg(long)]
        dwc: bool,
        /// CKAN API key.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Register a source.
    Add {
        name: String,
        url: String,
        #[arg(long = "type", value_parser = ["waf", "csw", "ckan", "oai-pmh"])]
        source_type: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, value_parser = ["manual", "daily", "weekly", "biweekly", "monthly"])]
        frequency: Option<String>,
        /// The source's JSON config.
        #[arg(long)]
        config: Option<String>,
        #[arg(long)]
        inactive: bool,
    },
    /// Show a source.
    Show { name: String },
    /// Deactivate a source (its records stay).
    Rm { name: String },
    /// Drop a source's records, jobs and documents (the source stays).
    Clear { name: String },
}

fn parse_queue(name: &str) -> Result<common::queue::QueueName, String> {
    common::queue::QueueName::parse(name).ok_or_else(|| {
        let names: Vec<&str> = common::queue::QueueName::ALL
            .iter()
            .map(|q| q.as_str())
            .collect();
        format!("no queue {name:?}: one of {}", names.join(", "))
    })
}

/// jemalloc, not glibc's allocator: glibc's per-thread arenas kept what the search index's
/// drain freed on its threads, so a harvest's peak grew with the source (69 against 78 MiB at
/// 10,000 and 100,000 documents; 64 against 67 with jemalloc), and jemalloc's harvest is a
/// sixth to a quarter faster (`tests/bench_harvest.sh`; ARCHITECTURE.md has the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sheaf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("sheaf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

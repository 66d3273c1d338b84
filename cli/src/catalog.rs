//! `sheaf catalog ...`: search, show, status, rejected, rebuild.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use common::catalog::{self, SearchQuery};
use common::pipeline::{self, RebuildStatus};
use common::services::Services;

use crate::CatalogCommand;
use crate::output;

pub async fn run(
    services: &Services,
    command: CatalogCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        CatalogCommand::Search {
            q,
            bbox,
            start,
            end,
            source,
            keyword,
            format,
            sort,
            page,
            page_size,
        } => {
            // Changes waiting for the index are applied first, unless `serve` holds it.
            pipeline::drain_index(services).await?;
            let query = SearchQuery {
                q,
                bbox,
                start,
                end,
                source,
                keyword,
                format,
                sort,
                page,
                page_size,
            };
            let found = catalog::search(services.index.as_ref(), &query).await?;
            if json {
                output::json(&found)?;
            } else {
                println!(
                    "{} records (page {}, {} a page)",
                    found.total, found.page, found.page_size
                );
                for r in &found.records {
                    println!("{:<40} {}  [{}]", r.metadata.id, r.metadata.title, r.source);
                }
            }
        }
        CatalogCommand::Show { id, xml } => {
            if xml {
                let original = catalog::get_record_xml(services.store.as_ref(), &id).await?;
                std::io::stdout().write_all(&original)?;
            } else {
                let record = catalog::get_record(services.store.as_ref(), &id).await?;
                output::json(&record)?;
            }
        }
        CatalogCommand::Status => {
            pipeline::drain_index(services).await?;
            let status = pipeline::catalog_integrity(services).await?;
            if json {
                output::json(&status)?;
            } else {
                println!(
                    "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    "source", "documents", "records", "rejected", "missing", "orphans"
                );
                for s in &status.sources {
                    println!(
                        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9}",
                        s.source, s.documents, s.records, s.rejected, s.missing, s.orphans
                    );
                }
                println!(
                    "{} records, {} in the search index: {}",
                    status.records,
                    status.indexed,
                    if status.consistent {
                        "consistent"
                    } else {
                        "NOT consistent (sheaf catalog rebuild)"
                    }
                );
            }
            if !status.consistent {
                return Ok(ExitCode::FAILURE);
            }
        }
        CatalogCommand::Rejected {
            source,
            limit,
            offset,
        } => {
            let list = pipeline::list_rejected(services, source.as_deref(), limit, offset).await?;
            if json {
                output::json(&list)?;
            } else {
                for r in &list {
                    println!("{} {}: {}", r.source, r.original_url, r.reason);
                }
            }
        }
        CatalogCommand::Rebuild => {
            let started = pipeline::start_rebuild(services).await?;
            let done = pipeline::run_rebuild(services, started).await?;
            if json {
                output::json(&done)?;
            } else {
                let s = done.stats;
                println!(
                    "rebuild {}: {:?}; {} sources; {} added, {} updated, {} unchanged, {} errored; {} orphan records removed; {} records indexed",
                    done.id,
                    done.status,
                    done.sources_done,
                    s.added,
                    s.updated,
                    s.unchanged,
                    s.errored,
                    done.orphans_removed,
                    done.indexed
                );
            }
            if done.status != RebuildStatus::Finished {
                bail!("the rebuild failed: {}", done.error.unwrap_or_default());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

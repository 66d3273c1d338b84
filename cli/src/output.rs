//! Text for people, JSON with `--json`.

use common::domain::job::Job;
use common::domain::source::Source;
use serde::Serialize;

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn source(s: &Source) {
    println!("{} ({}) {}", s.name, s.source_type.as_str(), s.url);
    println!("  title:     {}", s.title);
    println!("  active:    {}", s.active);
    println!("  owner:     {}", s.owner.as_deref().unwrap_or("-"));
    println!("  frequency: {:?}", s.frequency);
    println!("  config:    {}", s.config);
}

pub fn sources(list: &[Source]) {
    if list.is_empty() {
        println!("no sources");
    }
    for s in list {
        println!(
            "{:<24} {:<8} {:<9} {}",
            s.name,
            s.source_type.as_str(),
            if s.active { "active" } else { "inactive" },
            s.url
        );
    }
}

pub fn job(j: &Job) {
    println!("job {} of {}: {:?}", j.id, j.source, j.status);
    println!(
        "  created {}  started {}  finished {}",
        j.created,
        j.started.as_deref().unwrap_or("-"),
        j.finished.as_deref().unwrap_or("-")
    );
    println!(
        "  added {}, updated {}, unchanged {}, deleted {}, errored {}",
        j.stats.added, j.stats.updated, j.stats.unchanged, j.stats.deleted, j.stats.errored
    );
    for e in &j.gather_errors {
        println!(
            "  gather error: {} ({})",
            e.message,
            e.original_url.as_deref().unwrap_or("-")
        );
    }
    for e in &j.object_errors {
        println!(
            "  error: {} ({})",
            e.message,
            e.original_url.as_deref().unwrap_or("-")
        );
    }
}

pub fn jobs(list: &[Job]) {
    if list.is_empty() {
        println!("no jobs");
    }
    for j in list {
        println!(
            "{} {:<20} {:<9} +{} ~{} ={} -{} !{}",
            j.id,
            j.source,
            format!("{:?}", j.status).to_lowercase(),
            j.stats.added,
            j.stats.updated,
            j.stats.unchanged,
            j.stats.deleted,
            j.stats.errored
        );
    }
}

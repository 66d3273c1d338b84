//! Metadata reading benchmark: the project's ISO 19139 test records read as an import reads
//! them (`parse::read_metadata`: the XML into its tree, then the record), N documents a
//! round (default 20,000), five rounds; prints the median microseconds a document and the
//! rate in MB/s.
//!
//! `cargo bench -p sheaf-common --bench parse [-- N]`; `SHEAF_BENCH_DOCUMENTS=DIR` reads the
//! ISO 19139 documents in `DIR` instead (real-world ones are larger than the test records).

use std::time::Instant;

use common::parse::{XmlLimits, read_metadata};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let folder = match std::env::var_os("SHEAF_BENCH_DOCUMENTS") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/records/waf/iso19139")
        }
    };
    let mut documents: Vec<Vec<u8>> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "xml"))
        .map(|path| std::fs::read(path).expect("read"))
        .collect();
    documents.sort();
    assert!(!documents.is_empty(), "no records in {}", folder.display());
    let bytes: usize = (0..n).map(|i| documents[i % documents.len()].len()).sum();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..n {
            let metadata = read_metadata(&documents[i % documents.len()], XmlLimits::default())
                .expect("a valid record");
            std::hint::black_box(metadata);
        }
        rounds.push(started.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    println!(
        "read_metadata: {n} ISO 19139 documents ({} kinds, {bytes} bytes) a round, median of 5: {:.1} µs a document, {:.0} MB/s",
        documents.len(),
        median * 1e6 / n as f64,
        bytes as f64 / median / 1e6
    );
}

//! What every package writer shares (the table in `build.rs`, the Darwin Core Archive in
//! `dwc.rs`): the summary they return, the deadline check between pages, and CSV writing.

use std::time::Duration;

use super::PackageError;
use crate::deadline;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildSummary {
    /// Data rows written (0 for a file).
    pub rows: u64,
    /// Bytes of data before compression.
    pub uncompressed: u64,
}

/// What a package needs after its last page (finish the zip, complete the upload, email) or
/// to hand on to the next invocation (flush, upload the parts, save its state).
const FINISHING_TIME: Duration = Duration::from_secs(60);

/// Whether the invocation's deadline is too near to take on another page.
pub(super) fn out_of_time() -> bool {
    deadline::near(FINISHING_TIME)
}

/// Fails with `OutOfTime` when the invocation's deadline is too near to go on (a package that
/// cannot go on in another invocation).
pub(super) fn check_time() -> Result<(), PackageError> {
    if out_of_time() {
        return Err(PackageError::OutOfTime);
    }
    Ok(())
}

pub(super) fn csv_error(e: csv::Error) -> PackageError {
    PackageError::Archive(format!("writing a row failed: {e}"))
}

/// A CSV (or TSV) writer into memory, lines ended by `\n` as ckanpackager wrote them.
pub(super) fn table_writer(delimiter: u8, capacity: usize) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(capacity))
}

pub(super) fn into_bytes(writer: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, PackageError> {
    writer
        .into_inner()
        .map_err(|e| PackageError::Archive(format!("writing rows failed: {e}")))
}

//! Packaging, as ckanpackager does it: datastore rows (or a file) streamed into a zip in the
//! store, and the link emailed.
//!
//! Flow: `request` checks what the client sent; `jobs::accept` picks the fast or slow queue;
//! `jobs::handle_message` builds (`build`: `datastore` pages → CSV → `archive`'s zip writer
//! with `deflate` on every core → a `sink`, the store's multipart upload) or reuses the cached
//! zip, emails the `links` link (`email`), and counts it in `stats`.

mod archive;
mod build;
mod datastore;
mod deflate;
mod dwc;
mod email;
mod error;
mod jobs;
mod links;
mod request;
mod resume;
mod settings;
mod sink;
pub mod stats;
mod stream;
mod writing;

pub use archive::ZipStreamWriter;
pub use build::{Built, TablePlace, resume_package, write_package};
pub use datastore::{Datastore, DatastoreInfo};
pub use deflate::{ParallelDeflate, StreamSummary};
pub use email::{format_template, link_email, refusal_email};
pub use error::PackageError;
pub use jobs::{
    Build, MESSAGE_KIND, PackageDoc, PackageMessage, accept, build_package, clear_cache,
    download_link, fresh_package, handle_message, zip_key,
};
pub use links::LinkSigner;
pub use request::{
    PackageKind, PackageRequest, Params, TableFormat, number as number_param,
    optional as optional_param, parse_params,
};
pub use settings::{CKAN_MAX_PAGE_SIZE, PackagerSettings, SUCCESS_MESSAGE};
pub use sink::{ByteSink, FileSink, MIN_PART_SIZE, MultipartSink};
pub use writing::BuildSummary;

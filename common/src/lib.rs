//! Sheaf's core: the domain, the harvest pipeline and the HTTP API, over four small ports
//! (object store, queue, mailer, HTTP fetcher), each with an AWS adapter and a local one.
//!
//! This crate reads no environment variables and knows nothing of Lambda: its edges (the
//! `functions/*` binaries and the `sheaf` command) build the adapters and call in.

pub mod aws;
pub mod catalog;
pub mod csw;
pub mod deadline;
pub mod domain;
pub mod fetch;
pub mod harvest;
pub mod harvest_log;
pub mod http;
#[cfg(feature = "sqlite")]
pub mod local_db;
pub mod mail;
pub mod notify;
pub mod ogcapi;
pub mod package;
pub mod parse;
pub mod pipeline;
pub mod queue;
pub mod services;
pub mod sources;
pub mod store;
pub mod worker;

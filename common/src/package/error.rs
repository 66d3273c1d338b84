use crate::fetch::FetchError;
use crate::mail::MailError;
use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The request itself is wrong; `param` names what to fix (answered with a 400).
    #[error("{param}: {message}")]
    BadRequest { param: String, message: String },
    /// The datastore answered something that is not a datastore_search result.
    #[error("the datastore at {url} failed: {message}")]
    Datastore { url: String, message: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("writing the archive failed: {0}")]
    Archive(String),
    /// The function's time ran out before the package was whole.
    #[error(
        "the package could not be finished within the time one run may take; ask for fewer rows (a limit or filters)"
    )]
    OutOfTime,
    /// The same package is being built by another delivery: wait for it, do not build twice.
    #[error("an identical package is being built")]
    Busy,
}

impl PackageError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        PackageError::BadRequest {
            param: param.to_string(),
            message: message.into(),
        }
    }

    /// Worth another delivery: the remote server or our own backends failed for now.
    pub fn is_transient(&self) -> bool {
        match self {
            PackageError::Fetch(e) => e.is_transient(),
            PackageError::Store(_) | PackageError::Queue(_) | PackageError::Mail(_) => true,
            PackageError::BadRequest { .. }
            | PackageError::Datastore { .. }
            | PackageError::Archive(_)
            | PackageError::Busy
            | PackageError::OutOfTime => false,
        }
    }
}

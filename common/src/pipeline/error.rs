use crate::domain::source::FieldError;
use crate::fetch::FetchError;
use crate::mail::MailError;
use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A fetch that failed in a way worth retrying.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("malformed message: {0}")]
    Message(String),
    #[error(transparent)]
    Package(#[from] crate::package::PackageError),
    #[error(transparent)]
    Index(#[from] crate::catalog::IndexError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

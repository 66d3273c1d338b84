use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::queue::QueueName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gather,
    Fetch,
    Import,
    CheckJob,
}

/// A pipeline message: keys only, never documents (SQS caps a message at 256 KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub kind: Kind,
    pub v: u32,
    pub source: String,
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Message {
    pub fn new(kind: Kind, source: &str, job: &str) -> Self {
        Message {
            kind,
            v: 1,
            source: source.to_string(),
            job: job.to_string(),
            object: None,
            seq: None,
        }
    }

    pub fn for_object(kind: Kind, source: &str, job: &str, object: &str) -> Self {
        Message {
            object: Some(object.to_string()),
            ..Message::new(kind, source, job)
        }
    }

    pub fn object(&self) -> Result<&str, PipelineError> {
        self.object.as_deref().ok_or_else(|| {
            PipelineError::Message(format!("{:?} message without object", self.kind))
        })
    }

    /// The queue this message travels on.
    pub fn queue(&self) -> QueueName {
        match self.kind {
            Kind::Gather | Kind::CheckJob => QueueName::Gather,
            Kind::Fetch => QueueName::Fetch,
            Kind::Import => QueueName::Import,
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a message always serialises")
    }
}

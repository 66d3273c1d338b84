//! Local mail: one `.eml` file per message in the outbox folder, written atomically.

use std::path::PathBuf;

use async_trait::async_trait;

use super::{Email, MailError, Mailer};

pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf) -> Self {
        OutboxMailer { dir }
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let bytes = email.to_rfc5322()?;
        let name = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, dir.join(format!("{name}.eml")))
        })
        .await
        .map_err(|e| MailError::Send(e.to_string()))?
        .map_err(|e| MailError::Send(format!("writing to the outbox: {e}")))
    }
}

//! Mail through SES `SendRawEmail`, with the same RFC 5322 bytes the outbox would hold.

use async_trait::async_trait;
use aws_sdk_ses::Client;
use aws_sdk_ses::primitives::Blob;
use aws_sdk_ses::types::RawMessage;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Email, MailError, Mailer};

pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn new(client: Client) -> Self {
        SesMailer { client }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let raw = RawMessage::builder()
            .data(Blob::new(email.to_rfc5322()?))
            .build()
            .map_err(|e| MailError::Send(e.to_string()))?;
        self.client
            .send_raw_email()
            .source(&email.from)
            .set_destinations(Some(email.to.clone()))
            .raw_message(raw)
            .send()
            .await
            .map_err(|e| {
                MailError::Send(super::without_addresses(
                    &DisplayErrorContext(e).to_string(),
                ))
            })?;
        Ok(())
    }
}

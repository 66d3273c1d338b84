//! The mailer port. A message is built once as RFC 5322 bytes; locally they are written to
//! `outbox/*.eml`, on AWS the same bytes go to SES `SendRawEmail`.

mod local;
mod ses;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use local::OutboxMailer;
pub use ses::SesMailer;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The address is kept for the caller but never shown: errors are logged, and emails are
    /// anonymised in the statistics when asked.
    #[error("an invalid email address (refused, so that no header can be injected)")]
    InvalidAddress(String),
    #[error("sending email failed: {0}")]
    Send(String),
}

/// One email with a plain text body and an optional HTML alternative.
#[derive(Debug, Clone)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<(), MailError>;
}

/// A plausible single address: one `@`, a domain, no spaces, brackets or header breaks.
pub fn is_valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && address.len() <= 254
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
}

/// `text` with every email address in it replaced by `<address>`: a sending service's error
/// (SES names the identities it refused) is logged, and emails may be anonymised.
pub fn without_addresses(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let local = |c: char| c.is_alphanumeric() || "._%+-'".contains(c);
    let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let start = (0..i).rev().take_while(|&j| local(chars[j])).count();
            let end = chars[i + 1..].iter().take_while(|&&c| domain(c)).count();
            if start > 0 && end > 0 {
                for _ in 0..start {
                    out.pop();
                }
                out.push_str("<address>");
                i += end + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// An RFC 2047 encoded word where the text is not plain ASCII.
fn header_text(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii() && !c.is_control()) {
        text.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(text))
    }
}

/// Base64 body lines of 76 characters, as MIME asks.
fn base64_lines(text: &str) -> String {
    let encoded = STANDARD.encode(text);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

impl Email {
    /// Checks every address, so no header can be injected through one.
    pub fn validate(&self) -> Result<(), MailError> {
        for address in std::iter::once(&self.from).chain(&self.to) {
            if !is_valid_address(address) {
                return Err(MailError::InvalidAddress(address.clone()));
            }
        }
        if self.to.is_empty() {
            return Err(MailError::InvalidAddress(String::new()));
        }
        Ok(())
    }

    /// The message as RFC 5322 bytes (MIME, UTF-8, base64 bodies).
    pub fn to_rfc5322(&self) -> Result<Vec<u8>, MailError> {
        self.validate()?;
        let boundary = format!("sheaf-{}", uuid::Uuid::new_v4().simple());
        let mut m = String::new();
        m.push_str(&format!("From: {}\r\n", self.from));
        m.push_str(&format!("To: {}\r\n", self.to.join(", ")));
        m.push_str(&format!("Subject: {}\r\n", header_text(&self.subject)));
        m.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
        m.push_str(&format!(
            "Message-ID: <{}@sheaf>\r\n",
            uuid::Uuid::new_v4().simple()
        ));
        m.push_str("MIME-Version: 1.0\r\n");
        let text_part = format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(&self.text)
        );
        match &self.html {
            None => m.push_str(&text_part),
            Some(html) => {
                m.push_str(&format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                ));
                m.push_str(&format!("--{boundary}\r\n{text_part}"));
                m.push_str(&format!(
                    "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    base64_lines(html)
                ));
                m.push_str(&format!("--{boundary}--\r\n"));
            }
        }
        Ok(m.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_inject_headers_are_refused() {
        assert!(is_valid_address("owner@example.org"));
        for bad in [
            "owner",
            "a@b.org\r\nBcc: x@y.org",
            "a b@c.org",
            "<a@b.org>",
            "a@@b.org",
        ] {
            assert!(!is_valid_address(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_lose_their_addresses() {
        assert_eq!(
            without_addresses(
                "Email address is not verified. The following identities failed the check in region EU-WEST-1: jo.smith+dl@example.org, sheaf@localhost"
            ),
            "Email address is not verified. The following identities failed the check in region EU-WEST-1: <address>, <address>"
        );
        assert_eq!(without_addresses("no @ here, a@ b"), "no @ here, a@ b");
    }

    #[test]
    fn a_subject_cannot_add_headers() {
        // A resource id or a title in the subject template, with a line break in it.
        let email = Email {
            from: "sheaf@example.org".into(),
            to: vec!["owner@example.org".into()],
            subject: "Resource x\r\nBcc: everyone@example.org\r\n\r\nbody".into(),
            text: "plain".into(),
            html: None,
        };
        let raw = String::from_utf8(email.to_rfc5322().unwrap()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(headers.lines().all(|l| !l.starts_with("Bcc:")), "{headers}");
        assert_eq!(
            headers
                .lines()
                .filter(|l| l.starts_with("Subject:"))
                .count(),
            1
        );
    }

    #[test]
    fn message_carries_both_bodies_and_encoded_subject() {
        let email = Email {
            from: "sheaf@example.org".into(),
            to: vec!["owner@example.org".into()],
            subject: "Harvest of «demo» had errors".into(),
            text: "plain".into(),
            html: Some("<p>html</p>".into()),
        };
        let raw = String::from_utf8(email.to_rfc5322().unwrap()).unwrap();
        assert!(raw.contains("Subject: =?UTF-8?B?"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains(&STANDARD.encode("plain")));
        assert!(raw.contains(&STANDARD.encode("<p>html</p>")));
    }
}

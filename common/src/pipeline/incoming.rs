//! A message off any of Sheaf's queues, parsed once: its `kind` names the shape it is read
//! as, so no handler tries shapes in turn.

use super::index::{self, IndexMessage};
use super::rebuild::{self, RebuildMessage};
use super::{Message, PipelineError, handle};
use crate::notify::{self, NotifyQueued};
use crate::package::{self, PackageMessage};
use crate::queue::message_kind;
use crate::services::Services;

#[derive(Debug, Clone)]
pub enum Incoming {
    /// A harvest stage's: gather, fetch, import or a job's check.
    Stage(Message),
    Index(IndexMessage),
    Rebuild(RebuildMessage),
    Notify(NotifyQueued),
    Package(PackageMessage),
}

impl Incoming {
    pub fn parse(body: &str) -> Result<Incoming, serde_json::Error> {
        let kind = message_kind(body).unwrap_or_default();
        if let Some(notify) = NotifyQueued::parse(&kind, body) {
            return notify.map(Incoming::Notify);
        }
        Ok(match kind.as_str() {
            index::MESSAGE_KIND => Incoming::Index(serde_json::from_str(body)?),
            rebuild::MESSAGE_KIND => Incoming::Rebuild(serde_json::from_str(body)?),
            package::MESSAGE_KIND => Incoming::Package(serde_json::from_str(body)?),
            _ => Incoming::Stage(serde_json::from_str(body)?),
        })
    }
}

/// Handles one message; an `Err` leaves it on its queue for another try.
pub async fn handle_incoming(
    services: &Services,
    message: &Incoming,
    receive_count: u32,
) -> Result<(), PipelineError> {
    match message {
        Incoming::Stage(message) => handle(services, message, receive_count).await,
        Incoming::Index(message) => index::handle_message(services, message).await,
        Incoming::Rebuild(message) => rebuild::handle_message(services, message).await,
        Incoming::Notify(message) => Ok(notify::handle(services, message).await?),
        Incoming::Package(message) => {
            Ok(package::handle_message(services, message, receive_count).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Kind;

    #[test]
    fn each_kind_is_read_as_its_own_shape() {
        let stage = Message::for_object(Kind::Fetch, "s", "j", "o").body();
        assert!(matches!(Incoming::parse(&stage), Ok(Incoming::Stage(m)) if m.kind == Kind::Fetch));
        let index = r#"{"kind":"index","keys":["a","b"]}"#;
        assert!(matches!(Incoming::parse(index), Ok(Incoming::Index(m)) if m.keys == ["a", "b"]));
        let notice = r#"{"kind":"notify","keys":["a"],"target":"t"}"#;
        assert!(matches!(
            Incoming::parse(notice),
            Ok(Incoming::Notify(NotifyQueued::Notice(m))) if m.target.as_deref() == Some("t")
        ));
        let backfill = r#"{"kind":"notify-backfill","target":"t","generation":"g","after":null}"#;
        assert!(matches!(
            Incoming::parse(backfill),
            Ok(Incoming::Notify(NotifyQueued::Backfill(_)))
        ));
        let rebuild = r#"{"kind":"rebuild","id":"r1"}"#;
        assert!(matches!(Incoming::parse(rebuild), Ok(Incoming::Rebuild(m)) if m.id == "r1"));
        // A known kind in the wrong shape, an unknown kind, no kind, not JSON: errors.
        for bad in [
            r#"{"kind":"index","keys":"a"}"#,
            r#"{"kind":"compost","v":1}"#,
            r#"{"keys":["a"]}"#,
            "not json",
        ] {
            assert!(Incoming::parse(bad).is_err(), "{bad}");
        }
    }
}

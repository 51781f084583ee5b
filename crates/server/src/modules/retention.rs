//! Retention: how long archives (accounts' and rooms'), offline messages
//! and uploads are kept. One setting, `retention.days`; a room's owner may
//! choose a shorter period for the room's archive. Applied by a background
//! sweep and by `conclave retention apply`.

use conclave_store::Store;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use crate::config::Config;

/// The XEP-0128 extended disco form that tells clients how long data is
/// kept (in the spirit of XEP-0504, whose field set is not settled).
pub const FORM_TYPE: &str = "https://conclave.chat/protocol/retention";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub archived: u64,
    pub offline: u64,
    pub uploads: u64,
}

/// Seconds data is kept; `None`: for ever.
pub fn keep_secs(config: &Config) -> Option<u64> {
    (config.retention.days > 0).then(|| u64::from(config.retention.days) * 86_400)
}

/// Deletes whatever is past retention at `now` (Unix seconds).
pub async fn apply(store: &dyn Store, config: &Config, now: u64) -> Report {
    let mut report = Report::default();
    if let Some(keep) = keep_secs(config) {
        let cutoff = now.saturating_sub(keep);
        match store.expire_archive(None, cutoff as i64 * 1_000_000).await {
            Ok(n) => report.archived += n,
            Err(e) => tracing::error!(error = %e, "archive expiry failed"),
        }
        match store.expire_offline(cutoff).await {
            Ok(n) => report.offline = n,
            Err(e) => tracing::error!(error = %e, "offline expiry failed"),
        }
    }
    // Rooms whose owners chose a shorter period.
    if let Ok(rooms) = store.list_rooms().await {
        for jid in rooms {
            let Ok(Some(room)) = store.room(&jid).await else {
                continue;
            };
            let days = room
                .config
                .iter()
                .find(|(k, _)| k == "retention_days")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .filter(|d| *d > 0);
            if let Some(d) = days {
                let cutoff = now.saturating_sub(d * 86_400);
                match store
                    .expire_archive(Some(&jid), cutoff as i64 * 1_000_000)
                    .await
                {
                    Ok(n) => report.archived += n,
                    Err(e) => tracing::error!(error = %e, "room archive expiry failed"),
                }
            }
        }
    }
    match super::upload::expire(store, config, now).await {
        Ok(n) => report.uploads = n as u64,
        Err(e) => tracing::error!(error = %e, "upload expiry failed"),
    }
    // Expired invitations are useless already; the sweep only tidies.
    if let Err(e) = store.expire_invites(now).await {
        tracing::error!(error = %e, "invitation expiry failed");
    }
    report
}

/// The retention form for the server's disco#info.
pub fn disco_form(config: &Config) -> Element {
    let field = |var: &str, value: &str| {
        let mut f = Element::bare("field", ns::DATA_FORMS).with("var", var);
        let mut v = Element::bare("value", ns::DATA_FORMS);
        v.append_text(value);
        f.append_child(v);
        f
    };
    let days = config.retention.days.to_string();
    let mut x = Element::bare("x", ns::DATA_FORMS).with("type", "result");
    let mut ft = field("FORM_TYPE", FORM_TYPE);
    ft.set("type", "hidden");
    x.append_child(ft);
    // 0 means kept until deleted by the user or the operator.
    for var in ["archive-days", "offline-days", "upload-days"] {
        x.append_child(field(var, &days));
    }
    x.append_child(field("room-archive-days-max", &days));
    x
}

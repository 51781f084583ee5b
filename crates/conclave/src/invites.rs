//! `conclave invite ...`: invitations from the operator, against the same
//! store the server uses, so they work while it runs.

use clap::Subcommand;
use conclave_server::Config;
use conclave_server::modules::invites::{self, CreateError};
use conclave_store::{InviteKind, Invites};
use xmpp_core::invite;

#[derive(Subcommand)]
pub enum InviteCommand {
    /// Create an account invitation and print its landing page URL and
    /// xmpp: URI. Anyone holding either can register once.
    Create {
        /// The only username it may register (else the invitee chooses).
        #[arg(long)]
        user: Option<String>,
        /// The host to register on (default: the first of `hosts`).
        #[arg(long)]
        host: Option<String>,
        /// Seconds it stays valid (default: `invites.ttl_secs`).
        #[arg(long)]
        ttl: Option<u64>,
        /// Also subscribe the new account and this existing account
        /// (a bare JID) to each other.
        #[arg(long)]
        contact_of: Option<String>,
    },
    /// List unused invitations: id, host, kind, username, inviter, expiry.
    List {
        #[arg(long)]
        host: Option<String>,
    },
    /// Revoke an invitation by its token (or URL) or by the id `list` shows.
    Revoke { token_or_id: String },
}

pub async fn run(cfg: &Config, cmd: InviteCommand) -> Result<(), String> {
    let store = crate::open_store(cfg).await?;
    let r = match cmd {
        InviteCommand::Create {
            user,
            host,
            ttl,
            contact_of,
        } => create(cfg, &store, user, host, ttl, contact_of).await,
        InviteCommand::List { host } => match store.list_invites(host.as_deref()).await {
            Ok(list) => {
                for i in list {
                    println!(
                        "{} {} {} user={} inviter={} expires={}",
                        invite::token_id(&i.token_hash),
                        i.host,
                        i.kind.as_str(),
                        i.username.as_deref().unwrap_or("-"),
                        i.inviter.as_deref().unwrap_or("-"),
                        xmpp_core::time::datetime(i.expires)
                    );
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        InviteCommand::Revoke { token_or_id } => revoke(&store, &token_or_id).await,
    };
    store.close().await;
    r
}

async fn create(
    cfg: &Config,
    store: &conclave_store::SqliteStore,
    user: Option<String>,
    host: Option<String>,
    ttl: Option<u64>,
    contact_of: Option<String>,
) -> Result<(), String> {
    let host = match host {
        Some(h) if cfg.hosts.contains(&h) => h,
        Some(h) => {
            return Err(format!(
                "host `{h}` is not configured; configured hosts: {}",
                cfg.hosts.join(", ")
            ));
        }
        None => cfg
            .hosts
            .first()
            .cloned()
            .ok_or("no hosts are configured")?,
    };
    let ttl = ttl.unwrap_or(cfg.invites.ttl_secs);
    if ttl == 0 {
        return Err("--ttl must be at least 1 second".into());
    }
    let inviter = match contact_of {
        Some(j) => {
            let j = jid::BareJid::new(&j).map_err(|e| format!("`{j}` is not a valid JID: {e}"))?;
            let (Some(node), true) = (j.node(), cfg.hosts.iter().any(|h| h == j.domain().as_str()))
            else {
                return Err(format!("`{j}` is not an account on this server"));
            };
            match conclave_store::Accounts::user_exists(store, j.domain().as_str(), node.as_str())
                .await
            {
                Ok(true) => Some(j.as_str().to_owned()),
                Ok(false) => return Err(format!("user {j} does not exist")),
                Err(e) => return Err(e.to_string()),
            }
        }
        None => None,
    };
    let now = xmpp_core::time::now_unix();
    let c = invites::create(
        store,
        cfg,
        &host,
        InviteKind::Account,
        user.as_deref(),
        inviter.as_deref(),
        now,
        ttl,
    )
    .await
    .map_err(|e| match e {
        CreateError::BadUsername => "that username is not allowed".to_owned(),
        CreateError::Taken => "that account already exists".to_owned(),
        CreateError::Failed => "the invitation could not be stored".to_owned(),
    })?;
    if let Some(url) = &c.landing_url {
        println!("{url}");
    }
    println!("{}", c.uri);
    println!("expires {}", xmpp_core::time::datetime(c.expires));
    Ok(())
}

async fn revoke(store: &conclave_store::SqliteStore, arg: &str) -> Result<(), String> {
    let arg = arg.trim();
    // A whole URL or URI: its token.
    let tail = arg.rsplit(['/', '=']).next().unwrap_or(arg);
    let token = invite::uri_token(arg).unwrap_or(tail);
    let prefix = if invite::is_token(token) {
        invite::token_hash(token)
    } else if arg.len() == invite::ID_LEN && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..arg.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&arg[i..i + 2], 16).ok())
            .collect()
    } else {
        return Err("give the invitation's token or the id `conclave invite list` shows".into());
    };
    match store.revoke_invites(&prefix).await {
        Ok(0) => Err("no such invitation (used, expired or revoked already?)".into()),
        Ok(n) => {
            println!("revoked {n} invitation(s)");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

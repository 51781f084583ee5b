//! `conclave user ...`: account management against the same store the
//! server uses (SQLite in WAL mode lets both work at once).

use std::io::{BufRead, IsTerminal};

use futures_util::{StreamExt, stream};

use clap::Subcommand;
use conclave_server::Config;
use conclave_server::modules::register::keys_for;
use conclave_store::{Accounts, StoreError};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from standard input (or
    /// prompted for on a terminal), never from the command line.
    Add { jid: String },
    /// Create many accounts: one `user@host password` per line on standard
    /// input (the password is the rest of the line). Every line and password
    /// is checked before anything is written; keys are derived on all cores,
    /// so thousands of benchmark accounts take seconds, not a process each.
    AddBulk,
    /// Set a new password (read like `add`).
    Passwd { jid: String },
    /// Delete an account and everything stored for it.
    Remove { jid: String },
    /// List accounts, one bare JID per line.
    List {
        /// Only this virtual host.
        #[arg(long)]
        host: Option<String>,
    },
}

fn split(cfg: &Config, jid: &str) -> Result<(String, String), String> {
    let j = jid::BareJid::new(jid).map_err(|e| format!("`{jid}` is not a valid JID: {e}"))?;
    let Some(node) = j.node() else {
        return Err(format!("`{jid}` has no user part; write it as user@host"));
    };
    let host = j.domain().as_str().to_owned();
    if !cfg.hosts.contains(&host) {
        return Err(format!(
            "host `{host}` is not configured; configured hosts: {}",
            cfg.hosts.join(", ")
        ));
    }
    Ok((node.as_str().to_owned(), host))
}

fn read_password() -> Result<String, String> {
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw)
}

pub async fn run(cfg: &Config, cmd: UserCommand) -> Result<(), String> {
    let store = crate::open_store(cfg).await?;
    let r = match cmd {
        UserCommand::Add { jid } => {
            let (user, host) = split(cfg, &jid)?;
            let keys = keys_for(read_password()?, cfg.auth.scram_iterations)
                .await
                .ok_or("the password cannot be used (it fails SASLprep)")?;
            match store.create_user(&host, &user, &keys).await {
                Ok(()) => {
                    println!("created {user}@{host}");
                    Ok(())
                }
                Err(StoreError::Conflict) => Err(format!("user {user}@{host} already exists")),
                Err(e) => Err(e.to_string()),
            }
        }
        UserCommand::AddBulk => add_bulk(cfg, &store).await,
        UserCommand::Passwd { jid } => {
            let (user, host) = split(cfg, &jid)?;
            let keys = keys_for(read_password()?, cfg.auth.scram_iterations)
                .await
                .ok_or("the password cannot be used (it fails SASLprep)")?;
            match store.set_keys(&host, &user, &keys).await {
                Ok(()) => {
                    println!("password changed for {user}@{host}");
                    Ok(())
                }
                Err(StoreError::NotFound) => Err(format!("user {user}@{host} does not exist")),
                Err(e) => Err(e.to_string()),
            }
        }
        UserCommand::Remove { jid } => {
            let (user, host) = split(cfg, &jid)?;
            match store.delete_user(&host, &user).await {
                Ok(()) => {
                    println!("removed {user}@{host}");
                    Ok(())
                }
                Err(StoreError::NotFound) => Err(format!("user {user}@{host} does not exist")),
                Err(e) => Err(e.to_string()),
            }
        }
        UserCommand::List { host } => match store.list_users(host.as_deref()).await {
            Ok(users) => {
                for (h, u) in users {
                    println!("{u}@{h}");
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    store.close().await;
    r
}

/// Reads `user@host password` lines into (user, host, password).
fn parse_bulk(cfg: &Config, input: impl BufRead) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read standard input: {e}"))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((jid, pw)) = line.split_once(' ') else {
            return Err(format!("line {}: expected `user@host password`", i + 1));
        };
        if pw.is_empty() {
            return Err(format!("line {}: the password is empty", i + 1));
        }
        let (user, host) = split(cfg, jid).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push((user, host, pw.to_owned()));
    }
    Ok(out)
}

async fn add_bulk(cfg: &Config, store: &impl Accounts) -> Result<(), String> {
    let users = parse_bulk(cfg, std::io::stdin().lock())?;
    let iterations = cfg.auth.scram_iterations;
    // PBKDF2 dominates (two derivations per account): keep every core busy.
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let derived: Vec<_> = stream::iter(users)
        .map(|(user, host, pw)| async move { (keys_for(pw, iterations).await, user, host) })
        .buffered(width)
        .collect()
        .await;
    if let Some((_, user, host)) = derived.iter().find(|(k, _, _)| k.is_none()) {
        return Err(format!(
            "the password of {user}@{host} cannot be used (it fails SASLprep); nothing was written"
        ));
    }
    let (mut created, mut existing) = (0usize, Vec::new());
    for (keys, user, host) in derived {
        let keys = keys.unwrap_or_default();
        match store.create_user(&host, &user, &keys).await {
            Ok(()) => created += 1,
            Err(StoreError::Conflict) => existing.push(format!("{user}@{host}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    println!("created {created} accounts");
    if existing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} accounts already existed and were left unchanged: {}",
            existing.len(),
            existing.join(", ")
        ))
    }
}

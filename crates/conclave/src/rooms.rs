//! `conclave room ...`: persistent group chat rooms, on the same store the
//! server uses. A running server picks up a created room on first use; a
//! room destroyed here while it has occupants stays in memory until they
//! leave or the server restarts (destroy it from a client to tell them).

use clap::Subcommand;
use conclave_server::Config;
use conclave_store::{Rooms, StoredRoom};

#[derive(Subcommand)]
pub enum RoomCommand {
    /// List persistent rooms, one JID per line.
    List,
    /// Create a persistent room owned by a user.
    Create {
        /// The room's JID, e.g. team@conference.localhost.
        jid: String,
        /// The owner's bare JID.
        #[arg(long)]
        owner: String,
        /// A display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Delete a persistent room and its configuration.
    Destroy { jid: String },
}

fn room_jid(cfg: &Config, jid: &str) -> Result<String, String> {
    let j = jid::BareJid::new(jid).map_err(|e| format!("`{jid}` is not a valid JID: {e}"))?;
    if j.node().is_none() {
        return Err(format!(
            "`{jid}` has no room name; write it as name@conference.<host>"
        ));
    }
    let domain = j.domain().as_str();
    if !cfg
        .hosts
        .iter()
        .any(|h| domain == format!("conference.{h}"))
    {
        return Err(format!(
            "`{domain}` is not a group chat service here (conference.<host> for a configured host)"
        ));
    }
    Ok(j.as_str().to_owned())
}

pub async fn run(cfg: &Config, cmd: RoomCommand) -> Result<(), String> {
    let store = crate::open_store(cfg).await?;
    let r = match cmd {
        RoomCommand::List => match store.list_rooms().await {
            Ok(rooms) => {
                for r in rooms {
                    println!("{r}");
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        RoomCommand::Create { jid, owner, name } => {
            let jid = room_jid(cfg, &jid)?;
            let owner = jid::BareJid::new(&owner)
                .ok()
                .filter(|o| o.node().is_some())
                .ok_or_else(|| format!("`{owner}` is not a user's JID"))?;
            match store.room(&jid).await {
                Ok(Some(_)) => Err(format!("room {jid} already exists")),
                Ok(None) => {
                    let mut secret = vec![0u8; 32];
                    aws_lc_rs::rand::fill(&mut secret)
                        .map_err(|_| "no randomness available".to_owned())?;
                    let room = StoredRoom {
                        jid: jid.clone(),
                        config: vec![("name".into(), name), ("persistent".into(), "1".into())],
                        affiliations: vec![(owner.as_str().to_owned(), "owner".into())],
                        subject: None,
                        secret,
                    };
                    store.save_room(&room).await.map_err(|e| e.to_string())?;
                    println!("created {jid}");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        RoomCommand::Destroy { jid } => {
            let jid = room_jid(cfg, &jid)?;
            match store.room(&jid).await {
                Ok(Some(_)) => {
                    store.delete_room(&jid).await.map_err(|e| e.to_string())?;
                    println!("destroyed {jid}");
                    Ok(())
                }
                Ok(None) => Err(format!("room {jid} does not exist")),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    store.close().await;
    r
}

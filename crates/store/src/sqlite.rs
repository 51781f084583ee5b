//! The embedded default: one SQLite file in WAL mode, so that a crash or a
//! SIGKILL leaves every committed transaction intact and the CLI can work
//! on the same file while the server runs.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
  host TEXT NOT NULL, username TEXT NOT NULL, created INTEGER NOT NULL,
  PRIMARY KEY (host, username)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scram (
  host TEXT NOT NULL, username TEXT NOT NULL, mechanism TEXT NOT NULL,
  salt BLOB NOT NULL, iterations INTEGER NOT NULL, stored_key BLOB NOT NULL, server_key BLOB NOT NULL,
  PRIMARY KEY (host, username, mechanism)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roster (
  owner TEXT NOT NULL, contact TEXT NOT NULL, name TEXT, subscription TEXT NOT NULL,
  ask INTEGER NOT NULL DEFAULT 0, groups TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (owner, contact)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roster_version (owner TEXT PRIMARY KEY, ver INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscription_requests (
  owner TEXT NOT NULL, contact TEXT NOT NULL, PRIMARY KEY (owner, contact)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offline (
  id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, stamp INTEGER NOT NULL, stanza TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS offline_owner ON offline (owner, id);
CREATE TABLE IF NOT EXISTS vcards (owner TEXT PRIMARY KEY, vcard TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push (owner TEXT NOT NULL, jid TEXT NOT NULL, node TEXT NOT NULL, options TEXT NOT NULL, PRIMARY KEY (owner, jid, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocklist (owner TEXT NOT NULL, jid TEXT NOT NULL, PRIMARY KEY (owner, jid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
  jid TEXT PRIMARY KEY, config TEXT NOT NULL, subject TEXT, subject_nick TEXT, secret BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_affiliations (
  room TEXT NOT NULL, jid TEXT NOT NULL, affiliation TEXT NOT NULL, PRIMARY KEY (room, jid)) WITHOUT ROWID;
"#;

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The reads a login makes, without sqlx's thread hand-off.
    pub(crate) readers: std::sync::Arc<crate::sqlite_read::Readers>,
}

/// Connection counts, from the operator's `[storage]` settings.
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    /// sqlx's pool, which runs every write and the reads not on the
    /// login path. SQLite has one writer at a time, so more connections
    /// help only reads that wait behind a write.
    pub connections: u32,
    /// Read-only connections kept for the login reads (`sqlite_read`);
    /// 0 keeps one per core plus one, as many as can read at once.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            connections: 4,
            read_connections: 0,
        }
    }
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    pub async fn open_with(path: &Path, o: SqliteOptions) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a process crash loses nothing committed;
            // only a power cut may lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(o.connections.max(1))
            .connect_with(opts)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        sqlx::raw_sql(crate::sqlite_archive::SCHEMA)
            .execute(&pool)
            .await?;
        crate::sqlite_archive::upgrade(&pool).await?;
        sqlx::raw_sql(crate::sqlite_uploads::SCHEMA)
            .execute(&pool)
            .await?;
        sqlx::raw_sql(crate::sqlite_pubsub::SCHEMA)
            .execute(&pool)
            .await?;
        sqlx::raw_sql(crate::sqlite_invites::SCHEMA)
            .execute(&pool)
            .await?;
        let keep = match o.read_connections {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()) + 1,
            n => n,
        };
        let readers = std::sync::Arc::new(crate::sqlite_read::Readers::new(path, keep));
        Ok(SqliteStore { pool, readers })
    }

    /// A write transaction that takes SQLite's write lock at once. A
    /// deferred one that reads first and writes later fails outright
    /// (SQLITE_BUSY, no waiting) when another writer committed in between;
    /// taking the lock up front makes writers queue on the busy timeout.
    pub(crate) async fn write_tx(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Checkpoints the WAL into the main file and closes every connection.
    pub async fn close(&self) {
        // Readers first: the checkpoint empties the log only when no other
        // connection could be reading it.
        self.readers.close();
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    async fn bump_version(tx: &mut sqlx::SqliteConnection, owner: &str) -> Result<u64> {
        let row = sqlx::query(
            "INSERT INTO roster_version (owner, ver) VALUES (?1, 1)
             ON CONFLICT(owner) DO UPDATE SET ver = ver + 1 RETURNING ver",
        )
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        Ok(row.get::<i64, _>(0) as u64)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn write_keys(
    tx: &mut sqlx::SqliteConnection,
    host: &str,
    user: &str,
    keys: &[ScramRecord],
) -> Result<()> {
    sqlx::query("DELETE FROM scram WHERE host = ?1 AND username = ?2")
        .bind(host)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for k in keys {
        sqlx::query(
            "INSERT INTO scram (host, username, mechanism, salt, iterations, stored_key, server_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(host)
        .bind(user)
        .bind(&k.mechanism)
        .bind(&k.salt)
        .bind(k.iterations as i64)
        .bind(&k.stored_key)
        .bind(&k.server_key)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Inserts an account with its keys; `Conflict` if it exists.
pub(crate) async fn insert_user(
    tx: &mut sqlx::SqliteConnection,
    host: &str,
    user: &str,
    keys: &[ScramRecord],
) -> Result<()> {
    let r = sqlx::query("INSERT INTO users (host, username, created) VALUES (?1, ?2, ?3)")
        .bind(host)
        .bind(user)
        .bind(now())
        .execute(&mut *tx)
        .await;
    match r {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::Conflict);
        }
        r => {
            r?;
        }
    }
    write_keys(tx, host, user, keys).await
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_user(&self, host: &str, user: &str, keys: &[ScramRecord]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        insert_user(&mut tx, host, user, keys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_keys(&self, host: &str, user: &str, keys: &[ScramRecord]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if !exists(&mut tx, host, user).await? {
            return Err(StoreError::NotFound);
        }
        write_keys(&mut tx, host, user, keys).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_exists(&self, host: &str, user: &str) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        exists(&mut conn, host, user).await
    }

    async fn scram_keys(
        &self,
        host: &str,
        user: &str,
        mechanism: &str,
    ) -> Result<Option<ScramRecord>> {
        self.readers.read(|c| {
            c.prepare_cached(
                "SELECT salt, iterations, stored_key, server_key FROM scram
                 WHERE host = ?1 AND username = ?2 AND mechanism = ?3",
            )?
            .query_row((host, user, mechanism), |r| {
                Ok(ScramRecord {
                    mechanism: mechanism.to_owned(),
                    salt: r.get(0)?,
                    iterations: r.get::<_, i64>(1)? as u32,
                    stored_key: r.get(2)?,
                    server_key: r.get(3)?,
                })
            })
            .optional()
        })
    }

    async fn delete_user(&self, host: &str, user: &str) -> Result<()> {
        let bare = format!("{user}@{host}");
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM users WHERE host = ?1 AND username = ?2")
            .bind(host)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM scram WHERE host = ?1 AND username = ?2")
            .bind(host)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        for q in [
            "DELETE FROM roster WHERE owner = ?1",
            "DELETE FROM roster_version WHERE owner = ?1",
            "DELETE FROM subscription_requests WHERE owner = ?1",
            "DELETE FROM offline WHERE owner = ?1",
            "DELETE FROM vcards WHERE owner = ?1",
            "DELETE FROM blocklist WHERE owner = ?1",
            "DELETE FROM push WHERE owner = ?1",
            "DELETE FROM pubsub_items WHERE owner = ?1",
            "DELETE FROM pubsub_nodes WHERE owner = ?1",
            "DELETE FROM private_xml WHERE owner = ?1",
            "DELETE FROM invites WHERE inviter = ?1",
        ] {
            sqlx::query(q).bind(&bare).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self, host: Option<&str>) -> Result<Vec<(String, String)>> {
        let rows = match host {
            Some(h) => {
                sqlx::query(
                    "SELECT host, username FROM users WHERE host = ?1 ORDER BY host, username",
                )
                .bind(h)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT host, username FROM users ORDER BY host, username")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

fn roster_row(r: &sqlx::sqlite::SqliteRow) -> RosterItem {
    let groups: String = r.get(4);
    RosterItem {
        contact: r.get(0),
        name: r.get(1),
        subscription: Subscription::parse(r.get::<&str, _>(2)),
        ask: r.get::<i64, _>(3) != 0,
        groups: split_groups(&groups),
    }
}

fn split_groups(groups: &str) -> Vec<String> {
    groups
        .split('\n')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn exists(conn: &mut sqlx::SqliteConnection, host: &str, user: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM users WHERE host = ?1 AND username = ?2")
            .bind(host)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

#[async_trait]
impl Rosters for SqliteStore {
    async fn roster(&self, owner: &str) -> Result<(u64, Vec<RosterItem>)> {
        // One statement, so that the version matches the items; every login
        // fetches its roster, so it is a synchronous read (`sqlite_read`).
        // The outer row is there when the roster is empty, to carry `ver`.
        self.readers.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT r.contact, r.name, r.subscription, r.ask, r.groups, v.ver \
                 FROM (SELECT ?1 AS owner) o \
                 LEFT JOIN roster_version v ON v.owner = o.owner \
                 LEFT JOIN roster r ON r.owner = o.owner \
                 ORDER BY r.contact",
            )?;
            let mut rows = st.query([owner])?;
            let mut ver = 0;
            let mut items = Vec::new();
            while let Some(r) = rows.next()? {
                ver = r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64;
                let Some(contact) = r.get::<_, Option<String>>(0)? else {
                    continue;
                };
                let groups: String = r.get(4)?;
                items.push(RosterItem {
                    contact,
                    name: r.get(1)?,
                    subscription: Subscription::parse(&r.get::<_, String>(2)?),
                    ask: r.get::<_, i64>(3)? != 0,
                    groups: split_groups(&groups),
                });
            }
            Ok((ver, items))
        })
    }

    async fn roster_item(&self, owner: &str, contact: &str) -> Result<Option<RosterItem>> {
        let row = sqlx::query(
            "SELECT contact, name, subscription, ask, groups FROM roster WHERE owner = ?1 AND contact = ?2",
        )
        .bind(owner)
        .bind(contact)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(roster_row))
    }

    async fn put_item(&self, owner: &str, item: &RosterItem) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO roster (owner, contact, name, subscription, ask, groups) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(owner, contact) DO UPDATE SET name = ?3, subscription = ?4, ask = ?5, groups = ?6",
        )
        .bind(owner)
        .bind(&item.contact)
        .bind(&item.name)
        .bind(item.subscription.as_str())
        .bind(item.ask as i64)
        .bind(item.groups.join("\n"))
        .execute(&mut *tx)
        .await?;
        let ver = Self::bump_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(ver)
    }

    async fn remove_item(&self, owner: &str, contact: &str) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM roster WHERE owner = ?1 AND contact = ?2")
            .bind(owner)
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        let ver = Self::bump_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(ver)
    }

    async fn pending_in(&self, owner: &str) -> Result<Vec<String>> {
        self.readers.read(|c| {
            c.prepare_cached("SELECT contact FROM subscription_requests WHERE owner = ?1")?
                .query_map([owner], |r| r.get(0))?
                .collect()
        })
    }

    async fn set_pending_in(&self, owner: &str, contact: &str, pending: bool) -> Result<()> {
        let q = if pending {
            "INSERT OR IGNORE INTO subscription_requests (owner, contact) VALUES (?1, ?2)"
        } else {
            "DELETE FROM subscription_requests WHERE owner = ?1 AND contact = ?2"
        };
        sqlx::query(q)
            .bind(owner)
            .bind(contact)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Offline for SqliteStore {
    async fn push(&self, owner: &str, stamp: u64, stanza: &str, limit: usize) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM offline WHERE owner = ?1")
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if count as usize >= limit {
            return Err(StoreError::Quota);
        }
        sqlx::query("INSERT INTO offline (owner, stamp, stanza) VALUES (?1, ?2, ?3)")
            .bind(owner)
            .bind(stamp as i64)
            .bind(stanza)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<OfflineMessage>> {
        let rows =
            sqlx::query("SELECT id, stamp, stanza FROM offline WHERE owner = ?1 ORDER BY id")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| OfflineMessage {
                id: r.get(0),
                stamp: r.get::<i64, _>(1) as u64,
                stanza: r.get(2),
            })
            .collect())
    }

    async fn take(&self, owner: &str) -> Result<Vec<OfflineMessage>> {
        // Most logins find nothing: a synchronous read says so, without
        // the write lock and the three trips to sqlx's thread that BEGIN
        // IMMEDIATE, the DELETE and COMMIT cost.
        let any = self.readers.read(|c| {
            c.prepare_cached("SELECT 1 FROM offline WHERE owner = ?1 LIMIT 1")?
                .exists([owner])
        })?;
        if !any {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query("DELETE FROM offline WHERE owner = ?1 RETURNING id, stamp, stanza")
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut msgs: Vec<OfflineMessage> = rows
            .into_iter()
            .map(|r| OfflineMessage {
                id: r.get(0),
                stamp: r.get::<i64, _>(1) as u64,
                stanza: r.get(2),
            })
            .collect();
        msgs.sort_by_key(|m| m.id);
        Ok(msgs)
    }

    async fn expire_offline(&self, before: u64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM offline WHERE stamp < ?1")
            .bind(before as i64)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn delete_upto(&self, owner: &str, max_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM offline WHERE owner = ?1 AND id <= ?2")
            .bind(owner)
            .bind(max_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remove_offline(&self, owner: &str, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for id in ids {
            sqlx::query("DELETE FROM offline WHERE owner = ?1 AND id = ?2")
                .bind(owner)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Vcards for SqliteStore {
    async fn vcard(&self, owner: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT vcard FROM vcards WHERE owner = ?1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0)))
    }

    async fn set_vcard(&self, owner: &str, xml: &str) -> Result<()> {
        sqlx::query("INSERT INTO vcards (owner, vcard) VALUES (?1, ?2) ON CONFLICT(owner) DO UPDATE SET vcard = ?2")
            .bind(owner)
            .bind(xml)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Room and node configuration as `key=value` lines; values are escaped so that a
/// newline in a room description cannot forge another key.
pub(crate) fn encode_config(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('\\', "\\\\").replace('\n', "\\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn decode_config(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let mut out = String::with_capacity(v.len());
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(o) => out.push(o),
                        None => {}
                    }
                } else {
                    out.push(c);
                }
            }
            (k.to_owned(), out)
        })
        .collect()
}

#[async_trait]
impl Rooms for SqliteStore {
    async fn room(&self, jid: &str) -> Result<Option<StoredRoom>> {
        let Some(row) =
            sqlx::query("SELECT config, subject, subject_nick, secret FROM rooms WHERE jid = ?1")
                .bind(jid)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let affs = sqlx::query(
            "SELECT jid, affiliation FROM room_affiliations WHERE room = ?1 ORDER BY jid",
        )
        .bind(jid)
        .fetch_all(&self.pool)
        .await?;
        let subject: Option<String> = row.get(1);
        let nick: Option<String> = row.get(2);
        Ok(Some(StoredRoom {
            jid: jid.to_owned(),
            config: decode_config(row.get::<&str, _>(0)),
            affiliations: affs.into_iter().map(|r| (r.get(0), r.get(1))).collect(),
            subject: subject.map(|s| (s, nick.unwrap_or_default())),
            secret: row.get(3),
        }))
    }

    async fn save_room(&self, room: &StoredRoom) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO rooms (jid, config, subject, subject_nick, secret) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(jid) DO UPDATE SET config = ?2, subject = ?3, subject_nick = ?4, secret = ?5",
        )
        .bind(&room.jid)
        .bind(encode_config(&room.config))
        .bind(room.subject.as_ref().map(|s| &s.0))
        .bind(room.subject.as_ref().map(|s| &s.1))
        .bind(&room.secret)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM room_affiliations WHERE room = ?1")
            .bind(&room.jid)
            .execute(&mut *tx)
            .await?;
        for (j, a) in &room.affiliations {
            sqlx::query(
                "INSERT INTO room_affiliations (room, jid, affiliation) VALUES (?1, ?2, ?3)",
            )
            .bind(&room.jid)
            .bind(j)
            .bind(a)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_room(&self, jid: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM rooms WHERE jid = ?1")
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM room_affiliations WHERE room = ?1")
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_rooms(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT jid FROM rooms ORDER BY jid")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl PushRegistrations for SqliteStore {
    async fn push_registrations(&self, owner: &str) -> Result<Vec<(String, String, String)>> {
        let rows =
            sqlx::query("SELECT jid, node, options FROM push WHERE owner = ?1 ORDER BY jid, node")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    async fn add_push(&self, owner: &str, jid: &str, node: &str, options: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO push (owner, jid, node, options) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(owner, jid, node) DO UPDATE SET options = ?4",
        )
        .bind(owner)
        .bind(jid)
        .bind(node)
        .bind(options)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_push(&self, owner: &str, jid: &str, node: Option<&str>) -> Result<()> {
        match node {
            Some(n) => {
                sqlx::query("DELETE FROM push WHERE owner = ?1 AND jid = ?2 AND node = ?3")
                    .bind(owner)
                    .bind(jid)
                    .bind(n)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM push WHERE owner = ?1 AND jid = ?2")
                    .bind(owner)
                    .bind(jid)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(())
    }
}

#[async_trait]
impl Blocklists for SqliteStore {
    async fn blocklist(&self, owner: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT jid FROM blocklist WHERE owner = ?1 ORDER BY jid")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn block(&self, owner: &str, jids: &[String]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for j in jids {
            sqlx::query("INSERT OR IGNORE INTO blocklist (owner, jid) VALUES (?1, ?2)")
                .bind(owner)
                .bind(j)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unblock(&self, owner: &str, jids: &[String]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if jids.is_empty() {
            sqlx::query("DELETE FROM blocklist WHERE owner = ?1")
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        for j in jids {
            sqlx::query("DELETE FROM blocklist WHERE owner = ?1 AND jid = ?2")
                .bind(owner)
                .bind(j)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn key() -> ScramRecord {
        ScramRecord {
            mechanism: "SCRAM-SHA-256".into(),
            salt: vec![1, 2],
            iterations: 4096,
            stored_key: vec![3; 32],
            server_key: vec![4; 32],
        }
    }

    /// A fresh store in a directory of its own; remove the directory after.
    pub(crate) async fn store() -> (SqliteStore, std::path::PathBuf) {
        // A counter as well as the clock: tests run in parallel threads.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "conclave-store-{}-{}-{n}",
            std::process::id(),
            now_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (
            SqliteStore::open(&dir.join("db.sqlite")).await.unwrap(),
            dir,
        )
    }

    fn now_nanos() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[tokio::test]
    async fn accounts_round_trip() {
        let (s, dir) = store().await;
        s.create_user("localhost", "alice", &[key()]).await.unwrap();
        assert!(matches!(
            s.create_user("localhost", "alice", &[key()]).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            s.scram_keys("localhost", "alice", "SCRAM-SHA-256")
                .await
                .unwrap(),
            Some(key())
        );
        assert_eq!(
            s.scram_keys("localhost", "alice", "SCRAM-SHA-1")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.list_users(None).await.unwrap(),
            vec![("localhost".into(), "alice".into())]
        );
        s.set_vcard("alice@localhost", "<vCard/>").await.unwrap();
        s.delete_user("localhost", "alice").await.unwrap();
        assert!(!s.user_exists("localhost", "alice").await.unwrap());
        assert_eq!(s.vcard("alice@localhost").await.unwrap(), None);
        assert!(matches!(
            s.delete_user("localhost", "alice").await,
            Err(StoreError::NotFound)
        ));
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn rooms_round_trip() {
        let (s, dir) = store().await;
        let room = StoredRoom {
            jid: "lobby@conference.localhost".into(),
            config: vec![
                ("name".into(), "Lobby".into()),
                ("description".into(), "a\nb=c \\ d".into()),
            ],
            affiliations: vec![("alice@localhost".into(), "owner".into())],
            subject: Some(("Welcome".into(), "alice".into())),
            secret: vec![1, 2, 3],
        };
        s.save_room(&room).await.unwrap();
        assert_eq!(s.room(&room.jid).await.unwrap(), Some(room.clone()));
        assert_eq!(s.list_rooms().await.unwrap(), vec![room.jid.clone()]);
        s.delete_room(&room.jid).await.unwrap();
        assert_eq!(s.room(&room.jid).await.unwrap(), None);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn roster_versions_and_offline_quota() {
        let (s, dir) = store().await;
        let item = RosterItem {
            contact: "bob@localhost".into(),
            name: Some("Bob".into()),
            subscription: Subscription::To,
            ask: false,
            groups: vec!["Friends".into(), "Work".into()],
        };
        assert_eq!(s.put_item("alice@localhost", &item).await.unwrap(), 1);
        let (ver, items) = s.roster("alice@localhost").await.unwrap();
        assert_eq!((ver, items), (1, vec![item]));
        assert_eq!(
            s.remove_item("alice@localhost", "bob@localhost")
                .await
                .unwrap(),
            2
        );
        // Emptied, the roster keeps its version; an unknown owner has none.
        assert_eq!(s.roster("alice@localhost").await.unwrap(), (2, vec![]));
        assert_eq!(s.roster("nobody@localhost").await.unwrap(), (0, vec![]));
        // Written through sqlx, read on the synchronous readers.
        let carol = "carol@localhost";
        s.set_pending_in("alice@localhost", carol, true)
            .await
            .unwrap();
        assert_eq!(s.pending_in("alice@localhost").await.unwrap(), vec![carol]);
        s.set_pending_in("alice@localhost", carol, false)
            .await
            .unwrap();
        assert!(s.pending_in("alice@localhost").await.unwrap().is_empty());
        s.push("bob@localhost", 1, "<message/>", 2).await.unwrap();
        s.push("bob@localhost", 2, "<message/>", 2).await.unwrap();
        assert!(matches!(
            s.push("bob@localhost", 3, "<message/>", 2).await,
            Err(StoreError::Quota)
        ));
        let msgs = s.list("bob@localhost").await.unwrap();
        assert_eq!(msgs.len(), 2);
        s.delete_upto("bob@localhost", msgs[0].id).await.unwrap();
        let taken = s.take("bob@localhost").await.unwrap();
        assert_eq!(taken.iter().map(|m| m.stamp).collect::<Vec<_>>(), vec![2]);
        assert!(s.take("bob@localhost").await.unwrap().is_empty());
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

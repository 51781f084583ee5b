//! Storage behind traits. Services see only these traits; SQLite is the
//! embedded default and PostgreSQL is meant to slot in behind the same ones.
//!
//! Owners and contacts are bare JIDs as strings, already normalised by the
//! caller: the store never interprets addresses.

mod sqlite;
mod sqlite_archive;
mod sqlite_invites;
mod sqlite_pubsub;
mod sqlite_read;
mod sqlite_uploads;

use async_trait::async_trait;

pub use sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("not found")]
    NotFound,
    #[error("quota exceeded")]
    Quota,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// From the synchronous readers (`sqlite_read`).
    #[error("database read: {0}")]
    Read(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A user's SCRAM keys for one hash. Never the password, never a
/// password equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramRecord {
    /// `SCRAM-SHA-1` or `SCRAM-SHA-256`.
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[async_trait]
pub trait Accounts: Send + Sync {
    /// Fails with `Conflict` if the account exists.
    async fn create_user(&self, host: &str, user: &str, keys: &[ScramRecord]) -> Result<()>;
    async fn set_keys(&self, host: &str, user: &str, keys: &[ScramRecord]) -> Result<()>;
    async fn user_exists(&self, host: &str, user: &str) -> Result<bool>;
    async fn scram_keys(
        &self,
        host: &str,
        user: &str,
        mechanism: &str,
    ) -> Result<Option<ScramRecord>>;
    /// Removes the account and everything kept for it.
    async fn delete_user(&self, host: &str, user: &str) -> Result<()>;
    async fn list_users(&self, host: Option<&str>) -> Result<Vec<(String, String)>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Subscription {
        match s {
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => Subscription::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub contact: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// An outbound subscription request awaits the contact's answer.
    pub ask: bool,
    pub groups: Vec<String>,
}

#[async_trait]
pub trait Rosters: Send + Sync {
    /// The roster and its version.
    async fn roster(&self, owner: &str) -> Result<(u64, Vec<RosterItem>)>;
    /// Writes (inserts or replaces) an item and returns the new version.
    async fn put_item(&self, owner: &str, item: &RosterItem) -> Result<u64>;
    /// Deletes an item and returns the new version.
    async fn remove_item(&self, owner: &str, contact: &str) -> Result<u64>;
    /// One item of the roster, without loading the rest.
    async fn roster_item(&self, owner: &str, contact: &str) -> Result<Option<RosterItem>>;
    /// Inbound subscription requests not yet answered (RFC 6121 §3.1.3:
    /// they are redelivered at every login until answered).
    async fn pending_in(&self, owner: &str) -> Result<Vec<String>>;
    async fn set_pending_in(&self, owner: &str, contact: &str, pending: bool) -> Result<()>;
}

#[derive(Debug, Clone)]
pub struct OfflineMessage {
    pub id: i64,
    pub stamp: u64,
    pub stanza: String,
}

#[async_trait]
pub trait Offline: Send + Sync {
    /// Stores a message durably; fails with `Quota` past `limit` messages.
    async fn push(&self, owner: &str, stamp: u64, stanza: &str, limit: usize) -> Result<()>;
    async fn list(&self, owner: &str) -> Result<Vec<OfflineMessage>>;
    /// Reads and deletes in one transaction, so that two deliveries racing
    /// (a login and a message arriving for it) hand out each message once.
    async fn take(&self, owner: &str) -> Result<Vec<OfflineMessage>>;
    /// Deleted only after delivery, so a crash between the two duplicates
    /// rather than loses.
    async fn delete_upto(&self, owner: &str, max_id: i64) -> Result<()>;
    /// Deletes offline messages stored before `before` (Unix seconds).
    async fn expire_offline(&self, before: u64) -> Result<u64>;
    /// Deletes the given messages of `owner` (a retracted chain).
    async fn remove_offline(&self, owner: &str, ids: &[i64]) -> Result<()>;
}

#[async_trait]
pub trait Vcards: Send + Sync {
    async fn vcard(&self, owner: &str) -> Result<Option<String>>;
    async fn set_vcard(&self, owner: &str, xml: &str) -> Result<()>;
}

/// A persistent group chat room: its configuration (an opaque list of
/// key/value pairs the MUC module owns), affiliations and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRoom {
    pub jid: String,
    pub config: Vec<(String, String)>,
    /// Bare JID → affiliation name.
    pub affiliations: Vec<(String, String)>,
    pub subject: Option<(String, String)>,
    /// Key for occupant ids (XEP-0421), stable across restarts.
    pub secret: Vec<u8>,
}

#[async_trait]
pub trait Rooms: Send + Sync {
    async fn room(&self, jid: &str) -> Result<Option<StoredRoom>>;
    async fn save_room(&self, room: &StoredRoom) -> Result<()>;
    async fn delete_room(&self, jid: &str) -> Result<()>;
    async fn list_rooms(&self) -> Result<Vec<String>>;
}

/// Where an upload slot is in its life. A slot takes exactly one PUT: the
/// `Pending` → `Uploading` step is the atomic claim that makes a second
/// PUT a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Handed out; no PUT has begun.
    Pending,
    /// A PUT is streaming the file in.
    Uploading,
    /// The file is complete and served.
    Stored,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Pending => "pending",
            UploadState::Uploading => "uploading",
            UploadState::Stored => "stored",
        }
    }

    pub fn parse(s: &str) -> UploadState {
        match s {
            "uploading" => UploadState::Uploading,
            "stored" => UploadState::Stored,
            _ => UploadState::Pending,
        }
    }
}

/// One XEP-0363 upload slot and, once its PUT completes, the file behind
/// it. The file's name on disk is the slot id, so nothing the client chose
/// ever becomes a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Random, unguessable id: a URL path segment and the name on disk.
    pub slot: String,
    /// Bare JID of the uploader, whose quota the file counts against.
    pub owner: String,
    /// The sanitised file name, the last URL path segment.
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    /// SHA-256 of the PUT token; the token itself is never stored.
    pub token_hash: Vec<u8>,
    /// Unix time the slot was handed out; expiry counts from here.
    pub created: u64,
    /// The PUT must begin before this Unix time.
    pub put_deadline: u64,
    pub state: UploadState,
}

#[async_trait]
pub trait Uploads: Send + Sync {
    /// Records a new slot, unless the owner's stored files, uploads in
    /// progress and slots still open at `now`, with this one added, would
    /// exceed `quota` bytes: then `Quota`, and nothing is written. One
    /// statement, so two requests at once cannot both squeeze in.
    async fn create_slot(&self, upload: &Upload, quota: u64, now: u64) -> Result<()>;
    /// Everything that counts against the owner's quota at `now`.
    async fn owner_uploads(&self, owner: &str, now: u64) -> Result<Vec<Upload>>;
    async fn upload(&self, slot: &str) -> Result<Option<Upload>>;
    /// Claims the slot for a PUT: `Pending` → `Uploading`, only if it is
    /// pending and its deadline is after `now`. `false`: someone else has
    /// it, or had it, or it is too late.
    async fn begin_put(&self, slot: &str, now: u64) -> Result<bool>;
    /// Ends a claimed PUT: `Stored` if the file is complete, else back to
    /// `Pending` so the client may try again before the deadline. `false`
    /// if the slot is gone (expired meanwhile): the caller deletes the file.
    async fn end_put(&self, slot: &str, stored: bool) -> Result<bool>;
    /// Slots created at or before `created_before` (if given), and pending
    /// slots whose deadline is at or before `now`.
    async fn expired_uploads(&self, created_before: Option<u64>, now: u64) -> Result<Vec<String>>;
    async fn delete_uploads(&self, slots: &[String]) -> Result<()>;
    /// Gives every `Uploading` slot back (`Pending`). Only for startup, when
    /// no PUT can be running: a crash or kill cut those short, and the
    /// client may try again before the deadline.
    async fn reset_puts(&self) -> Result<u64>;
}

/// One archived message (XEP-0313).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    /// The archive: a user's bare JID or a room's JID.
    pub owner: String,
    /// The stanza-id (XEP-0359) the archive gave it.
    pub id: String,
    /// The other party: a bare JID, or an occupant JID in a room archive.
    pub with: String,
    /// Microseconds since the Unix epoch.
    pub stamp: i64,
    pub stanza: String,
    /// Text for full-text search; `None` for what must not be searchable
    /// (end-to-end encrypted messages carry no readable body).
    pub text: Option<String>,
    /// The ids by which a retraction or a correction names it.
    pub refs: MessageRefs,
}

/// The ids by which a retraction (XEP-0424) or a correction (XEP-0308)
/// names an archived message, and the message a correction replaces:
/// what a retraction needs to find a whole correction chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRefs {
    /// Its XEP-0359 origin-id, else its `id`.
    pub ref_id: Option<String>,
    /// Its `id` where it differs from the origin-id: XEP-0424 0.4.2 names
    /// a message by `id`, earlier versions by origin-id.
    pub alt_ref: Option<String>,
    /// The id in its XEP-0308 `<replace/>`: the message it corrects.
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ArchiveQuery {
    pub with: Option<String>,
    /// Match `with` on the bare JID only (a bare `with` filter matches
    /// every resource).
    pub with_bare: bool,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub after: Option<String>,
    pub before: Option<String>,
    /// RSM `<before/>` with no id: the last page.
    pub last_page: bool,
    pub ids: Vec<String>,
    pub fulltext: Option<String>,
    pub max: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ArchivePage {
    pub rows: Vec<ArchiveRow>,
    /// No more results beyond this page in the direction of paging.
    pub complete: bool,
    pub count: u64,
}

#[async_trait]
pub trait Archive: Send + Sync {
    /// Writes many rows in one transaction.
    async fn archive(&self, rows: &[ArchiveRow]) -> Result<()>;
    /// `Err(NotFound)` when an `after`/`before` id is not in the archive.
    async fn query(&self, owner: &str, q: &ArchiveQuery) -> Result<ArchivePage>;
    /// Preferences: (default, always, never).
    async fn archive_prefs(
        &self,
        owner: &str,
    ) -> Result<Option<(String, Vec<String>, Vec<String>)>>;
    async fn set_archive_prefs(
        &self,
        owner: &str,
        default: &str,
        always: &[String],
        never: &[String],
    ) -> Result<()>;
    /// Deletes rows older than `before` (microseconds), of one archive or of
    /// all; returns how many went.
    async fn expire_archive(&self, owner: Option<&str>, before: i64) -> Result<u64>;
    /// Replaces an archived message (a retraction's tombstone) and drops it
    /// from the search index; false if there is no such message.
    async fn replace_archived(&self, owner: &str, id: &str, stanza: &str) -> Result<bool>;
    /// The newest `max` rows of `owner`'s archive that `name` refers to
    /// (by `MessageRefs::ref_id` or `alt_ref`) or that correct the message
    /// named `name` (`MessageRefs::replaces`), newest first. The rows'
    /// `refs` are not read back: the stanza says them.
    async fn archived_by_ref(&self, owner: &str, name: &str, max: usize)
    -> Result<Vec<ArchiveRow>>;
    /// Rows archived before `MessageRefs` had every field, for the caller
    /// to derive their refs from the stanza (`set_refs`); empty once done.
    async fn rows_without_refs(&self, max: usize) -> Result<Vec<(i64, String)>>;
    /// Sets the refs of the rows `rows_without_refs` listed (by `seq`), and
    /// marks them done.
    async fn set_refs(&self, rows: &[(i64, MessageRefs)]) -> Result<()>;
}

/// XEP-0357 push registrations: where an account's app server is, with the
/// node and publish-options form the client gave.
#[async_trait]
pub trait PushRegistrations: Send + Sync {
    async fn push_registrations(&self, owner: &str) -> Result<Vec<(String, String, String)>>;
    async fn add_push(&self, owner: &str, jid: &str, node: &str, options: &str) -> Result<()>;
    /// `node: None` removes every registration with that app server.
    async fn remove_push(&self, owner: &str, jid: &str, node: Option<&str>) -> Result<()>;
}

/// XEP-0191 block lists: JIDs (full, bare or domain) per owner.
#[async_trait]
pub trait Blocklists: Send + Sync {
    async fn blocklist(&self, owner: &str) -> Result<Vec<String>>;
    async fn block(&self, owner: &str, jids: &[String]) -> Result<()>;
    /// An empty `jids` unblocks everything.
    async fn unblock(&self, owner: &str, jids: &[String]) -> Result<()>;
}

/// One node of an account's PEP service (XEP-0163): its name and its
/// configuration, an opaque list of key/value pairs the PEP module owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubsubNode {
    pub node: String,
    pub config: Vec<(String, String)>,
}

/// One published item. Items of a node are ordered by publication: the
/// newest is the one published last, and republishing an id makes it the
/// newest (XEP-0060 §13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubItem {
    pub id: String,
    /// Full JID of the session that published it.
    pub publisher: String,
    /// Unix time of publication.
    pub stamp: u64,
    /// The payload element, serialised.
    pub payload: String,
}

/// PEP nodes and items, by owner (the account's bare JID). Limits are the
/// caller's, passed in, so that a check and the write it guards are one
/// transaction.
#[async_trait]
pub trait Pubsub: Send + Sync {
    async fn node(&self, owner: &str, node: &str) -> Result<Option<PubsubNode>>;
    /// Every node of the owner, each with its newest item if it has one.
    async fn nodes(&self, owner: &str) -> Result<Vec<(PubsubNode, Option<PubsubItem>)>>;
    /// Creates a node: `Conflict` if it exists, `Quota` if the owner has
    /// `max_nodes` nodes already.
    async fn create_node(&self, owner: &str, node: &PubsubNode, max_nodes: usize) -> Result<()>;
    /// Replaces a node's configuration and keeps only its `keep` newest
    /// items; `NotFound` if there is no such node.
    async fn configure_node(&self, owner: &str, node: &PubsubNode, keep: usize) -> Result<()>;
    /// Deletes a node with its items; false if there was none.
    async fn delete_node(&self, owner: &str, node: &str) -> Result<bool>;
    /// Stores `item` as the node's newest, replacing one with the same id,
    /// and keeps only the `keep` newest. A missing node is created from
    /// `create` (`Quota` past `max_nodes`), or is `NotFound` without it.
    async fn publish_item(
        &self,
        owner: &str,
        node: &str,
        create: Option<&PubsubNode>,
        item: &PubsubItem,
        keep: usize,
        max_nodes: usize,
    ) -> Result<()>;
    /// Bytes of payload the owner's items hold, leaving out the item
    /// `except` (node, id) names: the one a publish would replace.
    async fn pubsub_bytes(&self, owner: &str, except: (&str, &str)) -> Result<u64>;
    /// Deletes one item; false if the node had none with that id.
    async fn retract_item(&self, owner: &str, node: &str, id: &str) -> Result<bool>;
    /// Deletes every item of a node.
    async fn purge_node(&self, owner: &str, node: &str) -> Result<()>;
    /// Items, newest first: the `max` newest, or of those with the given
    /// ids (when `ids` is not empty) the ones that exist.
    async fn items(
        &self,
        owner: &str,
        node: &str,
        ids: &[String],
        max: usize,
    ) -> Result<Vec<PubsubItem>>;
}

/// XEP-0049 private XML storage: one serialised element per owner and key
/// (the element's name and namespace).
#[async_trait]
pub trait PrivateXml: Send + Sync {
    async fn private_xml(&self, owner: &str, key: &str) -> Result<Option<String>>;
    /// Writes every entry in one transaction; `Quota` (and nothing
    /// written) if the owner would then keep more than `max_entries` keys.
    async fn set_private_xml(
        &self,
        owner: &str,
        entries: &[(String, String)],
        max_entries: usize,
    ) -> Result<()>;
}

/// What an invitation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteKind {
    /// Creates one account (XEP-0401 `create-account`, `conclave invite
    /// create`); may fix the username.
    Account,
    /// From a user: creates an account, or, used by an existing account,
    /// a subscription; either way a mutual subscription with the inviter
    /// (XEP-0379).
    Contact,
    /// From a user who may not bring new accounts: only an existing account
    /// can use it, for a mutual subscription with the inviter.
    Subscription,
}

impl InviteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteKind::Account => "account",
            InviteKind::Contact => "contact",
            InviteKind::Subscription => "subscription",
        }
    }

    pub fn parse(s: &str) -> InviteKind {
        match s {
            "contact" => InviteKind::Contact,
            "subscription" => InviteKind::Subscription,
            _ => InviteKind::Account,
        }
    }
}

/// One unused invitation. The token itself is never stored: only its
/// SHA-256, which is also the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub token_hash: Vec<u8>,
    pub host: String,
    pub kind: InviteKind,
    /// The only localpart the invite may register (nodeprepped).
    pub username: Option<String>,
    /// Bare JID of the account that made it: the new account and the
    /// inviter are subscribed to each other. `None` for an invite from the
    /// operator's CLI.
    pub inviter: Option<String>,
    /// Unix times.
    pub created: u64,
    pub expires: u64,
}

/// Invitations, single use: using one deletes it in the same transaction
/// that does what it was for.
#[async_trait]
pub trait Invites: Send + Sync {
    async fn create_invite(&self, invite: &Invite) -> Result<()>;
    /// The invite with this token hash if it is unused and expires after
    /// `now`.
    async fn invite(&self, token_hash: &[u8], now: u64) -> Result<Option<Invite>>;
    /// Unused invites, oldest first, of one host or all.
    async fn list_invites(&self, host: Option<&str>) -> Result<Vec<Invite>>;
    /// Deletes invites whose token hash begins with `hash_prefix` (a whole
    /// hash, or the listed id's bytes); how many went.
    async fn revoke_invites(&self, hash_prefix: &[u8]) -> Result<u64>;
    /// Uses an account-creating invite: in one transaction, deletes the
    /// invite if it still exists and expires after `valid_at`, and creates
    /// `user@host` with `keys`. `NotFound` (nothing created) if the invite
    /// is gone, expired, for another host or username, or creates no
    /// accounts (`Subscription`);
    /// `Conflict` (invite kept) if the account exists. Two racing uses
    /// create one account.
    async fn redeem_invite(
        &self,
        token_hash: &[u8],
        valid_at: u64,
        host: &str,
        user: &str,
        keys: &[ScramRecord],
    ) -> Result<Invite>;
    /// Uses an invite without creating anything (an existing account
    /// takes up the inviter's offer): deletes it if still valid at
    /// `valid_at`. `NotFound` otherwise.
    async fn take_invite(&self, token_hash: &[u8], valid_at: u64) -> Result<Invite>;
    /// Whether an unused invite at `now` reserves this username
    /// (XEP-0445 §5: the name stays free for the invitee).
    async fn username_reserved(&self, host: &str, user: &str, now: u64) -> Result<bool>;
    /// Deletes invites that expired at or before `now`.
    async fn expire_invites(&self, now: u64) -> Result<u64>;
}

/// Everything the XMPP services need from storage.
pub trait Store:
    Accounts
    + Rosters
    + Offline
    + Vcards
    + Rooms
    + Uploads
    + Archive
    + Blocklists
    + Pubsub
    + PrivateXml
    + PushRegistrations
    + Invites
{
}
impl<
    T: Accounts
        + Rosters
        + Offline
        + Vcards
        + Rooms
        + Uploads
        + Archive
        + Blocklists
        + Pubsub
        + PrivateXml
        + PushRegistrations
        + Invites,
> Store for T
{
}

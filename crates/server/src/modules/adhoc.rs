//! XEP-0050 ad-hoc commands at the server's domain, carrying the XEP-0133
//! administration commands for the administrators named in `admins`, and
//! XEP-0401's invitation commands (`invites`).
//!
//! Each command has at most one form. `execute` answers with the form and a
//! session id; `complete` (or `execute`) with the filled form and that id
//! runs it; `cancel` drops the session. A command that needs no input runs
//! at once. Bad input gets the XEP's error and changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use minidom::Element;
use xmpp_core::forms::{self, field};
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::modules::invites::{self, CreateError};
use crate::modules::register::{self, AccountError};
use crate::session::random_id;
use conclave_store::InviteKind;
use xmpp_core::invite;

pub const MODULE: Module = Module {
    name: "adhoc",
    features: &[ns::COMMANDS],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::COMMANDS,
        handler: handle,
    }],
    enabled: super::always,
};

/// How long a started command waits for its form.
const SESSION_TTL: Duration = Duration::from_secs(600);
/// Commands one resource may have started and not finished; starting one
/// more forgets the oldest.
const SESSIONS_PER_REQUESTER: usize = 8;
/// Longest list `get-online-users-list` returns.
const MAX_LISTED: usize = 1000;

/// Commands started (their form sent) and not yet completed or cancelled.
/// Only administrators start any, each a few at most.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    /// The full JID that started it: another resource may not finish it.
    requester: String,
    node: &'static str,
    started: Instant,
}

impl Sessions {
    fn start(&self, requester: &str, node: &'static str) -> String {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        open.retain(|_, p| now.duration_since(p.started) < SESSION_TTL);
        let mut mine: Vec<(Instant, String)> = open
            .iter()
            .filter(|(_, p)| p.requester == requester)
            .map(|(id, p)| (p.started, id.clone()))
            .collect();
        mine.sort();
        let excess = (mine.len() + 1).saturating_sub(SESSIONS_PER_REQUESTER);
        for (_, id) in mine.into_iter().take(excess) {
            open.remove(&id);
        }
        let id = random_id();
        open.insert(
            id.clone(),
            Pending {
                requester: requester.to_owned(),
                node,
                started: now,
            },
        );
        id
    }

    /// Ends session `id` if it is this requester's, for this command, and
    /// not expired.
    fn take(&self, id: &str, requester: &str, node: &str) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let ok = open.get(id).is_some_and(|p| {
            p.requester == requester && p.node == node && p.started.elapsed() < SESSION_TTL
        });
        if ok {
            open.remove(id);
        }
        ok
    }
}

/// A refused command: the stanza error, with XEP-0050's specific
/// condition when there is one.
#[derive(Debug)]
struct Failure {
    condition: &'static str,
    specific: Option<&'static str>,
    text: Option<String>,
}

impl Failure {
    fn new(condition: &'static str) -> Failure {
        Failure {
            condition,
            specific: None,
            text: None,
        }
    }

    fn bad_request(specific: &'static str) -> Failure {
        Failure {
            specific: Some(specific),
            ..Failure::new("bad-request")
        }
    }

    /// The submitted form is unusable (XEP-0050 `bad-payload`).
    fn bad_payload(text: impl Into<String>) -> Failure {
        Failure {
            text: Some(text.into()),
            ..Failure::bad_request("bad-payload")
        }
    }

    fn with_text(mut self, text: impl Into<String>) -> Failure {
        self.text = Some(text.into());
        self
    }

    fn reply(&self, iq: &Element) -> Element {
        let mut r = stanza::error_reply(iq, self.condition, self.text.as_deref());
        if let (Some(sc), Some(err)) = (self.specific, r.get_child_mut("error", ns::CLIENT)) {
            err.append_child(Element::bare(sc, ns::COMMANDS));
        }
        r
    }
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Failure {
        match e {
            AccountError::EmptyPassword | AccountError::BadPassword => {
                Failure::bad_payload(e.text())
            }
            e => Failure::new(e.condition()).with_text(e.text()),
        }
    }
}

/// What a command that ran says: a note and/or a result form.
struct Done {
    note: Option<String>,
    form: Option<Element>,
}

impl Done {
    fn note(text: impl Into<String>) -> Done {
        Done {
            note: Some(text.into()),
            form: None,
        }
    }
}

type Outcome = Result<Done, Failure>;

/// What a command does.
#[derive(Debug, Clone, Copy)]
enum Op {
    AddUser,
    DeleteUser,
    ChangePassword,
    Announce,
    OnlineUsersNum,
    OnlineUsersList,
    CreateAccountInvite,
    InviteContact,
}

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admins,
    /// Every account (not guests).
    Users,
}

struct Command {
    node: &'static str,
    name: &'static str,
    /// The one form to fill; `None` runs at once.
    form: Option<fn() -> Element>,
    op: Op,
    who: Who,
}

fn allowed(srv: &Server, s: &Session, cmd: &Command) -> bool {
    srv.is_admin(s.bare()) || (cmd.who == Who::Users && !s.anonymous)
}

/// Runs a command. `x` is the submitted form (always there for a command
/// with a form); `host` the host it was sent to.
async fn run(op: Op, srv: &Server, s: &Session, host: &str, x: Option<&Element>) -> Outcome {
    let form = || x.ok_or_else(|| Failure::bad_payload("submit the command's form"));
    match op {
        Op::AddUser => add_user(srv, s, form()?).await,
        Op::DeleteUser => delete_user(srv, s, form()?).await,
        Op::ChangePassword => change_password(srv, s, form()?).await,
        Op::Announce => announce(srv, s, host, form()?),
        Op::OnlineUsersNum => Ok(online_users(srv, false)),
        Op::OnlineUsersList => Ok(online_users(srv, true)),
        Op::CreateAccountInvite => create_account_invite(srv, s, host, form()?).await,
        Op::InviteContact => invite_contact(srv, s).await,
    }
}

const COMMANDS: &[Command] = &[
    Command {
        node: "http://jabber.org/protocol/admin#add-user",
        name: "Add a user",
        form: Some(add_user_form),
        op: Op::AddUser,
        who: Who::Admins,
    },
    Command {
        node: "http://jabber.org/protocol/admin#delete-user",
        name: "Delete users",
        form: Some(delete_user_form),
        op: Op::DeleteUser,
        who: Who::Admins,
    },
    Command {
        node: "http://jabber.org/protocol/admin#change-user-password",
        name: "Change a user's password",
        form: Some(change_password_form),
        op: Op::ChangePassword,
        who: Who::Admins,
    },
    Command {
        node: "http://jabber.org/protocol/admin#announce",
        name: "Send an announcement to all online users",
        form: Some(announce_form),
        op: Op::Announce,
        who: Who::Admins,
    },
    Command {
        node: "http://jabber.org/protocol/admin#get-online-users-num",
        name: "Get the number of online users",
        form: None,
        op: Op::OnlineUsersNum,
        who: Who::Admins,
    },
    Command {
        node: "http://jabber.org/protocol/admin#get-online-users-list",
        name: "Get the list of online users",
        form: None,
        op: Op::OnlineUsersList,
        who: Who::Admins,
    },
    Command {
        node: invite::NODE_INVITE,
        name: "Invite a contact",
        form: None,
        op: Op::InviteContact,
        who: Who::Users,
    },
    Command {
        node: invite::NODE_CREATE_ACCOUNT,
        name: "Create an account invitation",
        form: Some(create_account_form),
        op: Op::CreateAccountInvite,
        who: Who::Admins,
    },
];

fn handle<'a>(srv: &'a Server, s: &'a Session, host: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let reply = match execute(srv, s, host, &iq).await {
            Ok(command) => {
                let mut r = stanza::iq_result(&iq);
                r.append_child(command);
                r
            }
            Err(f) => f.reply(&iq),
        };
        s.send(&reply);
    })
}

async fn execute(srv: &Server, s: &Session, host: &str, iq: &Element) -> Result<Element, Failure> {
    let Some(c) = stanza::iq_payload(iq).filter(|c| c.is("command", ns::COMMANDS)) else {
        return Err(Failure::new("bad-request"));
    };
    if iq.attr("type") != Some("set") {
        return Err(Failure::new("bad-request"));
    }
    let action = c.attr("action").unwrap_or("execute");
    if !matches!(action, "execute" | "complete" | "cancel" | "next" | "prev") {
        return Err(Failure::bad_request("malformed-action"));
    }
    let Some(cmd) = COMMANDS.iter().find(|k| Some(k.node) == c.attr("node")) else {
        return Err(Failure::new("item-not-found"));
    };
    if !allowed(srv, s, cmd) {
        return Err(Failure::new("forbidden"));
    }
    // One stage each: there is nowhere to go forward or back to.
    if matches!(action, "next" | "prev") {
        return Err(Failure::bad_request("bad-action"));
    }
    let Some(id) = c.attr("sessionid") else {
        if action != "execute" {
            return Err(Failure::bad_request("bad-sessionid"));
        }
        return Ok(match cmd.form {
            Some(form) => {
                let id = srv.adhoc.start(s.full(), cmd.node);
                let mut el = command(cmd, &id, "executing");
                let mut actions =
                    Element::bare("actions", ns::COMMANDS).with("execute", "complete");
                actions.append_child(Element::bare("complete", ns::COMMANDS));
                el.append_child(actions);
                el.append_child(form());
                el
            }
            None => completed(cmd, &random_id(), run(cmd.op, srv, s, host, None).await?),
        });
    };
    if !srv.adhoc.take(id, s.full(), cmd.node) {
        return Err(Failure::bad_request("bad-sessionid"));
    }
    if action == "cancel" {
        return Ok(command(cmd, id, "canceled"));
    }
    let Some(x) = c
        .get_child("x", ns::DATA_FORMS)
        .filter(|x| x.attr("type") == Some("submit"))
    else {
        return Err(Failure::bad_payload("submit the command's form"));
    };
    Ok(completed(
        cmd,
        id,
        run(cmd.op, srv, s, host, Some(x)).await?,
    ))
}

fn command(cmd: &Command, sessionid: &str, status: &str) -> Element {
    Element::bare("command", ns::COMMANDS)
        .with("node", cmd.node)
        .with("sessionid", sessionid)
        .with("status", status)
}

fn completed(cmd: &Command, sessionid: &str, done: Done) -> Element {
    let mut el = command(cmd, sessionid, "completed");
    if let Some(n) = done.note {
        let mut note = Element::bare("note", ns::COMMANDS).with("type", "info");
        note.append_text(n);
        el.append_child(note);
    }
    if let Some(f) = done.form {
        el.append_child(f);
    }
    el
}

/// disco#items on the commands node: what this requester may run.
pub fn items(srv: &Server, s: &Session, host: &str) -> Element {
    let mut q = Element::bare("query", ns::DISCO_ITEMS).with("node", ns::COMMANDS);
    for c in COMMANDS.iter().filter(|c| allowed(srv, s, c)) {
        q.append_child(
            Element::bare("item", ns::DISCO_ITEMS)
                .with("jid", host)
                .with("node", c.node)
                .with("name", c.name),
        );
    }
    q
}

/// disco#info on the commands node or a command's node: `None` for any
/// other node, `Err` with the error condition for a non-administrator.
pub fn info(srv: &Server, s: &Session, node: &str) -> Option<Result<Element, &'static str>> {
    let (kind, name, features): (&str, &str, &[&str]) = if node == ns::COMMANDS {
        ("command-list", "Commands", &[ns::COMMANDS])
    } else {
        let cmd = COMMANDS.iter().find(|c| c.node == node)?;
        if !allowed(srv, s, cmd) {
            return Some(Err("forbidden"));
        }
        ("command-node", cmd.name, &[ns::COMMANDS, ns::DATA_FORMS])
    };
    let mut q = Element::bare("query", ns::DISCO_INFO).with("node", node);
    q.append_child(
        Element::bare("identity", ns::DISCO_INFO)
            .with("category", "automation")
            .with("type", kind)
            .with("name", name),
    );
    for f in features {
        q.append_child(Element::bare("feature", ns::DISCO_INFO).with("var", f));
    }
    Some(Ok(q))
}

// --- XEP-0133 ------------------------------------------------------------

fn required(mut f: Element) -> Element {
    f.append_child(Element::bare("required", ns::DATA_FORMS));
    f
}

fn admin_form(title: &str, instructions: &str, fields: Vec<Element>) -> Element {
    let mut x = forms::form("form", [])
        .text_child("title", ns::DATA_FORMS, title)
        .text_child("instructions", ns::DATA_FORMS, instructions);
    x.append_child(forms::form_type(ns::ADMIN));
    for f in fields {
        x.append_child(f);
    }
    x
}

/// A required field to fill, empty.
fn input(var: &str, ty: &str, label: &str) -> Element {
    required(field(var, Some(ty), Some(label), &[]))
}

const PASSWORD_LABEL: &str = "The password for this account";

fn add_user_form() -> Element {
    admin_form(
        "Add a user",
        "Fill out this form to add a user.",
        vec![
            input(
                "accountjid",
                "jid-single",
                "The Jabber ID for the account to be added",
            ),
            input("password", "text-private", PASSWORD_LABEL),
            input("password-verify", "text-private", "Retype password"),
        ],
    )
}

fn delete_user_form() -> Element {
    admin_form(
        "Delete users",
        "Fill out this form to delete users.",
        vec![input(
            "accountjids",
            "jid-multi",
            "The Jabber ID(s) to delete",
        )],
    )
}

fn change_password_form() -> Element {
    admin_form(
        "Change a user's password",
        "Fill out this form to change a user's password.",
        vec![
            input("accountjid", "jid-single", "The Jabber ID for this account"),
            input("password", "text-private", PASSWORD_LABEL),
        ],
    )
}

fn announce_form() -> Element {
    admin_form(
        "Make an announcement",
        "Fill out this form to make an announcement to all active users of this service.",
        vec![
            field("subject", Some("text-single"), Some("Subject"), &[]),
            input("announcement", "text-multi", "Announcement"),
        ],
    )
}

/// An account on one of the server's hosts (not the guest host), as
/// (user, host).
fn account(srv: &Server, text: &str) -> Result<(String, String), Failure> {
    let j = jid::BareJid::new(text.trim())
        .map_err(|_| Failure::bad_payload(format!("`{text}` is not a Jabber ID")))?;
    let Some(node) = j.node() else {
        return Err(Failure::bad_payload(format!("`{text}` has no user part")));
    };
    let host = j.domain().as_str();
    if !srv.config.hosts.iter().any(|h| h == host) {
        return Err(Failure::bad_payload(format!(
            "`{host}` is not a host of this server"
        )));
    }
    Ok((node.as_str().to_owned(), host.to_owned()))
}

async fn add_user(srv: &Server, s: &Session, x: &Element) -> Outcome {
    let (user, host) = account(srv, &forms::value(x, "accountjid").unwrap_or_default())?;
    let password = forms::value(x, "password").unwrap_or_default();
    if forms::value(x, "password-verify").is_some_and(|v| v != password) {
        return Err(Failure::bad_payload("the passwords differ"));
    }
    register::create_account(srv, &host, &user, password).await?;
    tracing::info!(admin = %s.bare(), account = %format!("{user}@{host}"), "account created by an administrator");
    Ok(Done::note(format!("Created {user}@{host}.")))
}

async fn delete_user(srv: &Server, s: &Session, x: &Element) -> Outcome {
    let mut accounts = Vec::new();
    for v in forms::values(x, "accountjids") {
        let a = account(srv, &v)?;
        if !accounts.contains(&a) {
            accounts.push(a);
        }
    }
    if accounts.is_empty() {
        return Err(Failure::bad_payload("name at least one account"));
    }
    // All or nothing: every account must exist before any goes.
    for (user, host) in &accounts {
        match srv.store.user_exists(host, user).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Failure::new("item-not-found")
                    .with_text(format!("no such account: {user}@{host}")));
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(Failure::new("internal-server-error"));
            }
        }
    }
    for (user, host) in &accounts {
        register::delete_account(srv, host, user).await?;
        register::end_sessions(srv, &format!("{user}@{host}"));
        tracing::info!(admin = %s.bare(), account = %format!("{user}@{host}"), "account deleted by an administrator");
    }
    Ok(Done::note(format!(
        "Deleted {} account(s).",
        accounts.len()
    )))
}

async fn change_password(srv: &Server, s: &Session, x: &Element) -> Outcome {
    let (user, host) = account(srv, &forms::value(x, "accountjid").unwrap_or_default())?;
    let password = forms::value(x, "password").unwrap_or_default();
    register::set_password(srv, &host, &user, password).await?;
    tracing::info!(admin = %s.bare(), account = %format!("{user}@{host}"), "password changed by an administrator");
    Ok(Done::note(format!(
        "Changed the password of {user}@{host}."
    )))
}

/// A headline from the host to every online session, serialised once and
/// addressed by each session's writer.
fn announce(srv: &Server, s: &Session, host: &str, x: &Element) -> Outcome {
    let subject = forms::value(x, "subject").unwrap_or_default();
    let body = forms::values(x, "announcement").join("\n");
    if body.trim().is_empty() {
        return Err(Failure::bad_payload("the announcement is empty"));
    }
    let mut m = Element::bare("message", ns::CLIENT)
        .with("type", "headline")
        .with("from", host);
    if !subject.trim().is_empty() {
        m = m.text_child("subject", ns::CLIENT, &subject);
    }
    let m = m.text_child("body", ns::CLIENT, &body);
    let bytes = stanza::to_bytes(&m);
    let targets = srv.router.all();
    for t in &targets {
        t.send_addressed(bytes.clone());
    }
    metrics::counter!("conclave_stanzas_out_total").increment(targets.len() as u64);
    tracing::info!(admin = %s.bare(), sessions = targets.len(), "announcement sent");
    Ok(Done::note(format!("Sent to {} session(s).", targets.len())))
}

/// `get-online-users-num`, or with `list` `get-online-users-list`.
fn online_users(srv: &Server, list: bool) -> Done {
    let mut users = srv.router.online_users();
    let (field, note) = if list {
        users.sort();
        let shown = users.len().min(MAX_LISTED);
        let refs: Vec<&str> = users[..shown].iter().map(String::as_str).collect();
        let note = (shown < users.len()).then(|| format!("The first {shown} of {}.", users.len()));
        let f = field(
            "onlineuserjids",
            Some("jid-multi"),
            Some("The list of all online users"),
            &refs,
        );
        (f, note)
    } else {
        let n = users.len().to_string();
        let f = field(
            "onlineusersnum",
            None,
            Some("The number of online users"),
            &[&n],
        );
        (f, None)
    };
    Done {
        note,
        form: Some(forms::form("result", [forms::form_type(ns::ADMIN), field])),
    }
}

// --- XEP-0401 --------------------------------------------------------------

fn create_account_form() -> Element {
    let mut x = forms::form("form", [])
        .text_child("title", ns::DATA_FORMS, "Create an account invitation")
        .text_child(
            "instructions",
            ns::DATA_FORMS,
            "Leave the username empty to let the invitee choose one.",
        );
    x.append_child(field(
        "username",
        Some("text-single"),
        Some("Username"),
        &[],
    ));
    x.append_child(crate::modules::forms::boolean(
        "roster-subscription",
        "Add the new account to my contacts",
        false,
    ));
    x
}

/// The XEP-0401 result: the URI, the landing page and the expiry.
fn invitation_result(c: &invites::Created) -> Done {
    let expire = xmpp_core::time::datetime(c.expires);
    let mut fields = vec![
        forms::form_type(invite::FORM_INVITATION),
        field(
            "uri",
            Some("text-single"),
            Some("Invitation URI"),
            &[&c.uri],
        ),
    ];
    if let Some(url) = &c.landing_url {
        fields.push(field(
            "landing-url",
            Some("text-single"),
            Some("Invitation web page"),
            &[url],
        ));
    }
    fields.push(field(
        "expire",
        Some("text-single"),
        Some("Expires"),
        &[&expire],
    ));
    Done {
        note: None,
        form: Some(forms::form("result", fields)),
    }
}

async fn make_invite(
    srv: &Server,
    host: &str,
    kind: InviteKind,
    username: Option<&str>,
    inviter: Option<&str>,
) -> Outcome {
    let now = xmpp_core::time::now_unix();
    let ttl = srv.config.invites.ttl_secs;
    invites::create(
        &*srv.store,
        &srv.config,
        host,
        kind,
        username,
        inviter,
        now,
        ttl,
    )
    .await
    .map(|c| invitation_result(&c))
    .map_err(|e| match e {
        CreateError::BadUsername => Failure::bad_payload("that username is not allowed"),
        CreateError::Taken => Failure::new("conflict").with_text("that account already exists"),
        CreateError::Failed => Failure::new("internal-server-error"),
    })
}

async fn create_account_invite(srv: &Server, s: &Session, host: &str, x: &Element) -> Outcome {
    if !srv.config.hosts.iter().any(|h| h == host) {
        return Err(Failure::new("not-allowed").with_text("accounts live on the main hosts"));
    }
    let username = forms::value(x, "username");
    let subscribe = forms::value(x, "roster-subscription").is_some_and(|v| v == "1" || v == "true");
    let inviter = subscribe.then(|| s.bare());
    make_invite(srv, host, InviteKind::Account, username.as_deref(), inviter).await
}

/// A contact invitation from the requester, on the requester's host. It
/// registers an account too only if the requester may bring new accounts
/// (an admin, or anyone with `invites.users_may_invite`); else only an
/// existing account can take it up (as Prosody's mod_invites_adhoc).
async fn invite_contact(srv: &Server, s: &Session) -> Outcome {
    let kind = if srv.is_admin(s.bare()) || srv.config.invites.users_may_invite {
        InviteKind::Contact
    } else {
        InviteKind::Subscription
    };
    make_invite(srv, &s.host, kind, None, Some(s.bare())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_requester_and_command() {
        let s = Sessions::default();
        let id = s.start("a@x/1", COMMANDS[0].node);
        assert!(!s.take(&id, "a@x/2", COMMANDS[0].node));
        assert!(!s.take(&id, "a@x/1", COMMANDS[1].node));
        assert!(s.take(&id, "a@x/1", COMMANDS[0].node));
        assert!(!s.take(&id, "a@x/1", COMMANDS[0].node), "used once");
    }

    #[test]
    fn a_requester_keeps_a_bounded_number_of_sessions() {
        let s = Sessions::default();
        let ids: Vec<String> = (0..SESSIONS_PER_REQUESTER + 3)
            .map(|_| s.start("a@x/1", COMMANDS[0].node))
            .collect();
        let other = s.start("b@x/1", COMMANDS[0].node);
        let open = s.open.lock().unwrap();
        assert_eq!(open.len(), SESSIONS_PER_REQUESTER + 1);
        assert!(open.contains_key(ids.last().unwrap()));
        assert!(open.contains_key(&other));
    }

    #[test]
    fn failures_carry_the_specific_condition() {
        let iq = xmpp_core::framing::parse_element(
            b"<iq xmlns='jabber:client' type='set' id='1' from='a@x/r' to='x'><command xmlns='http://jabber.org/protocol/commands'/></iq>",
            4096,
        )
        .unwrap();
        let r = Failure::bad_request("bad-sessionid").reply(&iq);
        let err = r.get_child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("modify"));
        assert!(err.has_child("bad-request", ns::STANZAS_ERR));
        assert!(err.has_child("bad-sessionid", ns::COMMANDS));
        let f: Failure = AccountError::BadPassword.into();
        assert_eq!(
            (f.condition, f.specific),
            ("bad-request", Some("bad-payload"))
        );
    }
}

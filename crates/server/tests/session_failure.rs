//! A session whose task panics (a bug) is closed alone: the process and
//! every other session go on. The connection is a scripted transport: the
//! test plays the client's frames and reads what the server writes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{In, bound, guest};
use conclave_server::{Config, Server};
use conclave_store::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_panics_is_closed_and_the_others_go_on() {
    let dir = std::env::temp_dir().join(format!("conclave-failure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("db.sqlite")).await.unwrap();
    let server = Server::new(Config::default(), Arc::new(store));

    let mut a = guest(&server).await;
    let mut b = guest(&server).await;
    let mut bystander = guest(&server).await;
    // The bind result goes out just before the router learns the session.
    bound(&server, 3).await;

    // a's task panics while handling what it read
    let _ = a.input.send(In::Panic);
    let closed = a.until("CLOSE").await;
    assert!(closed.contains("internal-server-error"), "{closed}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.router.count() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed session is still bound"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        server
            .router
            .session(a.jid.split('/').next().unwrap_or_default(), &a.jid)
            .is_none()
    );

    // the others go on: b messages the bystander, who gets it
    b.send(&format!(
        "<message xmlns='jabber:client' to='{}' type='chat'><body>still here</body></message>",
        bystander.jid
    ));
    let got = bystander.until("still here").await;
    assert!(got.contains(&b.jid), "{got}");
    // and a message to the failed session's address is not swallowed
    // silently: it bounces (the resource is gone)
    b.send(&format!(
        "<iq xmlns='jabber:client' to='{}' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        a.jid
    ));
    let bounce = b.until("id='q'").await;
    assert!(bounce.contains("type='error'"), "{bounce}");

    let _ = std::fs::remove_dir_all(dir);
}

//! `Invites` on SQLite: single-use invitations keyed by their token's hash.
//! Using one deletes it in the transaction that creates the account, so
//! two racing uses create one account.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::sqlite::insert_user;
use crate::*;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS invites (
  token_hash BLOB PRIMARY KEY, host TEXT NOT NULL, kind TEXT NOT NULL,
  username TEXT, inviter TEXT, created INTEGER NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS invites_expires ON invites (expires);
CREATE INDEX IF NOT EXISTS invites_inviter ON invites (inviter);
"#;

/// The columns `from_row` reads, in its order.
macro_rules! columns {
    () => {
        "token_hash, host, kind, username, inviter, created, expires"
    };
}

fn from_row(r: &SqliteRow) -> Invite {
    Invite {
        token_hash: r.get(0),
        host: r.get(1),
        kind: InviteKind::parse(r.get::<&str, _>(2)),
        username: r.get(3),
        inviter: r.get(4),
        created: r.get::<i64, _>(5) as u64,
        expires: r.get::<i64, _>(6) as u64,
    }
}

/// Deletes and returns the invite if it is still valid at `valid_at`.
async fn take(tx: &mut sqlx::SqliteConnection, token_hash: &[u8], valid_at: u64) -> Result<Invite> {
    sqlx::query(concat!(
        "DELETE FROM invites WHERE token_hash = ?1 AND expires > ?2 RETURNING ",
        columns!(),
        ""
    ))
    .bind(token_hash)
    .bind(valid_at as i64)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(from_row)
    .ok_or(StoreError::NotFound)
}

#[async_trait]
impl Invites for SqliteStore {
    async fn create_invite(&self, i: &Invite) -> Result<()> {
        let r = sqlx::query(concat!(
            "INSERT INTO invites (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))
        .bind(&i.token_hash)
        .bind(&i.host)
        .bind(i.kind.as_str())
        .bind(&i.username)
        .bind(&i.inviter)
        .bind(i.created as i64)
        .bind(i.expires as i64)
        .execute(&self.pool)
        .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    async fn invite(&self, token_hash: &[u8], now: u64) -> Result<Option<Invite>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM invites WHERE token_hash = ?1 AND expires > ?2"
        ))
        .bind(token_hash)
        .bind(now as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row))
    }

    async fn list_invites(&self, host: Option<&str>) -> Result<Vec<Invite>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM invites WHERE ?1 IS NULL OR host = ?1 ORDER BY created, token_hash"
        ))
        .bind(host)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn revoke_invites(&self, hash_prefix: &[u8]) -> Result<u64> {
        if hash_prefix.is_empty() {
            return Ok(0);
        }
        Ok(
            sqlx::query("DELETE FROM invites WHERE substr(token_hash, 1, ?2) = ?1")
                .bind(hash_prefix)
                .bind(hash_prefix.len() as i64)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn redeem_invite(
        &self,
        token_hash: &[u8],
        valid_at: u64,
        host: &str,
        user: &str,
        keys: &[ScramRecord],
    ) -> Result<Invite> {
        let mut tx = self.write_tx().await?;
        let invite = take(&mut tx, token_hash, valid_at).await?;
        if invite.host != host
            || invite.kind == InviteKind::Subscription
            || invite.username.as_deref().is_some_and(|u| u != user)
        {
            // Dropping the transaction rolls the delete back.
            return Err(StoreError::NotFound);
        }
        insert_user(&mut tx, host, user, keys).await?;
        tx.commit().await?;
        Ok(invite)
    }

    async fn take_invite(&self, token_hash: &[u8], valid_at: u64) -> Result<Invite> {
        let mut tx = self.write_tx().await?;
        let invite = take(&mut tx, token_hash, valid_at).await?;
        tx.commit().await?;
        Ok(invite)
    }

    async fn username_reserved(&self, host: &str, user: &str, now: u64) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM invites WHERE host = ?1 AND username = ?2 AND expires > ?3 LIMIT 1",
        )
        .bind(host)
        .bind(user)
        .bind(now as i64)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    async fn expire_invites(&self, now: u64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM invites WHERE expires <= ?1")
            .bind(now as i64)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::tests::store;

    fn invite(hash: u8, username: Option<&str>, expires: u64) -> Invite {
        Invite {
            token_hash: vec![hash; 32],
            host: "localhost".into(),
            kind: InviteKind::Account,
            username: username.map(Into::into),
            inviter: None,
            created: 100,
            expires,
        }
    }

    fn keys() -> Vec<ScramRecord> {
        vec![ScramRecord {
            mechanism: "SCRAM-SHA-256".into(),
            salt: vec![1],
            iterations: 4096,
            stored_key: vec![2],
            server_key: vec![3],
        }]
    }

    #[tokio::test]
    async fn an_invite_creates_one_account_once() {
        let (s, dir) = store().await;
        s.create_invite(&invite(1, None, 1000)).await.unwrap();
        // Racing uses: exactly one wins.
        let k = keys();
        let (a, b) = tokio::join!(
            s.redeem_invite(&[1; 32], 500, "localhost", "ann", &k),
            s.redeem_invite(&[1; 32], 500, "localhost", "bob", &k),
        );
        assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");
        let users = s.list_users(None).await.unwrap();
        assert_eq!(users.len(), 1);
        assert!(s.list_invites(None).await.unwrap().is_empty());
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn refusals_change_nothing() {
        let (s, dir) = store().await;
        s.create_invite(&invite(2, Some("juliet"), 1000))
            .await
            .unwrap();
        s.create_user("localhost", "taken", &keys()).await.unwrap();
        s.create_invite(&invite(3, None, 1000)).await.unwrap();
        // Another name than the invite's, an expired invite, another host.
        for (hash, at, host, user) in [
            (2, 500, "localhost", "romeo"),
            (2, 1000, "localhost", "juliet"),
            (2, 500, "example.org", "juliet"),
        ] {
            assert!(matches!(
                s.redeem_invite(&[hash; 32], at, host, user, &keys()).await,
                Err(StoreError::NotFound)
            ));
        }
        // An existing account: the invite stays usable.
        assert!(matches!(
            s.redeem_invite(&[3; 32], 500, "localhost", "taken", &keys())
                .await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.list_invites(None).await.unwrap().len(), 2);
        assert_eq!(s.list_users(None).await.unwrap().len(), 1);
        assert!(
            s.username_reserved("localhost", "juliet", 500)
                .await
                .unwrap()
        );
        assert!(
            !s.username_reserved("localhost", "juliet", 1000)
                .await
                .unwrap()
        );
        // An invitation that creates no accounts.
        s.create_invite(&Invite {
            kind: InviteKind::Subscription,
            inviter: Some("romeo@localhost".into()),
            ..invite(6, None, 1000)
        })
        .await
        .unwrap();
        assert!(matches!(
            s.redeem_invite(&[6; 32], 500, "localhost", "new", &keys())
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            s.take_invite(&[6; 32], 500).await.unwrap().kind,
            InviteKind::Subscription
        );
        assert!(s.invite(&[2; 32], 999).await.unwrap().is_some());
        assert!(s.invite(&[2; 32], 1000).await.unwrap().is_none());
        s.redeem_invite(&[2; 32], 500, "localhost", "juliet", &keys())
            .await
            .unwrap();
        assert!(s.user_exists("localhost", "juliet").await.unwrap());
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn revoke_by_prefix_and_expire() {
        let (s, dir) = store().await;
        s.create_invite(&invite(4, None, 1000)).await.unwrap();
        s.create_invite(&invite(5, None, 200)).await.unwrap();
        assert_eq!(s.revoke_invites(&[]).await.unwrap(), 0);
        assert_eq!(s.revoke_invites(&[4; 8]).await.unwrap(), 1);
        assert_eq!(s.expire_invites(200).await.unwrap(), 1);
        assert!(s.list_invites(None).await.unwrap().is_empty());
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

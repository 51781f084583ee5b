//! `Uploads` on SQLite: XEP-0363 slots and the files behind them.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::*;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS uploads (
  slot TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT NOT NULL,
  size INTEGER NOT NULL, content_type TEXT NOT NULL, token_hash BLOB NOT NULL,
  created INTEGER NOT NULL, put_deadline INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads (owner);
CREATE INDEX IF NOT EXISTS uploads_created ON uploads (created);
"#;

fn from_row(r: &SqliteRow) -> Upload {
    Upload {
        slot: r.get(0),
        owner: r.get(1),
        filename: r.get(2),
        size: r.get::<i64, _>(3) as u64,
        content_type: r.get(4),
        token_hash: r.get(5),
        created: r.get::<i64, _>(6) as u64,
        put_deadline: r.get::<i64, _>(7) as u64,
        state: UploadState::parse(r.get::<&str, _>(8)),
    }
}

#[async_trait]
impl Uploads for SqliteStore {
    async fn create_slot(&self, u: &Upload, quota: u64, now: u64) -> Result<()> {
        // What counts against the quota at ?2: everything but pending slots
        // whose PUT can no longer begin.
        let n = sqlx::query(
            "INSERT INTO uploads
               (slot, owner, filename, size, content_type, token_hash, created, put_deadline, state)
             SELECT ?3, ?1, ?4, ?5, ?6, ?7, ?8, ?9, ?10
             WHERE (SELECT COALESCE(SUM(size), 0) FROM uploads
                    WHERE owner = ?1 AND (state != 'pending' OR put_deadline > ?2)) + ?5 <= ?11",
        )
        .bind(&u.owner)
        .bind(now as i64)
        .bind(&u.slot)
        .bind(&u.filename)
        .bind(u.size as i64)
        .bind(&u.content_type)
        .bind(&u.token_hash)
        .bind(u.created as i64)
        .bind(u.put_deadline as i64)
        .bind(u.state.as_str())
        .bind(i64::try_from(quota).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Quota);
        }
        Ok(())
    }

    async fn owner_uploads(&self, owner: &str, now: u64) -> Result<Vec<Upload>> {
        let rows = sqlx::query(
            "SELECT slot, owner, filename, size, content_type, token_hash, created, put_deadline, state
             FROM uploads WHERE owner = ?1 AND (state != 'pending' OR put_deadline > ?2)
             ORDER BY created",
        )
            .bind(owner)
            .bind(now as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn upload(&self, slot: &str) -> Result<Option<Upload>> {
        let row = sqlx::query(
            "SELECT slot, owner, filename, size, content_type, token_hash, created, put_deadline, state
             FROM uploads WHERE slot = ?1",
        )
            .bind(slot)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    async fn begin_put(&self, slot: &str, now: u64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE uploads SET state = 'uploading'
             WHERE slot = ?1 AND state = 'pending' AND put_deadline > ?2",
        )
        .bind(slot)
        .bind(now as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn end_put(&self, slot: &str, stored: bool) -> Result<bool> {
        let to = if stored {
            UploadState::Stored
        } else {
            UploadState::Pending
        };
        let n =
            sqlx::query("UPDATE uploads SET state = ?2 WHERE slot = ?1 AND state = 'uploading'")
                .bind(slot)
                .bind(to.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    async fn expired_uploads(&self, created_before: Option<u64>, now: u64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT slot FROM uploads
             WHERE (?1 IS NOT NULL AND created <= ?1) OR (state = 'pending' AND put_deadline <= ?2)",
        )
        .bind(created_before.map(|t| t as i64))
        .bind(now as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn delete_uploads(&self, slots: &[String]) -> Result<()> {
        let mut tx = self.write().await?;
        for s in slots {
            sqlx::query("DELETE FROM uploads WHERE slot = ?1")
                .bind(s)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reset_puts(&self) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE uploads SET state = 'pending' WHERE state = 'uploading'")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::tests::store;

    fn slot(id: &str, owner: &str, size: u64, created: u64) -> Upload {
        Upload {
            slot: id.into(),
            owner: owner.into(),
            filename: "a.txt".into(),
            size,
            content_type: "text/plain".into(),
            token_hash: vec![7; 32],
            created,
            put_deadline: created + 300,
            state: UploadState::Pending,
        }
    }

    #[tokio::test]
    async fn quota_counts_stored_and_open_slots_only() {
        let (s, dir) = store().await;
        let alice = "alice@localhost";
        s.create_slot(&slot("a", alice, 600, 1000), 1000, 1000)
            .await
            .unwrap();
        // 600 + 500 > 1000, while the first slot is open.
        assert!(matches!(
            s.create_slot(&slot("b", alice, 500, 1100), 1000, 1100)
                .await,
            Err(StoreError::Quota)
        ));
        assert_eq!(s.upload("b").await.unwrap(), None);
        // Another owner has a quota of their own.
        s.create_slot(&slot("c", "bob@localhost", 900, 1100), 1000, 1100)
            .await
            .unwrap();
        // Past its deadline an unused slot no longer counts.
        s.create_slot(&slot("b", alice, 500, 1300), 1000, 1300)
            .await
            .unwrap();
        assert_eq!(s.owner_uploads(alice, 1300).await.unwrap().len(), 1);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn one_put_per_slot_and_expiry() {
        let (s, dir) = store().await;
        let alice = "alice@localhost";
        s.create_slot(&slot("a", alice, 10, 1000), 100, 1000)
            .await
            .unwrap();
        s.create_slot(&slot("b", alice, 10, 1000), 100, 1000)
            .await
            .unwrap();
        // Too late to begin.
        assert!(!s.begin_put("b", 1300).await.unwrap());
        assert!(s.begin_put("a", 1001).await.unwrap());
        assert!(!s.begin_put("a", 1002).await.unwrap());
        // A restart gives interrupted PUTs back.
        assert_eq!(s.reset_puts().await.unwrap(), 1);
        assert!(s.begin_put("a", 1002).await.unwrap());
        // A failed PUT gives the slot back; a completed one stores it.
        assert!(s.end_put("a", false).await.unwrap());
        assert!(s.begin_put("a", 1003).await.unwrap());
        assert!(s.end_put("a", true).await.unwrap());
        assert!(!s.begin_put("a", 1004).await.unwrap());
        let a = s.upload("a").await.unwrap().unwrap();
        assert_eq!(a.state, UploadState::Stored);
        assert_eq!(a.token_hash, vec![7; 32]);
        // Stored files outlive their PUT deadline; unused slots do not.
        assert_eq!(
            s.expired_uploads(None, 2000).await.unwrap(),
            vec!["b".to_string()]
        );
        let mut all = s.expired_uploads(Some(1000), 2000).await.unwrap();
        all.sort();
        assert_eq!(all, vec!["a".to_string(), "b".to_string()]);
        s.delete_uploads(&all).await.unwrap();
        assert_eq!(s.upload("a").await.unwrap(), None);
        assert!(!s.end_put("a", true).await.unwrap());
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

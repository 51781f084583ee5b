//! The message archive (XEP-0313) in SQLite, with an FTS5 index for
//! full-text search (XEP-0431). Rows are paged by insertion order, which
//! is also time order; stanza-ids map to rows for RSM.

use async_trait::async_trait;
use sqlx::Row;

use crate::{
    Archive, ArchivePage, ArchiveQuery, ArchiveRow, MessageRefs, Result, SqliteStore, StoreError,
};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS archive (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, id TEXT NOT NULL, with_jid TEXT NOT NULL,
  with_bare TEXT NOT NULL, stamp INTEGER NOT NULL, stanza TEXT NOT NULL, ref_id TEXT,
  alt_ref TEXT, replaces TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS archive_id ON archive (owner, id);
CREATE INDEX IF NOT EXISTS archive_owner_stamp ON archive (owner, stamp);
CREATE INDEX IF NOT EXISTS archive_owner_with ON archive (owner, with_bare, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS archive_fts USING fts5(body, content='', contentless_delete=1);
CREATE TABLE IF NOT EXISTS archive_prefs (
  owner TEXT PRIMARY KEY, def TEXT NOT NULL, always TEXT NOT NULL, never TEXT NOT NULL) WITHOUT ROWID;
"#;

/// What `SCHEMA` cannot say for a file made before a column existed: the
/// column is added, then the indexes over it are made. Rows archived
/// before `alt_ref` and `replaces` existed are listed in `archive_backfill`
/// for the server to derive them from their stanzas (`rows_without_refs`).
pub(crate) async fn upgrade(pool: &sqlx::SqlitePool) -> Result<()> {
    let has = |col: &'static str| async move {
        sqlx::query("SELECT 1 FROM pragma_table_info('archive') WHERE name = ?1")
            .bind(col)
            .fetch_optional(pool)
            .await
            .map(|r| r.is_some())
    };
    if !has("ref_id").await? {
        sqlx::query("ALTER TABLE archive ADD COLUMN ref_id TEXT")
            .execute(pool)
            .await?;
    }
    if !has("replaces").await? {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(
            "ALTER TABLE archive ADD COLUMN alt_ref TEXT;
             ALTER TABLE archive ADD COLUMN replaces TEXT;
             CREATE TABLE IF NOT EXISTS archive_backfill (seq INTEGER PRIMARY KEY);
             INSERT OR IGNORE INTO archive_backfill (seq) SELECT seq FROM archive;",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    sqlx::raw_sql(
        "CREATE INDEX IF NOT EXISTS archive_ref ON archive (owner, ref_id) WHERE ref_id IS NOT NULL;
         CREATE INDEX IF NOT EXISTS archive_alt_ref ON archive (owner, alt_ref) WHERE alt_ref IS NOT NULL;
         CREATE INDEX IF NOT EXISTS archive_replaces ON archive (owner, replaces) WHERE replaces IS NOT NULL;",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Turns what a user typed into an FTS5 query that cannot be a syntax
/// error: every word becomes a quoted phrase, all of them required.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split_whitespace()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

/// A row read back as `SELECT id, with_jid, stamp, stanza`.
fn selected(owner: &str, r: &sqlx::sqlite::SqliteRow) -> ArchiveRow {
    ArchiveRow {
        owner: owner.to_owned(),
        id: r.get(0),
        with: r.get(1),
        stamp: r.get(2),
        stanza: r.get(3),
        text: None,
        refs: MessageRefs::default(),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split('\n')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl Archive for SqliteStore {
    async fn archive(&self, rows: &[ArchiveRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for r in rows {
            let bare = r.with.split('/').next().unwrap_or(&r.with);
            let seq: i64 = sqlx::query(
                "INSERT INTO archive (owner, id, with_jid, with_bare, stamp, stanza, ref_id, alt_ref, replaces)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(owner, id) DO NOTHING RETURNING seq",
            )
            .bind(&r.owner)
            .bind(&r.id)
            .bind(&r.with)
            .bind(bare)
            .bind(r.stamp)
            .bind(&r.stanza)
            .bind(&r.refs.ref_id)
            .bind(&r.refs.alt_ref)
            .bind(&r.refs.replaces)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.get(0))
            .unwrap_or(0);
            if seq > 0
                && let Some(text) = &r.text
            {
                sqlx::query("INSERT INTO archive_fts (rowid, body) VALUES (?1, ?2)")
                    .bind(seq)
                    .bind(text)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query(&self, owner: &str, q: &ArchiveQuery) -> Result<ArchivePage> {
        let mut conn = self.pool.acquire().await?;
        let mut after_seq: Option<i64> = None;
        let mut before_seq: Option<i64> = None;
        for (id, slot) in [(&q.after, &mut after_seq), (&q.before, &mut before_seq)] {
            if let Some(id) = id {
                let row = sqlx::query("SELECT seq FROM archive WHERE owner = ?1 AND id = ?2")
                    .bind(owner)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                *slot = Some(row.ok_or(StoreError::NotFound)?.get(0));
            }
        }
        // The filter, shared by the page and the count.
        let mut filter = String::from(" FROM archive a WHERE a.owner = ?1");
        let mut binds: Vec<Bind> = vec![Bind::Text(owner.to_owned())];
        let mut push = |sql: &str, b: Bind, filter: &mut String| {
            binds.push(b);
            filter.push_str(&sql.replace('?', &format!("?{}", binds.len())));
        };
        if let Some(w) = &q.with {
            let col = if q.with_bare {
                "a.with_bare"
            } else {
                "a.with_jid"
            };
            push(
                &format!(" AND {col} = ?"),
                Bind::Text(w.clone()),
                &mut filter,
            );
        }
        if let Some(s) = q.start {
            push(" AND a.stamp >= ?", Bind::Int(s), &mut filter);
        }
        if let Some(e) = q.end {
            push(" AND a.stamp <= ?", Bind::Int(e), &mut filter);
        }
        if let Some(text) = q.fulltext.as_deref().and_then(fts_query) {
            push(
                " AND a.seq IN (SELECT rowid FROM archive_fts WHERE archive_fts MATCH ?)",
                Bind::Text(text),
                &mut filter,
            );
        }
        if !q.ids.is_empty() {
            let mut list = String::new();
            for id in &q.ids {
                binds.push(Bind::Text(id.clone()));
                if !list.is_empty() {
                    list.push(',');
                }
                list.push_str(&format!("?{}", binds.len()));
            }
            filter.push_str(&format!(" AND a.id IN ({list})"));
        }
        let count_sql = format!("SELECT COUNT(*){filter}");
        // Only our own fragments and numbered placeholders are spliced into
        // the SQL; every value the user supplied is bound.
        let mut count_q = sqlx::query(sqlx::AssertSqlSafe(count_sql));
        for b in &binds {
            count_q = b.bind(count_q);
        }
        let count: i64 = count_q.fetch_one(&mut *conn).await?.get(0);
        let mut page_filter = filter.clone();
        let mut page_binds = binds.clone();
        if let Some(s) = after_seq {
            page_binds.push(Bind::Int(s));
            page_filter.push_str(&format!(" AND a.seq > ?{}", page_binds.len()));
        }
        if let Some(s) = before_seq {
            page_binds.push(Bind::Int(s));
            page_filter.push_str(&format!(" AND a.seq < ?{}", page_binds.len()));
        }
        // Paging backwards (RSM before) takes the newest rows first, then
        // returns them in time order.
        let backwards = q.last_page || before_seq.is_some();
        let order = if backwards { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT a.id, a.with_jid, a.stamp, a.stanza{page_filter} ORDER BY a.seq {order} LIMIT {}",
            q.max + 1
        );
        let mut page_q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &page_binds {
            page_q = b.bind(page_q);
        }
        let rows = page_q.fetch_all(&mut *conn).await?;
        let complete = rows.len() <= q.max;
        let mut out: Vec<ArchiveRow> = rows
            .into_iter()
            .take(q.max)
            .map(|r| selected(owner, &r))
            .collect();
        if backwards {
            out.reverse();
        }
        Ok(ArchivePage {
            rows: out,
            complete,
            count: count as u64,
        })
    }

    async fn replace_archived(&self, owner: &str, id: &str, stanza: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(seq) = sqlx::query("SELECT seq FROM archive WHERE owner = ?1 AND id = ?2")
            .bind(owner)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get::<i64, _>(0))
        else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM archive_fts WHERE rowid = ?1")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE archive SET stanza = ?1 WHERE seq = ?2")
            .bind(stanza)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn archived_by_ref(
        &self,
        owner: &str,
        name: &str,
        max: usize,
    ) -> Result<Vec<ArchiveRow>> {
        let rows = sqlx::query(
            "SELECT id, with_jid, stamp, stanza FROM archive
             WHERE owner = ?1 AND (ref_id = ?2 OR alt_ref = ?2 OR replaces = ?2)
             ORDER BY seq DESC LIMIT ?3",
        )
        .bind(owner)
        .bind(name)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| selected(owner, r)).collect())
    }

    async fn rows_without_refs(&self, max: usize) -> Result<Vec<(i64, String)>> {
        let exists = sqlx::query("SELECT 1 FROM sqlite_master WHERE name = 'archive_backfill'")
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if !exists {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT b.seq, a.stanza FROM archive_backfill b JOIN archive a ON a.seq = b.seq
             ORDER BY b.seq LIMIT ?1",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            // Done (or only rows expired since): the list goes.
            sqlx::query("DROP TABLE IF EXISTS archive_backfill")
                .execute(&self.pool)
                .await?;
        }
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn set_refs(&self, rows: &[(i64, MessageRefs)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (seq, refs) in rows {
            sqlx::query(
                "UPDATE archive SET ref_id = ?1, alt_ref = ?2, replaces = ?3 WHERE seq = ?4",
            )
            .bind(&refs.ref_id)
            .bind(&refs.alt_ref)
            .bind(&refs.replaces)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM archive_backfill WHERE seq = ?1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn expire_archive(&self, owner: Option<&str>, before: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let (fts, rows) = match owner {
            Some(o) => (
                sqlx::query(
                    "DELETE FROM archive_fts WHERE rowid IN (SELECT seq FROM archive WHERE owner = ?1 AND stamp < ?2)",
                )
                .bind(o)
                .bind(before),
                sqlx::query("DELETE FROM archive WHERE owner = ?1 AND stamp < ?2")
                    .bind(o)
                    .bind(before),
            ),
            None => (
                sqlx::query("DELETE FROM archive_fts WHERE rowid IN (SELECT seq FROM archive WHERE stamp < ?1)")
                    .bind(before),
                sqlx::query("DELETE FROM archive WHERE stamp < ?1").bind(before),
            ),
        };
        fts.execute(&mut *tx).await?;
        let n = rows.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn archive_prefs(
        &self,
        owner: &str,
    ) -> Result<Option<(String, Vec<String>, Vec<String>)>> {
        Ok(
            sqlx::query("SELECT def, always, never FROM archive_prefs WHERE owner = ?1")
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| {
                    (
                        r.get(0),
                        split_list(r.get::<&str, _>(1)),
                        split_list(r.get::<&str, _>(2)),
                    )
                }),
        )
    }

    async fn set_archive_prefs(
        &self,
        owner: &str,
        default: &str,
        always: &[String],
        never: &[String],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO archive_prefs (owner, def, always, never) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(owner) DO UPDATE SET def = ?2, always = ?3, never = ?4",
        )
        .bind(owner)
        .bind(default)
        .bind(always.join("\n"))
        .bind(never.join("\n"))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

impl Bind {
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        match self {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Int(i) => q.bind(*i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "conclave-archive-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (
            SqliteStore::open(&dir.join("db.sqlite")).await.unwrap(),
            dir,
        )
    }

    fn row(i: i64, with: &str, text: &str) -> ArchiveRow {
        ArchiveRow {
            owner: "alice@localhost".into(),
            id: format!("id{i}"),
            with: with.into(),
            stamp: 1_000_000 * i,
            stanza: format!("<message><body>{text}</body></message>"),
            text: Some(text.into()),
            refs: MessageRefs {
                ref_id: Some(format!("ref{i}")),
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn paging_filters_and_fulltext() {
        let (s, dir) = store().await;
        let rows: Vec<ArchiveRow> = (1..=25)
            .map(|i| {
                let with = if i % 2 == 0 {
                    "bob@localhost"
                } else {
                    "carol@localhost"
                };
                let text = if i == 7 {
                    "the quarterly budget meeting"
                } else {
                    "hello there"
                };
                row(i, with, text)
            })
            .collect();
        s.archive(&rows).await.unwrap();
        // the same id again is ignored
        s.archive(&rows[..1]).await.unwrap();
        let q = |f: fn(&mut ArchiveQuery)| {
            let mut q = ArchiveQuery {
                max: 10,
                ..Default::default()
            };
            f(&mut q);
            q
        };
        let p = s.query("alice@localhost", &q(|_| {})).await.unwrap();
        assert_eq!((p.rows.len(), p.complete, p.count), (10, false, 25));
        assert_eq!(p.rows[0].id, "id1");
        let mut after = q(|_| {});
        after.after = Some("id20".into());
        let p = s.query("alice@localhost", &after).await.unwrap();
        assert_eq!(
            p.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["id21", "id22", "id23", "id24", "id25"]
        );
        assert!(p.complete);
        let p = s
            .query("alice@localhost", &q(|q| q.last_page = true))
            .await
            .unwrap();
        assert_eq!(p.rows.first().unwrap().id, "id16");
        assert_eq!(p.rows.last().unwrap().id, "id25");
        let p = s
            .query(
                "alice@localhost",
                &q(|q| {
                    q.with = Some("bob@localhost".into());
                    q.with_bare = true;
                }),
            )
            .await
            .unwrap();
        assert_eq!(p.count, 12);
        let p = s
            .query(
                "alice@localhost",
                &q(|q| q.fulltext = Some("budget QUARTERLY".into())),
            )
            .await
            .unwrap();
        assert_eq!(
            p.rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["id7"]
        );
        // FTS syntax in the input is taken literally, never an error
        let p = s
            .query(
                "alice@localhost",
                &q(|q| q.fulltext = Some("\"AND OR ( NEAR".into())),
            )
            .await
            .unwrap();
        assert!(p.rows.is_empty());
        let p = s
            .query(
                "alice@localhost",
                &q(|q| {
                    q.start = Some(3_000_000);
                    q.end = Some(5_000_000);
                }),
            )
            .await
            .unwrap();
        assert_eq!(p.count, 3);
        // expiry removes old rows and their index entries
        assert_eq!(
            s.expire_archive(Some("alice@localhost"), 10_000_000)
                .await
                .unwrap(),
            9
        );
        let p = s
            .query(
                "alice@localhost",
                &q(|q| q.fulltext = Some("budget".into())),
            )
            .await
            .unwrap();
        assert!(p.rows.is_empty());
        assert_eq!(
            s.query("alice@localhost", &q(|_| {})).await.unwrap().count,
            16
        );
        let mut bad = q(|_| {});
        bad.after = Some("nope".into());
        assert!(matches!(
            s.query("alice@localhost", &bad).await,
            Err(StoreError::NotFound)
        ));
        // another owner sees nothing of alice's
        assert_eq!(s.query("bob@localhost", &q(|_| {})).await.unwrap().count, 0);
        // a retraction finds its message by the sender's id, in that
        // archive only; a replaced row leaves the search index
        let found = s
            .archived_by_ref("alice@localhost", "ref20", 4)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "id20");
        assert!(
            s.archived_by_ref("bob@localhost", "ref20", 4)
                .await
                .unwrap()
                .is_empty()
        );
        // a correction is found by the message it corrects, and a message
        // by an `id` that differs from its origin-id
        let mut fix = row(50, "bob@localhost", "hello again");
        fix.refs = MessageRefs {
            ref_id: Some("origin50".into()),
            alt_ref: Some("msg50".into()),
            replaces: Some("ref20".into()),
        };
        s.archive(&[fix]).await.unwrap();
        let ids = |rows: Vec<ArchiveRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s
                .archived_by_ref("alice@localhost", "ref20", 4)
                .await
                .unwrap()),
            ["id50", "id20"]
        );
        for name in ["origin50", "msg50"] {
            assert_eq!(
                ids(s.archived_by_ref("alice@localhost", name, 4).await.unwrap()),
                ["id50"]
            );
        }
        assert!(
            s.replace_archived("alice@localhost", "id20", "<message/>")
                .await
                .unwrap()
        );
        let p = s
            .query("alice@localhost", &q(|q| q.fulltext = Some("hello".into())))
            .await
            .unwrap();
        assert_eq!(p.count, 16);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_archive_from_before_ref_ids_is_upgraded() {
        let dir = std::env::temp_dir().join(format!("conclave-archive-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE archive (seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,
                 id TEXT NOT NULL, with_jid TEXT NOT NULL, with_bare TEXT NOT NULL,
                 stamp INTEGER NOT NULL, stanza TEXT NOT NULL);
                 INSERT INTO archive (owner, id, with_jid, with_bare, stamp, stanza)
                 VALUES ('alice@localhost', 'old', 'bob@localhost', 'bob@localhost', 1, '<message/>');",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let s = SqliteStore::open(&path).await.unwrap();
        s.archive(&[row(1, "bob@localhost", "new")]).await.unwrap();
        let found = s
            .archived_by_ref("alice@localhost", "ref1", 4)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        // the old row waits for its refs, which the server derives
        let todo = s.rows_without_refs(10).await.unwrap();
        assert_eq!(todo.len(), 1);
        assert_eq!(todo[0].1, "<message/>");
        let refs = MessageRefs {
            ref_id: Some("m-old".into()),
            alt_ref: None,
            replaces: Some("m-older".into()),
        };
        s.set_refs(&[(todo[0].0, refs)]).await.unwrap();
        assert!(s.rows_without_refs(10).await.unwrap().is_empty());
        for name in ["m-old", "m-older"] {
            let found = s.archived_by_ref("alice@localhost", name, 4).await.unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].id, "old");
        }
        let q = ArchiveQuery {
            max: 10,
            ..Default::default()
        };
        assert_eq!(s.query("alice@localhost", &q).await.unwrap().count, 2);
        s.close().await;
        // opening it again changes nothing
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.query("alice@localhost", &q).await.unwrap().count, 2);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

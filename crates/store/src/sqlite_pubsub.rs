//! `Pubsub` and `PrivateXml` on SQLite: PEP nodes and their items, and
//! XEP-0049 private XML. Items are ordered by `seq`, which grows with every
//! publication, so "newest" is the largest `seq` and republishing an id
//! gives it a new one.

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::sqlite::{decode_config, encode_config};
use crate::*;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS pubsub_nodes (
  owner TEXT NOT NULL, node TEXT NOT NULL, config TEXT NOT NULL,
  PRIMARY KEY (owner, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pubsub_items (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, node TEXT NOT NULL,
  id TEXT NOT NULL, publisher TEXT NOT NULL, stamp INTEGER NOT NULL, payload TEXT NOT NULL,
  UNIQUE (owner, node, id));
CREATE INDEX IF NOT EXISTS pubsub_items_order ON pubsub_items (owner, node, seq);
CREATE TABLE IF NOT EXISTS private_xml (
  owner TEXT NOT NULL, key TEXT NOT NULL, xml TEXT NOT NULL,
  PRIMARY KEY (owner, key)) WITHOUT ROWID;
"#;

/// SQLite's LIMIT takes an i64; "no limit" is -1.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(-1)
}

fn item_row(r: &SqliteRow) -> PubsubItem {
    PubsubItem {
        id: r.get(0),
        publisher: r.get(1),
        stamp: r.get::<i64, _>(2) as u64,
        payload: r.get(3),
    }
}

async fn node_exists(conn: &mut sqlx::SqliteConnection, owner: &str, node: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM pubsub_nodes WHERE owner = ?1 AND node = ?2")
            .bind(owner)
            .bind(node)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// Inserts a node unless the owner already has `max_nodes`.
async fn insert_node(
    conn: &mut sqlx::SqliteConnection,
    owner: &str,
    node: &PubsubNode,
    max_nodes: usize,
) -> Result<()> {
    let n = sqlx::query(
        "INSERT INTO pubsub_nodes (owner, node, config) SELECT ?1, ?2, ?3
         WHERE (SELECT COUNT(*) FROM pubsub_nodes WHERE owner = ?1) < ?4",
    )
    .bind(owner)
    .bind(&node.node)
    .bind(encode_config(&node.config))
    .bind(limit(max_nodes))
    .execute(&mut *conn)
    .await;
    match n {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict),
        Err(e) => Err(e.into()),
        Ok(r) if r.rows_affected() == 0 => Err(StoreError::Quota),
        Ok(_) => Ok(()),
    }
}

/// Keeps only the `keep` newest items of a node.
async fn trim(
    conn: &mut sqlx::SqliteConnection,
    owner: &str,
    node: &str,
    keep: usize,
) -> Result<()> {
    sqlx::query(
        "DELETE FROM pubsub_items WHERE owner = ?1 AND node = ?2 AND seq NOT IN
           (SELECT seq FROM pubsub_items WHERE owner = ?1 AND node = ?2 ORDER BY seq DESC LIMIT ?3)",
    )
    .bind(owner)
    .bind(node)
    .bind(limit(keep))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Pubsub for SqliteStore {
    async fn node(&self, owner: &str, node: &str) -> Result<Option<PubsubNode>> {
        // Every login asks for the avatar node (XEP-0398): a synchronous
        // read (see sqlite_read).
        let config: Option<String> = self.readers.read(|c| {
            c.prepare_cached("SELECT config FROM pubsub_nodes WHERE owner = ?1 AND node = ?2")?
                .query_row((owner, node), |r| r.get(0))
                .optional()
        })?;
        Ok(config.map(|c| PubsubNode {
            node: node.to_owned(),
            config: decode_config(&c),
        }))
    }

    async fn nodes(&self, owner: &str) -> Result<Vec<(PubsubNode, Option<PubsubItem>)>> {
        let rows = sqlx::query(
            "SELECT n.node, n.config, i.id, i.publisher, i.stamp, i.payload
             FROM pubsub_nodes n LEFT JOIN pubsub_items i
               ON i.seq = (SELECT MAX(seq) FROM pubsub_items WHERE owner = n.owner AND node = n.node)
             WHERE n.owner = ?1 ORDER BY n.node",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let node = PubsubNode {
                    node: r.get(0),
                    config: decode_config(r.get::<&str, _>(1)),
                };
                let item = r.get::<Option<String>, _>(2).map(|id| PubsubItem {
                    id,
                    publisher: r.get(3),
                    stamp: r.get::<i64, _>(4) as u64,
                    payload: r.get(5),
                });
                (node, item)
            })
            .collect())
    }

    async fn create_node(&self, owner: &str, node: &PubsubNode, max_nodes: usize) -> Result<()> {
        let mut tx = self.write_tx().await?;
        insert_node(&mut tx, owner, node, max_nodes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn configure_node(&self, owner: &str, node: &PubsubNode, keep: usize) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("UPDATE pubsub_nodes SET config = ?3 WHERE owner = ?1 AND node = ?2")
            .bind(owner)
            .bind(&node.node)
            .bind(encode_config(&node.config))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        trim(&mut tx, owner, &node.node, keep).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_node(&self, owner: &str, node: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM pubsub_nodes WHERE owner = ?1 AND node = ?2")
            .bind(owner)
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM pubsub_items WHERE owner = ?1 AND node = ?2")
            .bind(owner)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn publish_item(
        &self,
        owner: &str,
        node: &str,
        create: Option<&PubsubNode>,
        item: &PubsubItem,
        keep: usize,
        max_nodes: usize,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if !node_exists(&mut tx, owner, node).await? {
            match create {
                Some(n) => insert_node(&mut tx, owner, n, max_nodes).await?,
                None => return Err(StoreError::NotFound),
            }
        }
        sqlx::query("DELETE FROM pubsub_items WHERE owner = ?1 AND node = ?2 AND id = ?3")
            .bind(owner)
            .bind(node)
            .bind(&item.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pubsub_items (owner, node, id, publisher, stamp, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(owner)
        .bind(node)
        .bind(&item.id)
        .bind(&item.publisher)
        .bind(item.stamp as i64)
        .bind(&item.payload)
        .execute(&mut *tx)
        .await?;
        trim(&mut tx, owner, node, keep).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pubsub_bytes(&self, owner: &str, except: (&str, &str)) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COALESCE(SUM(LENGTH(CAST(payload AS BLOB))), 0) FROM pubsub_items
             WHERE owner = ?1 AND NOT (node = ?2 AND id = ?3)",
        )
        .bind(owner)
        .bind(except.0)
        .bind(except.1)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn retract_item(&self, owner: &str, node: &str, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM pubsub_items WHERE owner = ?1 AND node = ?2 AND id = ?3")
            .bind(owner)
            .bind(node)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn purge_node(&self, owner: &str, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM pubsub_items WHERE owner = ?1 AND node = ?2")
            .bind(owner)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn items(
        &self,
        owner: &str,
        node: &str,
        ids: &[String],
        max: usize,
    ) -> Result<Vec<PubsubItem>> {
        if ids.is_empty() {
            let rows = sqlx::query(
                "SELECT id, publisher, stamp, payload FROM pubsub_items
                 WHERE owner = ?1 AND node = ?2 ORDER BY seq DESC LIMIT ?3",
            )
            .bind(owner)
            .bind(node)
            .bind(limit(max))
            .fetch_all(&self.pool)
            .await?;
            return Ok(rows.iter().map(item_row).collect());
        }
        let mut found: Vec<(i64, PubsubItem)> = Vec::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT id, publisher, stamp, payload, seq FROM pubsub_items
                 WHERE owner = ?1 AND node = ?2 AND id = ?3",
            )
            .bind(owner)
            .bind(node)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row
                && !found.iter().any(|(_, i)| &i.id == id)
            {
                found.push((r.get(4), item_row(&r)));
            }
        }
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found.into_iter().map(|(_, i)| i).take(max).collect())
    }
}

#[async_trait]
impl PrivateXml for SqliteStore {
    async fn private_xml(&self, owner: &str, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query("SELECT xml FROM private_xml WHERE owner = ?1 AND key = ?2")
                .bind(owner)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    async fn set_private_xml(
        &self,
        owner: &str,
        entries: &[(String, String)],
        max_entries: usize,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (key, xml) in entries {
            sqlx::query(
                "INSERT INTO private_xml (owner, key, xml) VALUES (?1, ?2, ?3)
                 ON CONFLICT(owner, key) DO UPDATE SET xml = ?3",
            )
            .bind(owner)
            .bind(key)
            .bind(xml)
            .execute(&mut *tx)
            .await?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM private_xml WHERE owner = ?1")
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if u64::try_from(count).unwrap_or(0) > max_entries as u64 {
            // Dropping the transaction rolls every write back.
            return Err(StoreError::Quota);
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::tests::store;
    use crate::*;

    fn item(id: &str, payload: &str) -> PubsubItem {
        PubsubItem {
            id: id.into(),
            publisher: "alice@localhost/a".into(),
            stamp: 1,
            payload: payload.into(),
        }
    }

    fn node(name: &str) -> PubsubNode {
        PubsubNode {
            node: name.into(),
            config: vec![("pubsub#access_model".into(), "open".into())],
        }
    }

    fn ids(items: &[PubsubItem]) -> Vec<&str> {
        items.iter().map(|i| i.id.as_str()).collect()
    }

    #[tokio::test]
    async fn publish_orders_replaces_and_trims() {
        let (s, dir) = store().await;
        let a = "alice@localhost";
        let n = node("n");
        // No node and nothing to create it from.
        assert!(matches!(
            s.publish_item(a, "n", None, &item("1", "<x/>"), 10, 10)
                .await,
            Err(StoreError::NotFound)
        ));
        for id in ["1", "2", "3"] {
            s.publish_item(a, "n", Some(&n), &item(id, "<x/>"), 10, 10)
                .await
                .unwrap();
        }
        assert_eq!(
            ids(&s.items(a, "n", &[], usize::MAX).await.unwrap()),
            ["3", "2", "1"]
        );
        // Republishing moves an item to the front.
        s.publish_item(a, "n", None, &item("1", "<y/>"), 10, 10)
            .await
            .unwrap();
        let all = s.items(a, "n", &[], usize::MAX).await.unwrap();
        assert_eq!(ids(&all), ["1", "3", "2"]);
        assert_eq!(all[0].payload, "<y/>");
        assert_eq!(ids(&s.items(a, "n", &[], 1).await.unwrap()), ["1"]);
        // Trimming to two keeps the newest two.
        s.publish_item(a, "n", None, &item("4", "<x/>"), 2, 10)
            .await
            .unwrap();
        assert_eq!(
            ids(&s.items(a, "n", &[], usize::MAX).await.unwrap()),
            ["4", "1"]
        );
        let wanted = ["2".to_owned(), "1".to_owned(), "4".to_owned()];
        assert_eq!(
            ids(&s.items(a, "n", &wanted, usize::MAX).await.unwrap()),
            ["4", "1"]
        );
        // Configuring trims too.
        s.configure_node(a, &n, 1).await.unwrap();
        assert_eq!(ids(&s.items(a, "n", &[], usize::MAX).await.unwrap()), ["4"]);
        assert_eq!(s.pubsub_bytes(a, ("", "")).await.unwrap(), 4);
        assert_eq!(s.pubsub_bytes(a, ("n", "4")).await.unwrap(), 0);
        let listed = s.nodes(a).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, n);
        assert_eq!(listed[0].1.as_ref().map(|i| i.id.as_str()), Some("4"));
        assert!(s.retract_item(a, "n", "4").await.unwrap());
        assert!(!s.retract_item(a, "n", "4").await.unwrap());
        assert_eq!(s.nodes(a).await.unwrap()[0].1, None);
        assert!(s.delete_node(a, "n").await.unwrap());
        assert!(!s.delete_node(a, "n").await.unwrap());
        assert_eq!(s.node(a, "n").await.unwrap(), None);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn node_quota_conflict_and_account_removal() {
        let (s, dir) = store().await;
        s.create_user("localhost", "alice", &[]).await.unwrap();
        let a = "alice@localhost";
        s.create_node(a, &node("one"), 2).await.unwrap();
        assert!(matches!(
            s.create_node(a, &node("one"), 2).await,
            Err(StoreError::Conflict)
        ));
        s.publish_item(a, "two", Some(&node("two")), &item("1", "<x/>"), 5, 2)
            .await
            .unwrap();
        assert!(matches!(
            s.publish_item(a, "three", Some(&node("three")), &item("1", "<x/>"), 5, 2)
                .await,
            Err(StoreError::Quota)
        ));
        // Another owner has quota of their own.
        s.create_node("bob@localhost", &node("one"), 2)
            .await
            .unwrap();
        let entries = vec![(
            "storage storage:rosternotes".to_owned(),
            "<storage/>".to_owned(),
        )];
        s.set_private_xml(a, &entries, 1).await.unwrap();
        let more = vec![("a b".to_owned(), "<a/>".to_owned())];
        assert!(matches!(
            s.set_private_xml(a, &more, 1).await,
            Err(StoreError::Quota)
        ));
        assert_eq!(s.private_xml(a, "a b").await.unwrap(), None);
        assert_eq!(
            s.private_xml(a, "storage storage:rosternotes")
                .await
                .unwrap(),
            Some("<storage/>".into())
        );
        s.delete_user("localhost", "alice").await.unwrap();
        assert!(s.nodes(a).await.unwrap().is_empty());
        assert!(s.items(a, "two", &[], 10).await.unwrap().is_empty());
        assert_eq!(
            s.private_xml(a, "storage storage:rosternotes")
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.nodes("bob@localhost").await.unwrap().len(), 1);
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

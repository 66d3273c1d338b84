//! The local store's database half: every small object a row of one SQLite file (the data
//! folder's `sheaf.db`, beside the queues; see `local_db` for its group commit). Each
//! write's condition is checked inside the writer's transaction, in arrival order, so `PutMode::{Create, Update}` mean what
//! they mean on S3.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::files::etag_of;
use crate::local_db::{DbError, LocalDb};
use crate::store::{ListEntry, Listed, Object, PutMode, StoreError, Versions, Write};

/// Keys are BLOBs so that order and prefix bounds are byte order, as S3 lists.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS objects (
        key BLOB PRIMARY KEY NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);";

const GET_SQL: &str = "SELECT etag, body FROM objects WHERE key = ?1";

/// An object as `GET_SQL` reads it.
fn object_of(row: &rusqlite::Row<'_>) -> Result<Object, rusqlite::Error> {
    Ok(Object {
        etag: row.get(0)?,
        body: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        content_type: None,
    })
}

/// A listed row's key (column 0).
fn key_of(row: &rusqlite::Row<'_>) -> Result<String, rusqlite::Error> {
    let key: Vec<u8> = row.get(0)?;
    Ok(String::from_utf8_lossy(&key).into_owned())
}

/// The database half of a `LocalStore`; cheap to clone.
#[derive(Clone)]
pub(super) struct DbStore {
    db: Arc<LocalDb>,
}

fn db_error(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::io(key, format!("database: {e}"))
}

/// The first key after every key that starts with `prefix`, in byte order (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl DbStore {
    /// Opens (creating when needed) the database file `path`.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let db = LocalDb::open(path, SCHEMA).map_err(|e| db_error(&name, e))?;
        Ok(DbStore { db })
    }

    pub(super) fn make_durable(&self) -> Result<(), StoreError> {
        self.db.make_durable().map_err(|e| db_error("", e))
    }

    fn read<T>(
        &self,
        key: &str,
        read: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        self.db.read(read).map_err(|e| db_error(key, e))
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.read(key, |conn| {
            conn.prepare_cached(GET_SQL)?
                .query_row([key.as_bytes()], object_of)
                .optional()
        })
    }

    /// Reads `keys` in one read transaction: one snapshot, whose pages are read once however
    /// many of the keys they hold (separate reads each start afresh after the writer's next
    /// commit, which empties the connection's page cache).
    pub(super) fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Object>>, StoreError> {
        let first = keys.first().copied().unwrap_or_default();
        self.read(first, |conn| {
            let snapshot = conn.unchecked_transaction()?;
            let mut stmt = snapshot.prepare_cached(GET_SQL)?;
            let objects = keys
                .iter()
                .map(|key| stmt.query_row([key.as_bytes()], object_of).optional())
                .collect();
            drop(stmt);
            snapshot.finish()?;
            objects
        })
    }

    /// At most `limit` keys under `prefix` after `after`, in byte order, with their sizes.
    pub(super) fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        self.walk(prefix, after, limit, "key, size", |row| {
            Ok(ListEntry {
                key: key_of(row)?,
                size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            })
        })
    }

    /// `list_page`'s keys alone, read from the key index without a row a key (a listing of
    /// 100,000 done markers read each row's page for its size: about 7 % of a
    /// 100,000-document harvest).
    pub(super) fn list_keys_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        self.walk(prefix, after, limit, "key", |row| {
            Ok(Listed { key: key_of(row)? })
        })
    }

    /// Rows of `columns` (the key first) of at most `limit` keys under `prefix` after `after`.
    fn walk<T>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        columns: &str,
        entry: impl Fn(&rusqlite::Row<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let start = match after {
            Some(after) if after > prefix => after.as_bytes(),
            _ => prefix.as_bytes(),
        };
        let inclusive = after.is_none_or(|after| after < prefix);
        let end = prefix_end(prefix.as_bytes());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Plain range bounds, so SQLite walks the key index from the start to the end.
        let sql = format!(
            "SELECT {columns} FROM objects WHERE key {} ?1{} ORDER BY key LIMIT ?2",
            if inclusive { ">=" } else { ">" },
            if end.is_some() { " AND key < ?3" } else { "" },
        );
        self.read(prefix, |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            match &end {
                Some(end) => stmt
                    .query_map(params![start, limit, end], &entry)?
                    .collect(),
                None => stmt.query_map(params![start, limit], &entry)?.collect(),
            }
        })
    }

    pub(super) async fn put(
        &self,
        key: &str,
        body: Bytes,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        let etag = etag_of(&body);
        let owned = key.to_string();
        self.db
            .write_in_order(move |conn| put_row(conn, &owned, &body, etag, &mode))
            .await
            .map_err(|e| db_error(key, e))?
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let owned = key.to_string();
        self.db
            .write_in_order(move |conn| delete_row(conn, &owned))
            .await
            .map_err(|e| db_error(key, e))
    }

    /// `ObjectStore::write_in_order` as one write of the writer's next commit: each put or
    /// delete one statement, the sequence stopping at the first refused.
    pub(super) async fn write_in_order(&self, writes: Vec<Write>) -> Result<Versions, StoreError> {
        let first = writes
            .first()
            .map(|w| w.key().to_string())
            .unwrap_or_default();
        // Hashed here, not on the writer's one thread.
        let etags: Vec<Option<String>> = writes
            .iter()
            .map(|write| match write {
                Write::Put { body, .. } => Some(etag_of(body)),
                Write::Delete { .. } => None,
            })
            .collect();
        self.db
            .write_in_order(move |conn| {
                let mut written = Versions::new();
                for (write, etag) in writes.into_iter().zip(etags) {
                    match write {
                        Write::Delete { key } => delete_row(conn, &key)?,
                        Write::Put {
                            key, body, mode, ..
                        } => {
                            let etag = etag.unwrap_or_default();
                            match put_row(conn, &key, &body, etag, &mode)? {
                                Ok(etag) => written.insert(key, etag),
                                Err(refused) => return Ok(Err(refused)),
                            };
                        }
                    }
                }
                Ok(Ok(written))
            })
            .await
            .map_err(|e| db_error(&first, e))?
    }

    /// Whether the one-time move of files into the database is done.
    pub(super) fn migrated(&self) -> Result<bool, StoreError> {
        self.read("meta", |conn| {
            conn.query_row("SELECT 1 FROM meta WHERE name = 'migrated'", [], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    /// Writes `objects` (key and bytes, from an earlier version's files) and marks the move
    /// done, in one transaction: the files are removed only after it commits.
    pub(super) fn import(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.db
            .write_now(move |conn| {
                for (key, body) in &objects {
                    conn.execute(
                        "INSERT INTO objects (key, size, etag, body) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key) DO NOTHING",
                        params![key.as_bytes(), body.len() as i64, etag_of(body), body],
                    )?;
                }
                conn.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('migrated', '1')",
                    [],
                )?;
                Ok(())
            })
            .map_err(|e| db_error("meta", e))
    }
}

fn delete_row(conn: &Connection, key: &str) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM objects WHERE key = ?1")?
        .execute([key.as_bytes()])?;
    Ok(())
}

/// Writes one object as `mode` allows: its new ETag, or `Precondition` when refused.
fn put_row(
    conn: &Connection,
    key: &str,
    body: &[u8],
    etag: String,
    mode: &PutMode,
) -> Result<Result<String, StoreError>, DbError> {
    let (k, size) = (key.as_bytes(), body.len() as i64);
    let changed = match mode {
        PutMode::Overwrite => conn
            .prepare_cached(
                "INSERT INTO objects (key, size, etag, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET size = ?2, etag = ?3, body = ?4",
            )?
            .execute(params![k, size, etag, body])?,
        PutMode::Create => conn
            .prepare_cached(
                "INSERT INTO objects (key, size, etag, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![k, size, etag, body])?,
        PutMode::Update(expected) => conn
            .prepare_cached(
                "UPDATE objects SET size = ?2, etag = ?3, body = ?4 WHERE key = ?1 AND etag = ?5",
            )?
            .execute(params![k, size, etag, body, expected])?,
    };
    Ok(match changed {
        0 => Err(StoreError::Precondition(key.to_string())),
        _ => Ok(etag),
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_where_its_last_byte_grows() {
        assert_eq!(prefix_end(b"jobs/a/"), Some(b"jobs/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}

//! A durable queue in a SQLite file (the data folder's `sheaf.db`, shared by every queue and
//! the store; see `local_db` for its group commit): one row a message, in sending order, with its
//! visibility and receive count. A receive counts and hides its messages in one transaction,
//! so a crash at any line loses no message: at worst it is delivered again when its
//! visibility runs out. An earlier version's queue (a JSON file a message in `ROOT/NAME/`,
//! dead letters in `ROOT/NAME-dlq/`) is moved in when the queue opens.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, params};
use serde::Deserialize;

use super::{MAX_RECEIVE_COUNT, Queue, QueueDepth, QueueError, Received};
use crate::local_db::{DbError, LocalDb};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        dead INTEGER NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        receive_count INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_in_order ON messages (queue, dead, id);";

#[derive(Clone)]
pub struct LocalQueue {
    name: String,
    db: Arc<LocalDb>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A message as an earlier version kept it in its file.
#[derive(Deserialize)]
struct FileMessage {
    body: String,
    visible_at_ms: u64,
    receive_count: u32,
}

impl LocalQueue {
    /// Opens the queue `name` in `root/queues.db`, moving in an earlier version's files.
    pub fn open(root: &Path, name: &str) -> Result<Self, QueueError> {
        fs::create_dir_all(root).map_err(|e| QueueError::backend(name, e))?;
        Self::open_with_database(root, &root.join("queues.db"), name)
    }

    /// `open`, keeping the messages in the SQLite file `database` (which the data folder's
    /// store shares); `root` is where an earlier version kept them as files.
    pub fn open_with_database(
        root: &Path,
        database: &Path,
        name: &str,
    ) -> Result<Self, QueueError> {
        let db = LocalDb::open(database, SCHEMA).map_err(|e| QueueError::backend(name, e))?;
        let queue = LocalQueue {
            name: name.to_string(),
            db,
        };
        queue.move_in_files(&root.join(name), false)?;
        queue.move_in_files(&root.join(format!("{name}-dlq")), true)?;
        Ok(queue)
    }

    fn err(&self, e: impl std::fmt::Display) -> QueueError {
        QueueError::backend(&self.name, e)
    }

    /// Moves an earlier version's message files (in sending order, their names' order) into
    /// the table, then removes them and their folder: a crash between the two sends them
    /// again, which at-least-once delivery allows.
    fn move_in_files(&self, dir: &Path, dead: bool) -> Result<(), QueueError> {
        let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        files.sort();
        let mut messages = Vec::new();
        for path in &files {
            let bytes = fs::read(path).map_err(|e| self.err(e))?;
            let message: FileMessage = serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
            messages.push(message);
        }
        let name = self.name.clone();
        self.db
            .write_now(|conn| {
                for m in &messages {
                    conn.execute(
                        "INSERT INTO messages (queue, dead, visible_at_ms, receive_count, body)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            name,
                            dead,
                            i64::try_from(m.visible_at_ms).unwrap_or(i64::MAX),
                            m.receive_count,
                            m.body
                        ],
                    )?;
                }
                Ok(())
            })
            .map_err(|e| self.err(e))?;
        for path in &files {
            fs::remove_file(path).map_err(|e| self.err(e))?;
        }
        let _ = fs::remove_dir(dir);
        if !files.is_empty() {
            tracing::info!(queue = %self.name, messages = files.len(), "moved the queue's files into its database");
        }
        Ok(())
    }

    /// The message ids the receipts name.
    fn ids_of(&self, receipts: &[String]) -> Result<Vec<i64>, QueueError> {
        receipts
            .iter()
            .map(|r| receipt_id(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection, &str) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let name = self.name.clone();
        self.db
            .write(move |conn| write(conn, &name))
            .await
            .map_err(|e| self.err(e))
    }

    /// `write` for SQL statements that each stand alone (one is all or nothing by itself),
    /// without a savepoint.
    async fn write_statement<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection, &str) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let name = self.name.clone();
        self.db
            .write_in_order(move |conn| write(conn, &name))
            .await
            .map_err(|e| self.err(e))
    }
}

const INSERT_MESSAGE: &str =
    "INSERT INTO messages (queue, dead, visible_at_ms, receive_count, body)
     VALUES (?1, 0, ?2, 0, ?3)";

/// The message id a receipt names (`ID:COUNT` for messages, `ID` for dead letters).
fn receipt_id(receipt: &str) -> Result<i64, String> {
    receipt
        .split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("bad receipt {receipt:?}"))
}

/// Up to `max` visible messages of `queue` (dead letters or not), counted and hidden until
/// `visibility` has passed. Messages received too often are moved to the dead letters.
fn take(
    conn: &Connection,
    queue: &str,
    dead: bool,
    max: usize,
    visibility: Duration,
) -> Result<Vec<Received>, DbError> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut after = 0i64;
    while out.len() < max {
        let rows: Vec<(i64, u32, String)> = conn
            .prepare_cached(
                "SELECT id, receive_count, body FROM messages
                 WHERE queue = ?1 AND dead = ?2 AND id > ?3 AND visible_at_ms <= ?4
                 ORDER BY id LIMIT ?5",
            )?
            .query_map(
                params![queue, dead, after, now, (max - out.len()) as i64],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, count, body) in rows {
            if !dead && count >= MAX_RECEIVE_COUNT {
                conn.prepare_cached("UPDATE messages SET dead = 1 WHERE id = ?1")?
                    .execute([id])?;
                tracing::warn!(queue, message = id, "moved to the dead-letter queue");
                continue;
            }
            conn.prepare_cached(
                "UPDATE messages SET receive_count = ?2, visible_at_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, count + 1, now + ms(visibility)])?;
            let receipt = if dead {
                id.to_string()
            } else {
                format!("{id}:{}", count + 1)
            };
            out.push(Received {
                id: id.to_string(),
                body,
                receipt,
                receive_count: count + 1,
            });
        }
    }
    Ok(out)
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, body: String, delay: Duration) -> Result<(), QueueError> {
        self.write_statement(move |conn, queue| {
            conn.prepare_cached(INSERT_MESSAGE)?.execute(params![
                queue,
                now_ms() + ms(delay),
                body
            ])?;
            Ok(())
        })
        .await
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        self.write(move |conn, queue| {
            let mut insert = conn.prepare_cached(INSERT_MESSAGE)?;
            let now = now_ms();
            for body in bodies {
                insert.execute(params![queue, now, body])?;
            }
            Ok(())
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        self.write(move |conn, queue| take(conn, queue, false, max, visibility))
            .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.delete_batch(&[receipt.to_string()]).await
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        let ids = self.ids_of(receipts)?;
        // Each delete stands alone: a statement each, no savepoint.
        self.write_statement(move |conn, queue| {
            let mut delete = conn
                .prepare_cached("DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND dead = 0")?;
            for id in ids {
                delete.execute(params![id, queue])?;
            }
            Ok(())
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let id = receipt_id(receipt).map_err(|e| self.err(e))?;
        self.write_statement(move |conn, queue| {
            conn.prepare_cached(
                "UPDATE messages SET visible_at_ms = ?3 WHERE id = ?1 AND queue = ?2 AND dead = 0",
            )?
            .execute(params![id, queue, now_ms() + ms(timeout)])?;
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let name = self.name.clone();
        self.db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT
                         coalesce(sum(dead = 0 AND (visible_at_ms <= ?2 OR receive_count = 0)), 0),
                         coalesce(sum(dead = 0 AND visible_at_ms > ?2 AND receive_count > 0), 0),
                         coalesce(sum(dead = 1), 0)
                     FROM messages WHERE queue = ?1",
                )?
                .query_row(params![name, now_ms()], |row| {
                    Ok(QueueDepth {
                        visible: row.get::<_, i64>(0)?.max(0) as u64,
                        in_flight: row.get::<_, i64>(1)?.max(0) as u64,
                        dead_letters: row.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
            })
            .map_err(|e| self.err(e))
    }

    async fn receive_dead_letters(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.write(move |conn, queue| take(conn, queue, true, max, visibility))
            .await
    }

    async fn release_dead_letters(&self, receipts: &[String]) -> Result<(), QueueError> {
        let ids = self.ids_of(receipts)?;
        self.write(move |conn, queue| {
            let mut release = conn.prepare_cached(
                "UPDATE messages SET visible_at_ms = 0 WHERE id = ?1 AND queue = ?2 AND dead = 1",
            )?;
            for id in ids {
                release.execute(params![id, queue])?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_dead_letter(&self, receipt: &str) -> Result<(), QueueError> {
        let id = receipt_id(receipt).map_err(|e| self.err(e))?;
        self.write_statement(move |conn, queue| {
            conn.prepare_cached("DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND dead = 1")?
                .execute(params![id, queue])?;
            Ok(())
        })
        .await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.write_statement(move |conn, queue| {
            conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND dead = 0")?
                .execute([queue])?;
            Ok(())
        })
        .await
    }
}

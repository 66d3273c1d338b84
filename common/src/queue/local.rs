//! A durable queue on a folder: one JSON file per message in `ROOT/NAME/`, dead letters in
//! `ROOT/NAME-dlq/`. A receive rewrites the file with its new visibility and receive count
//! (temp file + rename) under an exclusive lock, so a crash at any line loses no message: at
//! worst it is delivered again when its visibility runs out.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{MAX_RECEIVE_COUNT, Queue, QueueDepth, QueueError, Received};

#[derive(Clone)]
pub struct LocalQueue {
    name: String,
    dir: PathBuf,
    dlq: PathBuf,
    lock_path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    body: String,
    visible_at_ms: u64,
    receive_count: u32,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LocalQueue {
    pub fn open(root: &Path, name: &str) -> Result<Self, QueueError> {
        let dir = root.join(name);
        let dlq = root.join(format!("{name}-dlq"));
        for d in [&dir, &dlq] {
            fs::create_dir_all(d).map_err(|e| QueueError::backend(name, e))?;
        }
        Ok(LocalQueue {
            name: name.to_string(),
            lock_path: root.join(format!("{name}.lock")),
            dir,
            dlq,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> QueueError {
        QueueError::backend(&self.name, e)
    }

    fn lock(&self) -> Result<File, QueueError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| self.err(e))?;
        file.lock().map_err(|e| self.err(e))?;
        Ok(file)
    }

    fn write(&self, path: &Path, msg: &Stored) -> Result<(), QueueError> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(msg).map_err(|e| self.err(e))?;
        fs::write(&tmp, bytes).map_err(|e| self.err(e))?;
        fs::rename(&tmp, path).map_err(|e| self.err(e))
    }

    fn read(&self, path: &Path) -> Result<Option<Stored>, QueueError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.err(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Message files in sending order (their names start with the send time).
    fn message_files(&self, dir: &Path) -> Result<Vec<PathBuf>, QueueError> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| self.err(e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        Ok(files)
    }

    fn path_of(&self, receipt: &str) -> Result<PathBuf, QueueError> {
        let id = receipt.split(':').next().unwrap_or_default();
        if id.is_empty() || id.contains('/') || id.contains("..") {
            return Err(self.err(format!("bad receipt {receipt:?}")));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Counts a receive of the message at `path` and hides it until `until_ms`; its id.
    fn hold(&self, path: &Path, msg: &mut Stored, until_ms: u64) -> Result<String, QueueError> {
        msg.receive_count += 1;
        msg.visible_at_ms = until_ms;
        self.write(path, msg)?;
        Ok(path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned())
    }

    /// Removes a message's file; one already gone is no error (deletes are replayed).
    async fn remove(&self, path: PathBuf) -> Result<(), QueueError> {
        self.run(move |q| {
            let _guard = q.lock()?;
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(q.err(e)),
                _ => Ok(()),
            }
        })
        .await
    }

    fn dead_letter_path(&self, receipt: &str) -> Result<PathBuf, QueueError> {
        let path = self.path_of(receipt)?;
        Ok(self.dlq.join(path.file_name().unwrap_or_default()))
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LocalQueue) -> Result<T, QueueError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, QueueError>> {
        let this = self.clone();
        async move {
            let name = this.name.clone();
            tokio::task::spawn_blocking(move || f(&this))
                .await
                .map_err(|e| QueueError::backend(&name, e))?
        }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, body: String, delay: Duration) -> Result<(), QueueError> {
        self.run(move |q| {
            let id = format!(
                "{:016}-{:08}-{}",
                now_ms(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed) % 100_000_000,
                uuid::Uuid::new_v4().simple()
            );
            let msg = Stored {
                body,
                visible_at_ms: now_ms() + delay.as_millis() as u64,
                receive_count: 0,
            };
            q.write(&q.dir.join(format!("{id}.json")), &msg)
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        self.run(move |q| {
            let _guard = q.lock()?;
            let now = now_ms();
            let mut out = Vec::new();
            for path in q.message_files(&q.dir)? {
                if out.len() >= max {
                    break;
                }
                let Some(mut msg) = q.read(&path)? else {
                    continue;
                };
                if msg.visible_at_ms > now {
                    continue;
                }
                let file_name = path.file_name().unwrap_or_default().to_owned();
                if msg.receive_count >= MAX_RECEIVE_COUNT {
                    fs::rename(&path, q.dlq.join(&file_name)).map_err(|e| q.err(e))?;
                    tracing::warn!(queue = %q.name, message = ?file_name, "moved to the dead-letter queue");
                    continue;
                }
                let id = q.hold(&path, &mut msg, now + visibility.as_millis() as u64)?;
                out.push(Received {
                    receipt: format!("{id}:{}", msg.receive_count),
                    id,
                    body: msg.body,
                    receive_count: msg.receive_count,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.remove(self.path_of(receipt)?).await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let path = self.path_of(receipt)?;
        self.run(move |q| {
            let _guard = q.lock()?;
            if let Some(mut msg) = q.read(&path)? {
                msg.visible_at_ms = now_ms() + timeout.as_millis() as u64;
                q.write(&path, &msg)?;
            }
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.run(|q| {
            let now = now_ms();
            let mut depth = QueueDepth::default();
            for path in q.message_files(&q.dir)? {
                match q.read(&path)? {
                    Some(m) if m.visible_at_ms > now && m.receive_count > 0 => depth.in_flight += 1,
                    Some(_) => depth.visible += 1,
                    None => {}
                }
            }
            depth.dead_letters = q.message_files(&q.dlq)?.len() as u64;
            Ok(depth)
        })
        .await
    }

    async fn receive_dead_letters(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        self.run(move |q| {
            let _guard = q.lock()?;
            let now = now_ms();
            let mut out = Vec::new();
            for path in q.message_files(&q.dlq)? {
                if out.len() >= max {
                    break;
                }
                let Some(mut msg) = q.read(&path)? else {
                    continue;
                };
                // Moved here while visible: hidden only while a look holds it.
                if msg.visible_at_ms > now {
                    continue;
                }
                let id = q.hold(&path, &mut msg, now + visibility.as_millis() as u64)?;
                out.push(Received {
                    receipt: id.clone(),
                    id,
                    body: msg.body,
                    receive_count: msg.receive_count,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn release_dead_letters(&self, receipts: &[String]) -> Result<(), QueueError> {
        let paths = receipts
            .iter()
            .map(|r| self.dead_letter_path(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |q| {
            let _guard = q.lock()?;
            for path in paths {
                if let Some(mut msg) = q.read(&path)? {
                    msg.visible_at_ms = 0;
                    q.write(&path, &msg)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn delete_dead_letter(&self, receipt: &str) -> Result<(), QueueError> {
        self.remove(self.dead_letter_path(receipt)?).await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.run(|q| {
            let _guard = q.lock()?;
            for path in q.message_files(&q.dir)? {
                let _ = fs::remove_file(path);
            }
            Ok(())
        })
        .await
    }
}

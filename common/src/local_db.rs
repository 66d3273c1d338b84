//! One SQLite file shared by the tasks of a process, with group commit: the local store's
//! objects and the local queues' messages live in such files, so a harvested document's
//! dozen writes cost a dozen rows, not a dozen new files, fsyncs and directory locks (which
//! made the kernel, not Sheaf, the local harvest's bottleneck).
//!
//! Writes go to one writer thread a file, which runs whatever has queued up meanwhile in one
//! transaction, however many tasks write at once. A write of several statements runs in its
//! own savepoint, and one statement undoes itself when it fails, so a write that fails
//! leaves the others; each is answered only after the commit: a read that follows it sees
//! it. Reads run on a pooled connection in the calling task: a read of a cached page costs a
//! few microseconds, less than handing it to a thread.
//! WAL mode lets reads go on beside the writer; SQLite's locks serialise the writers of
//! several processes (a `sheaf` command beside a running `serve`). Another thread a file
//! checkpoints the WAL, so that commits do not wait for a checkpoint's fsyncs.

use std::collections::HashMap;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// How long a statement waits for another process's write to end before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after a commit the WAL is checkpointed: long enough that a busy writer's pages,
/// each rewritten by many commits, are copied once.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(100);

/// WAL pages past which the writer checkpoints after its commit itself (SQLite's default is
/// 1,000): 160 MB (the WAL file reached 176 MB in a 10,000-document harvest). Each time, the
/// next transaction waits for the checkpoint's two fsyncs: at 10,000 pages a 10,000-document
/// first harvest was 5 % slower, side by side (100,000 pages gained 2 % more, for a WAL of up
/// to 400 MB).
const WRITER_CHECKPOINT_PAGES: i64 = 40_000;

/// Writes one transaction takes at most: enough to amortise its commit, few enough that the
/// first writer of a batch does not wait long for the last.
const MAX_BATCH: usize = 512;

/// Something the database could not do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(String);

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

/// A write, run in the writer's transaction (or told the transaction could not start): whether
/// it succeeded, and how to answer its caller once the commit is known.
type Run = Box<dyn FnOnce(Result<&Connection, &DbError>) -> (bool, Answer) + Send>;

/// A write queued for the writer.
struct Job {
    run: Run,
    /// Whether it needs a savepoint of its own to be all or nothing (`LocalDb::write`), or
    /// keeps what it did before failing (`LocalDb::write_in_order`).
    needs_savepoint: bool,
}

/// Tells a write's caller its outcome, given the commit's.
type Answer = Box<dyn FnOnce(Result<(), &DbError>) + Send>;

/// An open database file; cheap to share (`Arc`), one per file in a process.
pub struct LocalDb {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

/// The files open in this process, so that every opener of a file shares its one writer.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<LocalDb>>>> = LazyLock::new(Default::default);

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: a commit survives the process's death at once, and a power cut once the WAL is
    // next synced (at a checkpoint, or `make_durable`). A power cut rewinds the file to a
    // moment of its history, never a mix of moments, so one file that holds both the objects
    // and the messages that lead to them comes back as a state the pipeline could have been
    // in, which at-least-once delivery already covers. FULL (an fsync a commit) cost a
    // 5,000-document harvest a third of its time.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl LocalDb {
    /// Opens (creating when needed) the database at `path`, with `schema` run once at open
    /// (`CREATE ... IF NOT EXISTS`); a file this process has open already is shared.
    pub fn open(path: &Path, schema: &str) -> Result<Arc<LocalDb>, DbError> {
        Self::open_with(path, schema, WRITER_CHECKPOINT_PAGES)
    }

    /// `open`, the writer checkpointing once the WAL holds `checkpoint_pages`: a threshold
    /// only the call that opens the file sets (a later opener shares its writer as it is).
    fn open_with(
        path: &Path,
        schema: &str,
        checkpoint_pages: i64,
    ) -> Result<Arc<LocalDb>, DbError> {
        let mut open = OPEN.lock().map_err(|e| DbError(e.to_string()))?;
        let canonical = path.to_path_buf();
        if let Some(db) = open.get(&canonical).and_then(Weak::upgrade) {
            db.read(|conn| conn.execute_batch(schema))?;
            return Ok(db);
        }
        let mut conn = connect(path)?;
        conn.execute_batch(schema)?;
        // A thread of its own checkpoints, a while after commits, so that the writer's
        // commits do not wait for the checkpoint's syncs; the writer does only when the WAL
        // has grown past `checkpoint_pages` all the same (the other thread, checkpointing
        // beside a writer that never pauses, never catches up with it, and the WAL starts
        // over only then). SQLite's own threshold would checkpoint inside the commit, every
        // write in it waiting for the fsyncs; the writer checkpoints after answering them
        // (`write_loop`), counting the WAL's pages with this hook, which replaces SQLite's.
        let wal_pages = Arc::new(AtomicI64::new(0));
        let counted = wal_pages.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: c_int| {
            counted.store(i64::from(pages), Ordering::Relaxed);
            Ok(())
        }))?;
        let checkpointer = connect(path)?;
        let (writer, jobs) = mpsc::channel::<Job>();
        let (committed, commits) = mpsc::channel::<()>();
        let checkpointing = Arc::new(Mutex::new(()));
        let turns = checkpointing.clone();
        std::thread::Builder::new()
            .name("sheaf-db-writer".into())
            .spawn(move || write_loop(conn, jobs, committed, wal_pages, checkpoint_pages, turns))
            .map_err(|e| DbError(e.to_string()))?;
        std::thread::Builder::new()
            .name("sheaf-db-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, commits, checkpointing))
            .map_err(|e| DbError(e.to_string()))?;
        let db = Arc::new(LocalDb {
            path: path.to_path_buf(),
            writer,
            readers: Mutex::new(Vec::new()),
        });
        open.retain(|_, db| db.strong_count() > 0);
        open.insert(canonical, Arc::downgrade(&db));
        Ok(db)
    }

    /// Runs `read` on a pooled connection (opened when none is free).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, DbError> {
        let pooled = self
            .readers
            .lock()
            .map(|mut pool| pool.pop())
            .ok()
            .flatten();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = read(&conn).map_err(DbError::from);
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
        result
    }

    /// Puts every commit made so far on disk, for before something outside the file (the
    /// search index) comes to depend on them: a power cut must not rewind the file behind it.
    /// Committed pages are in the WAL (or, after a completed checkpoint, in the database file,
    /// which SQLite synced then), so syncing the WAL is enough; the database file is synced as
    /// well, which costs little and depends on no more of SQLite's internals.
    pub fn make_durable(&self) -> Result<(), DbError> {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        for path in [wal.as_path(), self.path.as_path()] {
            match std::fs::File::open(path) {
                Ok(file) => file.sync_data().map_err(|e| DbError(e.to_string()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DbError(e.to_string())),
            }
        }
        Ok(())
    }

    /// Runs `write` in a transaction of its own, now, on this thread: for work at open, before
    /// any task writes (a one-time migration).
    pub fn write_now<T>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, DbError> {
        let mut conn = connect(&self.path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = write(&tx)?;
        tx.commit()?;
        Ok(result)
    }

    /// Runs `write` in the writer's next transaction; its outcome once that has committed.
    pub async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.queue_write(write, true).await
    }

    /// `write` for a write whose statements each stand alone: when one fails, it undoes
    /// itself (as one statement does) and those before it stay, as writes made one after
    /// another do. One statement is all or nothing. (A savepoint copies each page the write
    /// changes to the statement journal: 5 % of a harvest.)
    pub async fn write_in_order<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.queue_write(write, false).await
    }

    async fn queue_write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
        needs_savepoint: bool,
    ) -> Result<T, DbError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let outcome = match conn {
                Ok(conn) => write(conn),
                Err(e) => Err(DbError(format!("no transaction: {e}"))),
            };
            let succeeded = outcome.is_ok();
            let answer: Answer = Box::new(move |commit| {
                let result = match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(DbError(format!("commit failed: {e}"))),
                };
                // A caller that stopped waiting (its task was dropped) needs no answer.
                let _ = reply.send(result);
            });
            (succeeded, answer)
        });
        let stopped = || DbError("the database's writer has stopped".into());
        let job = Job {
            run,
            needs_savepoint,
        };
        self.writer.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer thread: takes what has queued, runs it in one transaction, answers each. Ends
/// when the last `LocalDb` of its file is gone.
fn write_loop(
    mut conn: Connection,
    jobs: mpsc::Receiver<Job>,
    committed: mpsc::Sender<()>,
    wal_pages: Arc<AtomicI64>,
    checkpoint_pages: i64,
    checkpointing: Arc<Mutex<()>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (answers, commit) = run_batch(&mut conn, batch);
        for answer in answers {
            answer(commit.as_ref().map(|_| ()));
        }
        // Past the threshold, the WAL is copied into the database file (and starts over at
        // the next transaction) now that the writes it holds are answered; the writes that
        // queue meanwhile go in the next transaction. While a reader still needs the WAL's
        // older pages, the checkpoint stops short, and it is tried after each commit.
        if wal_pages.load(Ordering::Relaxed) >= checkpoint_pages {
            checkpoint(&conn, &checkpointing);
        }
        let _ = committed.send(());
    }
}

/// The checkpointer thread: a while after a commit, copies what the WAL holds into the
/// database file (PASSIVE: beside the writer, never blocking it), so that the writer seldom
/// has to. Checkpointing in the writer's commits (SQLite's default, every 1,000 pages) held
/// every write behind two fsyncs about 200 times a 10,000-document harvest. Ends with the
/// writer.
fn checkpoint_loop(conn: Connection, commits: mpsc::Receiver<()>, checkpointing: Arc<Mutex<()>>) {
    while commits.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_AFTER);
        // The commits made meanwhile are in this checkpoint too.
        while commits.try_recv().is_ok() {}
        checkpoint(&conn, &checkpointing);
    }
}

/// One PASSIVE checkpoint, taking turns with the file's other checkpointing thread. SQLite
/// lets one checkpoint run at a time and answers another "busy" at once, without waiting: the
/// writer's, refused while the checkpointer thread was copying (and a loaded machine can hold
/// that thread off the CPU for long), let the WAL grow past its threshold by the writer's every
/// commit meanwhile (16 MB instead of 0.4 MB in a test). Taking turns, the writer waits for
/// the copy under way and then completes its own.
fn checkpoint(conn: &Connection, checkpointing: &Mutex<()>) {
    let _turn = checkpointing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "database checkpoint failed; the next commit retries it");
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) -> (Vec<Answer>, Result<(), DbError>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = DbError::from(e);
            let answers = batch.into_iter().map(|job| (job.run)(Err(&e)).1).collect();
            return (answers, Err(e));
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    for job in jobs.by_ref() {
        // A job that fails halfway leaves no half of it behind: its savepoint is rolled back
        // (a one-statement job's statement undoes itself).
        let answer = if !job.needs_savepoint {
            (job.run)(Ok(&tx)).1
        } else {
            match tx.savepoint() {
                Ok(mut savepoint) => {
                    let (succeeded, answer) = (job.run)(Ok(&savepoint));
                    if !succeeded {
                        let _ = savepoint.rollback();
                    }
                    let _ = savepoint.commit();
                    answer
                }
                Err(e) => (job.run)(Err(&DbError::from(e))).1,
            }
        };
        answers.push(answer);
        if tx.is_autocommit() {
            // An error SQLite answers by rolling the whole transaction back (a full disk):
            // the jobs run so far are undone, and the rest must not run outside it.
            break;
        }
    }
    if tx.is_autocommit() {
        let e = DbError("the transaction was rolled back by an error".into());
        answers.extend(jobs.map(|job| (job.run)(Err(&e)).1));
        return (answers, Err(e));
    }
    let commit = tx.commit().map_err(DbError::from);
    (answers, commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(conn: &Connection, k: &str, v: Option<&str>) -> Result<(), DbError> {
        conn.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", (k, v))?;
        Ok(())
    }

    /// Writes that fail leave nothing behind, whether one statement or several, and the
    /// writes committed beside them in the same transactions are kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_leaves_nothing_and_its_neighbours_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL);";
        let db = LocalDb::open(&dir.path().join("t.db"), schema).expect("open");
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..50 {
            let db = db.clone();
            writes.spawn(async move {
                let halfway = db
                    .write(move |conn| {
                        insert(conn, &format!("half{i}"), Some("x"))?;
                        insert(conn, &format!("half{i}"), Some("again"))
                    })
                    .await;
                let bad = db
                    .write_in_order(move |conn| insert(conn, &format!("null{i}"), None))
                    .await;
                let good = db
                    .write_in_order(move |conn| insert(conn, &format!("good{i}"), Some("y")))
                    .await;
                (halfway.is_err(), bad.is_err(), good.is_ok())
            });
        }
        while let Some(outcome) = writes.join_next().await {
            assert_eq!(outcome.expect("task"), (true, true, true));
        }
        let keys: Vec<String> = db
            .read(|conn| {
                conn.prepare("SELECT k FROM t ORDER BY k")?
                    .query_map([], |row| row.get(0))?
                    .collect()
            })
            .expect("read");
        let mut expected: Vec<String> = (0..50).map(|i| format!("good{i}")).collect();
        expected.sort();
        assert_eq!(keys, expected);
    }

    /// Commits reach the database file without the writer checkpointing (it does only past
    /// `WRITER_CHECKPOINT_PAGES`): the checkpointer thread copies them there.
    #[tokio::test]
    async fn the_checkpointer_copies_commits_into_the_database_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL);";
        let db = LocalDb::open(&path, schema).expect("open");
        let value = "x".repeat(1000);
        for i in 0..1000 {
            let value = value.clone();
            db.write_in_order(move |conn| insert(conn, &format!("k{i}"), Some(&value)))
                .await
                .expect("write");
        }
        // A megabyte written, far below the writer's own threshold (160 MB of WAL).
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < 1_000_000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(size() >= 1_000_000, "database file {} bytes", size());
    }

    /// A writer that never pauses (the checkpointer thread then never catches up) keeps the
    /// WAL near its threshold: the writer checkpoints past it, between its transactions, and
    /// the WAL starts over. Every write is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_writer_keeps_the_wal_near_its_threshold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL);";
        let threshold = 100;
        let db = LocalDb::open_with(&path, schema, threshold).expect("open");
        let value = "x".repeat(1000);
        let mut writers = tokio::task::JoinSet::new();
        for task in 0..32 {
            let (db, value) = (db.clone(), value.clone());
            writers.spawn(async move {
                for i in 0..200 {
                    let value = value.clone();
                    db.write_in_order(move |conn| {
                        insert(conn, &format!("k{task}-{i}"), Some(&value))
                    })
                    .await
                    .expect("write");
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.expect("writer");
        }
        let rows: i64 = db
            .read(|conn| conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
            .expect("count");
        assert_eq!(rows, 32 * 200);
        // 6.4 MB went through the WAL; it grew to the threshold and the frames of at most a
        // few transactions more (a page and a frame header each).
        let wal = std::fs::metadata(dir.path().join("t.db-wal"))
            .expect("wal")
            .len();
        let most = 3 * threshold as u64 * (4096 + 24);
        assert!(wal <= most, "WAL of {wal} bytes, more than {most}");
    }
}

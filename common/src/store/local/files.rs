//! The local store's file half: `ROOT/objects/KEY`, written to a temp file beside it first and
//! renamed into place, so a reader never sees half an object and a crash leaves at most a temp
//! file (which listings skip). It holds what is large or streamed (packages: multipart uploads,
//! served from their file); the small objects go to the database half when there is one. The
//! temp file shares the object's folder because a rename between folders takes a lock on the
//! whole file system: with it in `ROOT/tmp`, concurrent writes queued on that lock. Every
//! mutation takes an exclusive `flock` on `ROOT/store.lock`, which gives the conditional writes
//! the same meaning as S3's across threads and processes (a `sheaf` command beside a running
//! `serve`).

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::store::{
    ListEntry, MultipartUpload, Object, ObjectStore, PutMode, StoreError, UploadState, validate_key,
};

#[derive(Clone)]
pub(super) struct FileStore {
    root: PathBuf,
    /// Base of download links, e.g. `http://127.0.0.1:8765`.
    public_url: String,
    signing_key: Vec<u8>,
}

impl FileStore {
    /// Opens (creating when needed) a store under `root`. `public_url` is where `serve` answers,
    /// for signed `/downloads/` links.
    pub fn open(root: &Path, public_url: &str) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("objects")).map_err(|e| StoreError::io("objects", e))?;
        let signing_key = load_or_create_secret(&root.join("signing.key"))?;
        Ok(FileStore {
            root: root.to_path_buf(),
            public_url: public_url.trim_end_matches('/').to_string(),
            signing_key,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join("objects").join(key))
    }

    fn lock(&self) -> Result<File, StoreError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("store.lock"))
            .map_err(|e| StoreError::io("store.lock", e))?;
        file.lock().map_err(|e| StoreError::io("store.lock", e))?;
        Ok(file)
    }

    /// A new temp file in the folder of `key`. A delete that empties the folder may remove it
    /// between our making it and creating the file: then it is made again.
    fn temp_file(&self, key: &str) -> Result<(PathBuf, File), StoreError> {
        let dest = self.path(key)?;
        let dir = dest.parent().unwrap_or(&self.root);
        let path = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let mut tries = 0;
        loop {
            // Even `create_dir_all` meets it (a parent made, then pruned before its child).
            match fs::create_dir_all(dir).and_then(|()| File::create(&path)) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == ErrorKind::NotFound && tries < 10 => tries += 1,
                Err(e) => return Err(StoreError::io(key, e)),
            }
        }
    }

    /// Moves a finished temp file (whose ETag is `etag`) to `key`, honouring `mode`. Only an
    /// `Update` reads the current object: the others never pay for its size.
    fn commit(
        &self,
        tmp: &Path,
        key: &str,
        mode: &PutMode,
        etag: String,
    ) -> Result<String, StoreError> {
        let dest = self.path(key)?;
        let _guard = self.lock()?;
        let allowed = match mode {
            PutMode::Overwrite => true,
            PutMode::Create => !dest.exists(),
            PutMode::Update(expected) => match fs::read(&dest) {
                Ok(bytes) => etag_of(&bytes) == *expected,
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(StoreError::io(key, e)),
            },
        };
        if !allowed {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::Precondition(key.to_string()));
        }
        fs::rename(tmp, &dest).map_err(|e| StoreError::io(key, e))?;
        Ok(etag)
    }

    /// The file behind `key`, for serving large objects without reading them into memory.
    pub fn file_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.path(key)
    }

    /// Checks a `/downloads/` link made by `presign_get`.
    pub fn verify_signature(&self, key: &str, expires: u64, signature: &str) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        if expires < now {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(key, expires).verify_slice(&given).is_ok()
    }

    fn mac(&self, key: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.signing_key).expect("HMAC accepts any key");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

/// Starts the name of a temp file: keys hold no backslash, so no object has such a name.
const TEMP_PREFIX: &str = "\\partial-";

/// A content hash, so the ETag changes exactly when the bytes do (as S3's MD5 ETag does).
pub(super) fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, StoreError> {
    match fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("signing.key", e)),
    }
    let secret: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    fs::write(path, &secret).map_err(|e| StoreError::io("signing.key", e))?;
    Ok(secret)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::io("task", e))?
}

/// A listing's walk over the folders: keys under `prefix` that sort after `after`, at most
/// `limit` of them. Each folder keeps only its first `limit` entries (a heap), so a page of a
/// folder of 100,000 files costs a page of memory.
struct Walk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
    out: Vec<ListEntry>,
}

impl Walk<'_> {
    /// Whether a file key, or a folder's key prefix (ending in `/`), can hold a wanted key.
    fn wanted(&self, key: &str) -> bool {
        let folder = key.ends_with('/');
        let in_prefix = key.starts_with(self.prefix) || (folder && self.prefix.starts_with(key));
        let after = match self.after {
            None => true,
            Some(after) if folder => after < key || after.starts_with(key),
            Some(after) => key > after,
        };
        in_prefix && after
    }

    /// Walks folder `dir`, whose keys start with `key_prefix`, in S3's key order: a folder
    /// sorts as its name followed by `/`. A pass keeps the folder's first entries that the
    /// page still has room for; a subfolder may give none (all of it before `after`, or
    /// empty), so passes go on after the last entry walked until the page is full or the
    /// folder is done.
    fn folder(&mut self, dir: &Path, key_prefix: &str) -> std::io::Result<()> {
        let mut walked: Option<String> = None;
        loop {
            let room = self.limit - self.out.len();
            let Some(first) = self.first_entries(dir, key_prefix, walked.as_deref(), room)? else {
                return Ok(());
            };
            let whole = first.len() < room;
            for key in first.into_sorted_vec() {
                if self.out.len() >= self.limit {
                    return Ok(());
                }
                let path = dir.join(key[key_prefix.len()..].trim_end_matches('/'));
                if key.ends_with('/') {
                    self.folder(&path, &key)?;
                } else {
                    match fs::metadata(&path) {
                        Ok(meta) => self.out.push(ListEntry {
                            key: key.clone(),
                            size: meta.len(),
                        }),
                        // Deleted since the folder was read: it is simply not listed.
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                walked = Some(key);
            }
            if whole || self.out.len() >= self.limit {
                return Ok(());
            }
        }
    }

    /// The first `room` wanted entries of folder `dir` after `walked` (a heap, so a folder of
    /// 100,000 files costs a page of memory); `None` when the folder is gone or has none.
    fn first_entries(
        &self,
        dir: &Path,
        key_prefix: &str,
        walked: Option<&str>,
        room: usize,
    ) -> std::io::Result<Option<std::collections::BinaryHeap<String>>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut first = std::collections::BinaryHeap::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            // The entry's type comes with the folder's listing: only a page's files are
            // looked at again (for their size).
            let is_dir = match entry.file_type() {
                Ok(kind) => kind.is_dir(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let key = if is_dir {
                format!("{key_prefix}{name}/")
            } else {
                format!("{key_prefix}{name}")
            };
            if self.wanted(&key) && walked.is_none_or(|w| key.as_str() > w) {
                first.push(key);
                if first.len() > room {
                    first.pop();
                }
            }
        }
        Ok((!first.is_empty()).then_some(first))
    }
}

impl FileStore {
    /// The bytes at `key`, if any (for moving objects between the store's halves).
    #[cfg(feature = "sqlite")]
    pub(super) fn read_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                Ok(None)
            }
            Err(e) => Err(StoreError::io(key, e)),
        }
    }

    /// Removes `key` and the folders it leaves empty; a missing key is no error.
    pub(super) fn remove_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        // Deleting what is not there changes nothing: no lock needed to see so.
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == ErrorKind::NotFound) {
            return Ok(());
        }
        let _guard = self.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(key, e)),
        }
        // Prune folders left empty, so listings show no empty directories.
        let objects = self.root.join("objects");
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == objects || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    pub(super) fn walk(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        if !dir_part.is_empty() {
            validate_key(dir_part)?;
        }
        let key_prefix = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let mut walk = Walk {
            prefix,
            after,
            limit,
            out: Vec::new(),
        };
        walk.folder(&self.root.join("objects").join(dir_part), &key_prefix)
            .map_err(|e| StoreError::io(prefix, e))?;
        Ok(walk.out)
    }
}

#[async_trait]
impl ObjectStore for FileStore {
    async fn get(&self, key: &str) -> Result<Object, StoreError> {
        let path = self.path(key)?;
        let key = key.to_string();
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Object {
                etag: etag_of(&bytes),
                body: Bytes::from(bytes),
                content_type: None,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                Err(StoreError::NotFound(key))
            }
            Err(e) => Err(StoreError::io(&key, e)),
        })
        .await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        _content_type: &str,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        validate_key(key)?;
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let (tmp, mut file) = this.temp_file(&key)?;
            file.write_all(&body)
                .and_then(|_| file.sync_data())
                .map_err(|e| StoreError::io(&key, e))?;
            drop(file);
            this.commit(&tmp, &key, &mode, etag_of(&body))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, StoreError> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        blocking(move || this.walk(&prefix, None, usize::MAX)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        let after = start_after.map(str::to_string);
        blocking(move || this.walk(&prefix, after.as_deref(), limit)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let (this, key) = (self.clone(), key.to_string());
        blocking(move || this.remove_blocking(&key)).await
    }

    async fn start_multipart(
        &self,
        key: &str,
        _content_type: &str,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        validate_key(key)?;
        let this = self.clone();
        let owned = key.to_string();
        let (tmp, file) = blocking(move || this.temp_file(&owned)).await?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            key: key.to_string(),
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            parts: Vec::new(),
        }))
    }

    async fn resume_multipart(
        &self,
        key: &str,
        state: &UploadState,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        validate_key(key)?;
        if !state.id.starts_with(TEMP_PREFIX) || state.id.contains('/') {
            return Err(StoreError::io(
                key,
                format!("not an upload: {:?}", state.id),
            ));
        }
        let dest = self.path(key)?;
        let tmp = dest.parent().unwrap_or(&self.root).join(&state.id);
        let sizes = total_size(&state.parts);
        let (owned, bytes) = (key.to_string(), state.bytes);
        let path = tmp.clone();
        let (file, hasher) = blocking(move || {
            let not_there = || StoreError::NotFound(owned.clone());
            let mut file =
                File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| match e.kind() {
                        ErrorKind::NotFound => not_there(),
                        _ => StoreError::io(&owned, e),
                    })?;
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(&owned, e))?
                .len();
            if len < bytes || sizes != bytes {
                return Err(StoreError::Precondition(format!(
                    "{owned}: the upload holds {len} bytes, not the {bytes} set aside"
                )));
            }
            // Bytes a process that died wrote after the suspension are written again.
            file.set_len(bytes).map_err(|e| StoreError::io(&owned, e))?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut std::io::Read::take(&file, bytes), &mut hasher)
                .map_err(|e| StoreError::io(&owned, e))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))
                .map_err(|e| StoreError::io(&owned, e))?;
            Ok((file, hasher))
        })
        .await?;
        Ok(Box::new(LocalUpload {
            store: self.clone(),
            key: key.to_string(),
            tmp,
            file: Some(file),
            hasher,
            parts: state.parts.clone(),
        }))
    }

    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        validate_key(key)?;
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| StoreError::io(key, e))?
            .as_secs()
            + expires_in.as_secs();
        let signature = hex::encode(self.mac(key, expires).finalize().into_bytes());
        Ok(format!(
            "{}/downloads/{key}?expires={expires}&signature={signature}",
            self.public_url
        ))
    }
}

/// The bytes of a local upload's parts, whose "ETags" are their sizes.
fn total_size(parts: &[String]) -> u64 {
    parts.iter().filter_map(|p| p.parse::<u64>().ok()).sum()
}

struct LocalUpload {
    store: FileStore,
    key: String,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    /// Each part's size (the local store's stand-in for S3's part ETags).
    parts: Vec<String>,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    async fn put_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StoreError::io(&self.key, "upload already finished"))?;
        let key = self.key.clone();
        self.hasher.update(&data);
        self.parts.push(data.len().to_string());
        let file = blocking(move || {
            file.write_all(&data).map_err(|e| StoreError::io(&key, e))?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<String, StoreError> {
        let file = self.file.take();
        let key = self.key.clone();
        let etag = hex::encode(&std::mem::take(&mut self.hasher).finalize()[..16]);
        blocking(move || {
            if let Some(file) = file {
                file.sync_data().map_err(|e| StoreError::io(&key, e))?;
            }
            self.store
                .commit(&self.tmp, &key, &PutMode::Overwrite, etag)
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.file.take();
        let _ = fs::remove_file(&self.tmp);
        Ok(())
    }

    fn suspend(self: Box<Self>) -> UploadState {
        let id = self
            .tmp
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = total_size(&self.parts);
        UploadState {
            id,
            parts: self.parts,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), "http://127.0.0.1:1").unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_temp_file_left_by_a_crash_is_not_an_object() {
        let (dir, store) = store();
        store
            .put(
                "waf/a.xml",
                Bytes::from_static(b"<a/>"),
                "application/xml",
                PutMode::Create,
            )
            .await
            .unwrap();
        let folder = dir.path().join("objects/waf");
        fs::write(folder.join(format!("{TEMP_PREFIX}dead")), b"half").unwrap();
        let keys: Vec<String> = store
            .list("waf/")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["waf/a.xml"]);
    }

    /// Deletes prune the folders they empty while puts make temp files in them: many tasks
    /// doing both in one folder must all succeed and leave nothing behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn puts_and_deletes_racing_in_one_folder_all_succeed() {
        let (_dir, store) = store();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let key = format!("deep/folder/k{t}-{i}");
                        store
                            .put(
                                &key,
                                Bytes::from_static(b"x"),
                                "text/plain",
                                PutMode::Create,
                            )
                            .await
                            .unwrap();
                        store.delete(&key).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(store.list("deep/").await.unwrap().is_empty());
    }
}

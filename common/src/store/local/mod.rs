//! The object store on a local folder: small objects in a SQLite database (`db`, one file,
//! group-committed writes) and packages in files (`files`: streamed in as multipart uploads,
//! served from their file). Which half holds a key depends on its prefix alone, so a key is
//! never in both. A build without the `sqlite` feature (the Lambda bootstrap, which never
//! opens a local store) keeps every object in files, with the same contract.

#[cfg(feature = "sqlite")]
mod db;
mod files;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ListEntry, Listed, MultipartUpload, Object, ObjectStore, PutMode, StoreError, UploadState,
    Versions, Write,
};
use files::FileStore;

/// Keys kept as files: packages, which arrive as multipart uploads and leave as downloads.
/// A multipart upload to any other key is assembled in a file too, then moved into the
/// database when it completes.
#[cfg(feature = "sqlite")]
const FILE_PREFIX: &str = "packages/";

#[cfg(feature = "sqlite")]
fn in_files(key: &str) -> bool {
    key.starts_with(FILE_PREFIX)
}

#[derive(Clone)]
pub struct LocalStore {
    files: FileStore,
    #[cfg(feature = "sqlite")]
    db: Option<db::DbStore>,
}

impl LocalStore {
    /// Opens (creating when needed) a store under `root`. `public_url` is where `serve` answers,
    /// for signed `/downloads/` links. Objects an earlier version kept as files outside
    /// `packages/` are moved into the database first.
    pub fn open(root: &Path, public_url: &str) -> Result<Self, StoreError> {
        Self::open_with_database(root, &root.join("objects.db"), public_url)
    }

    /// `open`, keeping the objects in the SQLite file `database` (which other tables may
    /// share: the data folder's queues, so that both come back from a power cut as of one
    /// moment).
    pub fn open_with_database(
        root: &Path,
        database: &Path,
        public_url: &str,
    ) -> Result<Self, StoreError> {
        let files = FileStore::open(root, public_url)?;
        #[cfg(feature = "sqlite")]
        {
            let db = db::DbStore::open(database)?;
            migrate(&files, &db)?;
            Ok(LocalStore {
                files,
                db: Some(db),
            })
        }
        #[cfg(not(feature = "sqlite"))]
        {
            // Without SQLite every object is a file.
            let _ = database;
            Ok(LocalStore { files })
        }
    }

    /// A store that keeps every object in files (what a build without SQLite does), so the
    /// contract suite can hold both to the same rules.
    pub fn open_files_only(root: &Path, public_url: &str) -> Result<Self, StoreError> {
        Ok(LocalStore {
            files: FileStore::open(root, public_url)?,
            #[cfg(feature = "sqlite")]
            db: None,
        })
    }

    #[cfg(feature = "sqlite")]
    fn db_for(&self, key: &str) -> Option<&db::DbStore> {
        self.db.as_ref().filter(|_| !in_files(key))
    }

    #[cfg(not(feature = "sqlite"))]
    fn db_for(&self, _key: &str) -> Option<&NoDb> {
        None
    }

    /// The file behind `key`, for serving large objects without reading them into memory;
    /// only packages have one.
    pub fn file_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if self.db_for(key).is_some() {
            return Err(StoreError::NotFound(key.to_string()));
        }
        self.files.file_path(key)
    }

    /// Checks a `/downloads/` link made by `presign_get`.
    pub fn verify_signature(&self, key: &str, expires: u64, signature: &str) -> bool {
        self.files.verify_signature(key, expires, signature)
    }
}

/// Stands in for the database half in a build without it: never handed out.
#[cfg(not(feature = "sqlite"))]
enum NoDb {}

#[cfg(not(feature = "sqlite"))]
impl NoDb {
    fn get(&self, _: &str) -> Result<Option<Object>, StoreError> {
        match *self {}
    }
    async fn put(&self, _: &str, _: Bytes, _: PutMode) -> Result<String, StoreError> {
        match *self {}
    }
    async fn delete(&self, _: &str) -> Result<(), StoreError> {
        match *self {}
    }
}

/// Moves objects an earlier version kept as files (outside `packages/`) into the database,
/// once: they are written and the move marked done in one transaction, then the files go. A
/// crash between the two leaves files the mark says to remove without reading.
#[cfg(feature = "sqlite")]
fn migrate(files: &FileStore, db: &db::DbStore) -> Result<(), StoreError> {
    let old: Vec<String> = files
        .walk("", None, usize::MAX)?
        .into_iter()
        .map(|e| e.key)
        .filter(|key| !in_files(key))
        .collect();
    if !db.migrated()? {
        let mut objects = Vec::with_capacity(old.len());
        for key in &old {
            if let Some(body) = files.read_blocking(key)? {
                objects.push((key.clone(), body));
            }
        }
        db.import(objects)?;
        if !old.is_empty() {
            tracing::info!(
                objects = old.len(),
                "moved the store's objects into its database"
            );
        }
    }
    for key in &old {
        files.remove_blocking(key)?;
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
/// Merges two key-ordered pages into one of at most `limit` entries.
fn merge(a: Vec<ListEntry>, b: Vec<ListEntry>, limit: usize) -> Vec<ListEntry> {
    let mut out: Vec<ListEntry> = a.into_iter().chain(b).collect();
    out.sort_by(|x, y| x.key.cmp(&y.key));
    out.truncate(limit);
    out
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &str) -> Result<Object, StoreError> {
        super::validate_key(key)?;
        match self.db_for(key) {
            Some(db) => db
                .get(key)?
                .ok_or_else(|| StoreError::NotFound(key.to_string())),
            None => self.files.get(key).await,
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Object>>, StoreError> {
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db
            && keys.iter().all(|key| !in_files(key))
        {
            for key in keys {
                super::validate_key(key)?;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            return db.get_many(&keys);
        }
        // Packages among them (never asked for so): each on its own.
        super::get_each(self, keys).await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        super::validate_key(key)?;
        match self.db_for(key) {
            Some(db) => db.put(key, body, mode).await,
            None => self.files.put(key, body, content_type, mode).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, StoreError> {
        self.list_page(prefix, None, usize::MAX).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db {
            // A prefix within `packages/` is the files' alone; one that `packages/` starts
            // with (the empty one) spans both halves.
            if !in_files(prefix) {
                let from_db = db.list_page(prefix, start_after, limit)?;
                if !FILE_PREFIX.starts_with(prefix) {
                    return Ok(from_db);
                }
                let from_files = self.files.list_page(prefix, start_after, limit).await?;
                return Ok(merge(from_db, from_files, limit));
            }
        }
        self.files.list_page(prefix, start_after, limit).await
    }

    async fn list_keys_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        // The database's keys from its key index; a listing in or across the files, as the
        // files list them.
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db
            && !in_files(prefix)
            && !FILE_PREFIX.starts_with(prefix)
        {
            return db.list_keys_page(prefix, start_after, limit);
        }
        super::keys_of_list_page(self, prefix, start_after, limit).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        super::validate_key(key)?;
        match self.db_for(key) {
            Some(db) => db.delete(key).await,
            None => self.files.delete(key).await,
        }
    }

    async fn write_in_order(&self, steps: Vec<Vec<Write>>) -> Result<Versions, StoreError> {
        for write in steps.iter().flatten() {
            super::validate_key(write.key())?;
        }
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db
            && steps.iter().flatten().all(|write| !in_files(write.key()))
        {
            // The writes of a step in the order given: one after another is in order.
            return db
                .write_in_order(steps.into_iter().flatten().collect())
                .await;
        }
        super::write_each(self, steps).await
    }

    async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let upload = self.files.start_multipart(key, content_type).await?;
        Ok(self.finished_in_place(key, upload))
    }

    async fn resume_multipart(
        &self,
        key: &str,
        state: &UploadState,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let upload = self.files.resume_multipart(key, state).await?;
        Ok(self.finished_in_place(key, upload))
    }

    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        self.files.presign_get(key, expires_in).await
    }

    async fn make_durable(&self) -> Result<(), StoreError> {
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db {
            db.make_durable()?;
        }
        // Files are synced as they are written.
        Ok(())
    }
}

impl LocalStore {
    /// An upload of a key the database holds is moved there when it completes.
    fn finished_in_place(
        &self,
        key: &str,
        upload: Box<dyn MultipartUpload>,
    ) -> Box<dyn MultipartUpload> {
        #[cfg(feature = "sqlite")]
        if let Some(db) = self.db_for(key) {
            return Box::new(IntoDatabase {
                upload,
                files: self.files.clone(),
                db: db.clone(),
                key: key.to_string(),
            });
        }
        let _ = key;
        upload
    }
}

/// A multipart upload assembled in a file and moved into the database on completion. A crash
/// between the two leaves a file that no listing of the database's keys shows, and that the
/// next open removes (see `migrate`).
#[cfg(feature = "sqlite")]
struct IntoDatabase {
    upload: Box<dyn MultipartUpload>,
    files: FileStore,
    db: db::DbStore,
    key: String,
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl MultipartUpload for IntoDatabase {
    async fn put_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.upload.put_part(data).await
    }

    async fn complete(self: Box<Self>) -> Result<String, StoreError> {
        self.upload.complete().await?;
        let (files, key) = (self.files.clone(), self.key.clone());
        let body = tokio::task::spawn_blocking(move || files.read_blocking(&key))
            .await
            .map_err(|e| StoreError::io(&self.key, e))??
            .ok_or_else(|| StoreError::NotFound(self.key.clone()))?;
        let etag = self
            .db
            .put(&self.key, Bytes::from(body), PutMode::Overwrite)
            .await?;
        self.files.delete(&self.key).await?;
        Ok(etag)
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.upload.abort().await
    }

    fn suspend(self: Box<Self>) -> UploadState {
        self.upload.suspend()
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    fn entry(key: &str) -> ListEntry {
        ListEntry {
            key: key.into(),
            size: 1,
        }
    }

    #[test]
    fn merged_pages_keep_key_order_and_the_limit() {
        let merged = merge(
            vec![entry("a"), entry("q")],
            vec![entry("packages/x"), entry("packages/y")],
            3,
        );
        let keys: Vec<&str> = merged.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "packages/x", "packages/y"]);
    }
}

//! The tantivy index kept in the object store, for AWS: the index function (one at a time:
//! reserved concurrency 1) applies changes to a copy in its /tmp, commits, uploads the files
//! the commit made and then a manifest naming every file of the new generation; the API
//! function loads the generation the manifest names into its /tmp and loads again when the
//! manifest changes (looked at once every few seconds). Segment files never change once
//! written (`index/files/NAME`); the files a commit rewrites are kept per generation
//! (`index/gen/G/NAME`). A file the new generation no longer names is removed one generation
//! later, so a reader still loading the one before finds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::index::{Hits, IndexError, Search, SearchIndex};
use super::tantivy_index::TantivyIndex;
use crate::domain::record::Record;
use crate::store::{ObjectStore, PutMode, StoreError, get_json, put_json};

pub const MANIFEST: &str = "index/manifest.json";
/// How long a reader trusts the generation it loaded before looking at the manifest again.
const RECHECK: Duration = Duration::from_secs(5);
/// The files a commit rewrites in place; every other file of a tantivy index is written once.
const MUTABLE: [&str; 2] = ["meta.json", ".managed.json"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    generation: u64,
    /// File name → its object key.
    files: BTreeMap<String, String>,
    /// Keys the generation before named and this one does not: a reader may still be loading
    /// them, so they are removed at the next generation.
    #[serde(default)]
    retired: Vec<String>,
}

struct Loaded {
    generation: u64,
    manifest: Manifest,
    index: Option<TantivyIndex>,
    dir: PathBuf,
    checked: Option<Instant>,
}

pub struct S3Index {
    store: Arc<dyn ObjectStore>,
    root: PathBuf,
    loaded: tokio::sync::Mutex<Loaded>,
}

fn index_error(e: impl std::fmt::Display) -> IndexError {
    IndexError::Index(e.to_string())
}

/// How often a publish starts again when merges keep removing the segments it reads.
const PUBLISH_ATTEMPTS: u32 = 10;

/// The files in `dir` of the commit `meta` (tantivy's `meta.json`) describes: its own files
/// (`MUTABLE`) and those of the segments it names (each segment's files start with its id).
fn committed_names(dir: &Path, meta: &[u8]) -> Result<Vec<String>, IndexError> {
    let meta: serde_json::Value = serde_json::from_slice(meta).map_err(index_error)?;
    let segments: std::collections::HashSet<String> = meta["segments"]
        .as_array()
        .ok_or_else(|| index_error("meta.json names no segments"))?
        .iter()
        .filter_map(|segment| segment["segment_id"].as_str())
        .map(|id| id.replace('-', ""))
        .collect();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(index_error)? {
        let name = entry
            .map_err(index_error)?
            .file_name()
            .to_string_lossy()
            .to_string();
        let of_a_segment = name
            .split_once('.')
            .is_some_and(|(id, _)| segments.contains(id));
        let whole = !name.ends_with(".temp");
        if MUTABLE.contains(&name.as_str()) || (of_a_segment && whole) {
            names.push(name);
        }
    }
    Ok(names)
}

impl S3Index {
    /// An index whose copies live under `root` (the function's /tmp).
    pub fn new(store: Arc<dyn ObjectStore>, root: &Path) -> S3Index {
        S3Index {
            store,
            root: root.to_path_buf(),
            loaded: tokio::sync::Mutex::new(Loaded {
                generation: 0,
                manifest: Manifest::default(),
                index: None,
                dir: root.join("empty"),
                checked: None,
            }),
        }
    }

    async fn manifest(&self) -> Result<Manifest, IndexError> {
        Ok(get_json::<Manifest>(self.store.as_ref(), MANIFEST)
            .await
            .map_err(index_error)?
            .map(|(m, _)| m)
            .unwrap_or_default())
    }

    /// The index of the manifest's generation, loaded when it is not yet (or `fresh`: always
    /// looked at, as the writer must).
    async fn current(&self, loaded: &mut Loaded, fresh: bool) -> Result<TantivyIndex, IndexError> {
        let recent = loaded.checked.is_some_and(|t| t.elapsed() < RECHECK);
        if let Some(index) = &loaded.index
            && recent
            && !fresh
        {
            return Ok(index.clone());
        }
        let manifest = self.manifest().await?;
        loaded.checked = Some(Instant::now());
        if let Some(index) = &loaded.index
            && manifest.generation == loaded.generation
        {
            return Ok(index.clone());
        }
        let dir = self.root.join(format!(
            "gen-{}-{}",
            manifest.generation,
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(index_error)?;
        for (name, key) in &manifest.files {
            let object = self.store.get(key).await.map_err(index_error)?;
            std::fs::write(dir.join(name), &object.body).map_err(index_error)?;
        }
        let index = TantivyIndex::open(&dir)?;
        let old = std::mem::replace(&mut loaded.dir, dir);
        loaded.index = Some(index.clone());
        loaded.generation = manifest.generation;
        loaded.manifest = manifest;
        // The generation before is no longer read here.
        let _ = std::fs::remove_dir_all(old);
        Ok(index)
    }

    /// Uploads what the last commit wrote, then the manifest of the next generation, then
    /// removes the files neither it nor the one before names.
    async fn publish(&self, loaded: &mut Loaded) -> Result<(), IndexError> {
        let generation = loaded.generation + 1;
        let mut attempts = 0;
        // Every key put, by any attempt: an earlier attempt's that no generation names go.
        let mut uploaded = std::collections::BTreeSet::new();
        let files = loop {
            match self
                .upload_committed(loaded, generation, &mut uploaded)
                .await?
            {
                Some(files) => break files,
                // A merge ended meanwhile and removed a segment the meta named.
                None if attempts < PUBLISH_ATTEMPTS => attempts += 1,
                None => {
                    return Err(index_error(
                        "the index kept changing while its files were uploaded",
                    ));
                }
            }
        };
        let kept: std::collections::BTreeSet<String> = files.values().cloned().collect();
        let named = |key: &String| kept.contains(key);
        for key in uploaded.iter().filter(|k| !named(k)) {
            self.delete_quietly(key).await;
        }
        let retired = loaded
            .manifest
            .files
            .values()
            .filter(|k| !named(k))
            .cloned()
            .collect();
        let manifest = Manifest {
            generation,
            files,
            retired,
        };
        put_json(self.store.as_ref(), MANIFEST, &manifest, PutMode::Overwrite)
            .await
            .map_err(index_error)?;
        let before = std::mem::replace(&mut loaded.manifest, manifest);
        loaded.generation = generation;
        for key in before.retired.iter().filter(|k| !named(k)) {
            self.delete_quietly(key).await;
        }
        Ok(())
    }

    /// Uploads the files of the index as last committed that neither the manifest nor an
    /// earlier attempt (`uploaded`, where each key put is noted) holds yet, and returns every
    /// file's key; `None` when a file of that commit was removed meanwhile. A segment's files
    /// are written once, so its key holds the same bytes whichever attempt put it; the
    /// commit's own files (`MUTABLE`) change from one attempt to the next, and are put again.
    ///
    /// Tantivy merges segments in the background: a merge writes its new segment's files
    /// while this runs, and once it ends removes the segments it merged. So the commit is read
    /// from `meta.json` first, and only the files of the segments it names are taken: a merged
    /// segment still being written is never uploaded half-written (and then, being written
    /// once, never again), and a segment removed meanwhile is a reason to start again.
    async fn upload_committed(
        &self,
        loaded: &Loaded,
        generation: u64,
        uploaded: &mut std::collections::BTreeSet<String>,
    ) -> Result<Option<BTreeMap<String, String>>, IndexError> {
        let meta = std::fs::read(loaded.dir.join("meta.json")).map_err(index_error)?;
        let names = committed_names(&loaded.dir, &meta)?;
        let mut files = BTreeMap::new();
        for name in names {
            let mutable = MUTABLE.contains(&name.as_str());
            let key = if mutable {
                format!("index/gen/{generation}/{name}")
            } else {
                format!("index/files/{name}")
            };
            let held = loaded.manifest.files.get(&name) == Some(&key)
                || (!mutable && uploaded.contains(&key));
            if !held {
                let body = if name == "meta.json" {
                    meta.clone()
                } else {
                    match std::fs::read(loaded.dir.join(&name)) {
                        Ok(body) => body,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(index_error(e)),
                    }
                };
                self.store
                    .put(
                        &key,
                        body.into(),
                        "application/octet-stream",
                        PutMode::Overwrite,
                    )
                    .await
                    .map_err(index_error)?;
                uploaded.insert(key.clone());
            }
            files.insert(name, key);
        }
        Ok(Some(files))
    }

    async fn delete_quietly(&self, key: &str) {
        match self.store.delete(key).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => tracing::warn!(key, error = %e, "could not remove an old index file"),
        }
    }

    async fn write(
        &self,
        change: impl AsyncFnOnce(&TantivyIndex) -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        let mut loaded = self.loaded.lock().await;
        let index = self.current(&mut loaded, true).await?;
        change(&index).await?;
        self.publish(&mut loaded).await
    }

    async fn read(&self) -> Result<TantivyIndex, IndexError> {
        let mut loaded = self.loaded.lock().await;
        self.current(&mut loaded, false).await
    }
}

#[async_trait]
impl SearchIndex for S3Index {
    async fn apply(&self, upserts: Vec<Record>, deletes: Vec<String>) -> Result<(), IndexError> {
        if upserts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        self.write(async move |index| index.apply(upserts, deletes).await)
            .await
    }

    async fn search(&self, search: &Search) -> Result<Hits, IndexError> {
        self.read().await?.search(search).await
    }

    async fn count(&self) -> Result<u64, IndexError> {
        self.read().await?.count().await
    }

    async fn holds(&self, keys: Vec<String>) -> Result<Vec<bool>, IndexError> {
        self.read().await?.holds(keys).await
    }

    async fn keys(&self) -> Result<Vec<String>, IndexError> {
        self.read().await?.keys().await
    }
}

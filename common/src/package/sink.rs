//! Where an archive's bytes go as they are made: an object store multipart upload (S3 or the
//! local store), a local file, or memory in tests.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::PackageError;
use crate::store::{MultipartUpload, ObjectStore, StoreError, UploadState};

#[async_trait]
pub trait ByteSink: Send {
    async fn write(&mut self, data: Bytes) -> Result<(), PackageError>;
}

#[async_trait]
impl<T: ByteSink + ?Sized> ByteSink for &mut T {
    async fn write(&mut self, data: Bytes) -> Result<(), PackageError> {
        (**self).write(data).await
    }
}

#[async_trait]
impl ByteSink for Vec<u8> {
    async fn write(&mut self, data: Bytes) -> Result<(), PackageError> {
        self.extend_from_slice(&data);
        Ok(())
    }
}

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's most parts in one upload.
const MAX_PARTS: u32 = 10_000;

type PartResult = (Box<dyn MultipartUpload>, Result<(), StoreError>);

/// A multipart upload fed as a byte stream: it fills one part while the previous one uploads,
/// so at most two parts are in memory. Parts start at 5 MiB and double every 1,000 parts,
/// which reaches S3's 10,000-part cap only beyond 5 TiB.
///
/// The two part buffers are reused, not freed and allocated again: freed blocks of this size
/// stay in the allocator's arenas, and the process grew by a few MiB every hundred MiB of zip.
pub struct MultipartSink {
    key: String,
    upload: Option<Box<dyn MultipartUpload>>,
    uploading: Option<JoinHandle<PartResult>>,
    /// The part being uploaded, to take its buffer back once the upload lets go of it.
    sent: Option<Bytes>,
    spare: Option<BytesMut>,
    buffer: BytesMut,
    parts: u32,
    bytes: u64,
}

impl MultipartSink {
    pub async fn start(
        store: &Arc<dyn ObjectStore>,
        key: &str,
        content_type: &str,
    ) -> Result<Self, PackageError> {
        let upload = store.start_multipart(key, content_type).await?;
        Ok(Self::over(key, upload, 0, 0, &[]))
    }

    /// A sink over `upload`, which holds `parts` parts of `uploaded` bytes; `tail` is given
    /// since.
    fn over(
        key: &str,
        upload: Box<dyn MultipartUpload>,
        parts: u32,
        uploaded: u64,
        tail: &[u8],
    ) -> Self {
        let mut buffer = BytesMut::with_capacity(MIN_PART_SIZE + (1 << 20));
        buffer.extend_from_slice(tail);
        MultipartSink {
            key: key.to_string(),
            upload: Some(upload),
            uploading: None,
            sent: None,
            spare: None,
            buffer,
            parts,
            bytes: uploaded + tail.len() as u64,
        }
    }

    /// Sets the upload aside once the part in flight is up: its state, and the bytes given
    /// since the last part (less than a part), which `resume` must be given back.
    pub async fn suspend(mut self) -> Result<(UploadState, Bytes), PackageError> {
        self.settle().await?;
        let upload = self
            .upload
            .take()
            .ok_or_else(|| PackageError::Archive("the upload is gone".into()))?;
        Ok((upload.suspend(), self.buffer.split().freeze()))
    }

    /// Goes on with an upload `suspend` set aside, `tail` first.
    pub async fn resume(
        store: &Arc<dyn ObjectStore>,
        key: &str,
        state: &UploadState,
        tail: &[u8],
    ) -> Result<Self, PackageError> {
        let upload = store.resume_multipart(key, state).await?;
        let parts = state.parts.len() as u32;
        Ok(Self::over(key, upload, parts, state.bytes, tail))
    }

    fn part_size(&self) -> usize {
        MIN_PART_SIZE << (self.parts / 1000).min(10)
    }

    /// Waits for the part in flight and takes the upload back.
    async fn settle(&mut self) -> Result<(), PackageError> {
        if let Some(handle) = self.uploading.take() {
            let (upload, result) = handle
                .await
                .map_err(|e| PackageError::Archive(format!("a part upload panicked: {e}")))?;
            self.upload = Some(upload);
            result?;
            if let Some(Ok(mut buffer)) = self.sent.take().map(Bytes::try_into_mut) {
                buffer.clear();
                self.spare = Some(buffer);
            }
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), PackageError> {
        self.settle().await?;
        if self.parts >= MAX_PARTS {
            return Err(PackageError::Archive(format!(
                "{} needs more than {MAX_PARTS} parts",
                self.key
            )));
        }
        let mut upload = self
            .upload
            .take()
            .ok_or_else(|| PackageError::Archive("the upload is gone".into()))?;
        self.parts += 1;
        self.sent = Some(part.clone());
        self.uploading = Some(tokio::spawn(async move {
            let result = upload.put_part(part).await;
            (upload, result)
        }));
        Ok(())
    }

    /// Uploads the rest and completes the object; on failure the upload is aborted.
    pub async fn complete(mut self) -> Result<u64, PackageError> {
        let rest = self.buffer.split().freeze();
        let outcome = async {
            if !rest.is_empty() || self.parts == 0 {
                self.send_part(rest).await?;
            }
            self.settle().await
        }
        .await;
        if let Err(e) = outcome {
            self.abort().await;
            return Err(e);
        }
        let upload = self
            .upload
            .take()
            .ok_or_else(|| PackageError::Archive("the upload is gone".into()))?;
        upload.complete().await?;
        Ok(self.bytes)
    }

    /// Aborts the upload so no part of it is ever offered; errors are logged, not returned
    /// (the caller is already failing, and the bucket's lifecycle rule ends what remains).
    pub async fn abort(mut self) {
        let _ = self.settle().await;
        if let Some(upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(key = %self.key, error = %e, "aborting the multipart upload failed");
        }
    }
}

#[async_trait]
impl ByteSink for MultipartSink {
    async fn write(&mut self, data: Bytes) -> Result<(), PackageError> {
        self.bytes += data.len() as u64;
        self.buffer.extend_from_slice(&data);
        if self.buffer.len() >= self.part_size() {
            // The previous part's buffer comes back once its upload is done.
            self.settle().await?;
            let room = self.part_size() + (1 << 20);
            let next = self
                .spare
                .take()
                .filter(|b| b.capacity() >= room)
                .unwrap_or_else(|| BytesMut::with_capacity(room));
            let part = std::mem::replace(&mut self.buffer, next).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }
}

/// A local file (the `sheaf package datastore --out` case).
pub struct FileSink {
    file: tokio::io::BufWriter<tokio::fs::File>,
}

impl FileSink {
    pub async fn create(path: &std::path::Path) -> Result<Self, PackageError> {
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| PackageError::Archive(format!("creating {}: {e}", path.display())))?;
        Ok(FileSink {
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    pub async fn close(mut self) -> Result<(), PackageError> {
        self.file
            .flush()
            .await
            .map_err(|e| PackageError::Archive(e.to_string()))
    }
}

#[async_trait]
impl ByteSink for FileSink {
    async fn write(&mut self, data: Bytes) -> Result<(), PackageError> {
        self.file
            .write_all(&data)
            .await
            .map_err(|e| PackageError::Archive(e.to_string()))
    }
}

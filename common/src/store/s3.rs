//! The object store on S3, with S3's own conditional writes (`If-None-Match: *`, `If-Match`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{
    ListEntry, MultipartUpload, Object, ObjectStore, PutMode, StoreError, UploadState, validate_key,
};

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }
}

/// Maps an SDK error: 404 is `NotFound`, 412 (and 409, S3's answer to a concurrent
/// conditional write) is `Precondition`, the rest is I/O with the service's message.
fn map_err<E>(key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or_default().to_string();
    match (status, code.as_str()) {
        (Some(404), _) | (_, "NoSuchKey") | (_, "NotFound") => StoreError::NotFound(key.into()),
        (Some(412), _) | (Some(409), _) | (_, "PreconditionFailed") => {
            StoreError::Precondition(key.into())
        }
        _ => {
            let message = err.message().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                )
            });
            StoreError::io(key, format!("S3 {code}: {message}"))
        }
    }
}

fn quote_etag(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

fn unquote_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Object, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        let etag = unquote_etag(out.e_tag());
        let content_type = out.content_type().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::io(key, e))?
            .into_bytes();
        Ok(Object {
            body,
            etag,
            content_type,
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        validate_key(key)?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        req = match &mode {
            PutMode::Overwrite => req,
            PutMode::Create => req.if_none_match("*"),
            PutMode::Update(etag) => req.if_match(quote_etag(etag)),
        };
        let out = req.send().await.map_err(|e| map_err(key, e))?;
        Ok(unquote_etag(out.e_tag()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(prefix, e))?;
            for obj in page.contents() {
                if let Some(key) = obj.key() {
                    out.push(ListEntry {
                        key: key.to_string(),
                        size: obj.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .max_keys(limit.min(1000) as i32)
            .into_paginator()
            .send();
        while out.len() < limit
            && let Some(page) = pages.next().await
        {
            let page = page.map_err(|e| map_err(prefix, e))?;
            out.extend(page.contents().iter().filter_map(|obj| {
                Some(ListEntry {
                    key: obj.key()?.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                })
            }));
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_err(key, e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| map_err(key, e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| StoreError::io(key, "S3 returned no upload id"))?
            .to_string();
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id,
            parts: Vec::new(),
            bytes: 0,
        }))
    }

    async fn resume_multipart(
        &self,
        key: &str,
        state: &UploadState,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        validate_key(key)?;
        // Not looked up here (moto answers ListParts in a shape the SDK refuses): S3 checks
        // the upload at the next part and at completion, where a vanished upload (ended by
        // the bucket's lifecycle rule) is NotFound and a part that is not the one set aside
        // is refused (InvalidPart). A part a dead process wrote after the suspension carries
        // a higher number and is written over.
        let parts = state
            .parts
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(etag)
                    .build()
            })
            .collect();
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: state.id.clone(),
            parts,
            bytes: state.bytes,
        }))
    }

    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        validate_key(key)?;
        let config =
            PresigningConfig::expires_in(expires_in).map_err(|e| StoreError::io(key, e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| map_err(key, e))?;
        Ok(req.uri().to_string())
    }
}

struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

#[async_trait]
impl MultipartUpload for S3Upload {
    async fn put_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        let number = self.parts.len() as i32 + 1;
        let len = data.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err(&self.key, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        self.bytes += len;
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<String, StoreError> {
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_err(&self.key, e))?;
        Ok(unquote_etag(out.e_tag()))
    }

    fn suspend(self: Box<Self>) -> UploadState {
        UploadState {
            id: self.upload_id,
            parts: self
                .parts
                .iter()
                .map(|p| p.e_tag().unwrap_or_default().to_string())
                .collect(),
            bytes: self.bytes,
        }
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| map_err(&self.key, e))?;
        Ok(())
    }
}

//! The HTTP fetcher on reqwest (rustls with ring, the TLS stack the AWS SDK already uses).
//!
//! # Design
//! The address policy is enforced in three places that together cover every connection: the
//! URL's literal address (`check_url`), every address a host name resolves to (our resolver,
//! which reqwest calls before connecting), and every redirect hop. Proxies are disabled, since
//! a proxy would resolve names where we cannot check them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};

use super::guard::{AddressPolicy, check_ip, check_url};
use super::{FetchError, FetchRequest, FetchResponse, HttpFetcher};

/// Resolves with the system resolver, then drops refused addresses; none left is an error.
struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match check_ip(a.ip(), policy) {
                    Ok(()) => true,
                    Err(r) => {
                        refused = Some(format!("{host} resolves to {r}"));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                // A typed refusal, found again in reqwest's error chain by `refusal_in`.
                return Err(match refused {
                    Some(reason) => Box::new(FetchError::Refused { url: host, reason }) as _,
                    None => format!("{host} did not resolve").into(),
                });
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct ReqwestFetcher {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl ReqwestFetcher {
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Self, FetchError> {
        let redirect_policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            match check_url(attempt.url().as_str(), policy) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("Sheaf/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .redirect(redirect_policy)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| FetchError::Transport {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(ReqwestFetcher { client, policy })
    }
}

/// The refusal our resolver or redirect policy raised, if it is somewhere in `err`'s causes.
fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(FetchError::Refused { reason, .. }) = e.downcast_ref::<FetchError>() {
            return Some(reason.clone());
        }
        current = e.source();
    }
    None
}

/// The message of an error and its causes, which is where reqwest says what really failed.
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[async_trait]
impl HttpFetcher for ReqwestFetcher {
    async fn get(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let url = check_url(&request.url, self.policy)?;
        let mut req = self.client.get(url);
        if let Some(etag) = &request.if_none_match {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &request.if_modified_since {
            req = req.header(IF_MODIFIED_SINCE, date);
        }
        let transport = |e: reqwest::Error| match refusal_in(&e) {
            Some(reason) => FetchError::Refused {
                url: request.url.clone(),
                reason,
            },
            None => FetchError::Transport {
                url: request.url.clone(),
                message: chain(&e),
            },
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let final_url = resp.url().to_string();
        if status != 304 && !resp.status().is_success() {
            return Err(FetchError::Status {
                url: request.url.clone(),
                status,
            });
        }
        let too_large = || FetchError::TooLarge {
            url: request.url.clone(),
            limit: request.max_bytes,
        };
        let declared: Option<u64> = header(&resp, CONTENT_LENGTH).and_then(|v| v.parse().ok());
        if declared.is_some_and(|len| len > request.max_bytes) {
            return Err(too_large());
        }
        let etag = header(&resp, ETAG);
        let last_modified = header(&resp, LAST_MODIFIED);
        let content_type = header(&resp, CONTENT_TYPE);
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(transport)?;
            if body.len() as u64 + chunk.len() as u64 > request.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchResponse {
            status,
            final_url,
            body: Bytes::from(body),
            etag,
            last_modified,
            content_type,
        })
    }
}

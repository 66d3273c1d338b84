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
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, USER_AGENT,
};

use super::guard::{AddressPolicy, check_ip, check_url};
use super::{ByteStream, FetchError, FetchRequest, FetchResponse, HttpFetcher, PostForm, PostJson};

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

/// Follows at most 5 redirects, each to an address the policy allows.
fn redirect_policy(policy: AddressPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("more than 5 redirects");
        }
        match check_url(attempt.url().as_str(), policy) {
            Ok(_) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

pub struct ReqwestFetcher {
    client: reqwest::Client,
    /// The same guards without the whole-request timeout (a large file takes long to stream);
    /// a stalled read still ends it.
    streaming: reqwest::Client,
    policy: AddressPolicy,
}

impl ReqwestFetcher {
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Self, FetchError> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("Sheaf/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { policy }))
                .redirect(redirect_policy(policy))
                .connect_timeout(Duration::from_secs(10).min(timeout))
        };
        let built = |b: reqwest::Result<reqwest::Client>| {
            b.map_err(|e| FetchError::Transport {
                url: String::new(),
                message: e.to_string(),
            })
        };
        let client = built(builder().timeout(timeout).build())?;
        let streaming = built(builder().read_timeout(timeout).build())?;
        Ok(ReqwestFetcher {
            client,
            streaming,
            policy,
        })
    }
}

impl ReqwestFetcher {
    /// Sends `request` as a JSON POST on `client`, after the address check; the answer's
    /// headers are in, its body not yet read.
    async fn send_post(
        &self,
        client: &reqwest::Client,
        request: &PostJson,
    ) -> Result<reqwest::Response, FetchError> {
        let url = check_url(&request.url, self.policy)?;
        let body = serde_json::to_vec(&request.body).map_err(|e| FetchError::InvalidUrl {
            url: request.url.clone(),
            reason: e.to_string(),
        })?;
        let mut req = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &request.authorization {
            req = req.header(AUTHORIZATION, key);
        }
        req.send()
            .await
            .map_err(|e| transport_error(&request.url, &e))
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

/// A reqwest error as ours: a refusal our guard raised, or a transport failure.
fn transport_error(url: &str, e: &reqwest::Error) -> FetchError {
    match refusal_in(e) {
        Some(reason) => FetchError::Refused {
            url: url.to_string(),
            reason,
        },
        None => FetchError::Transport {
            url: url.to_string(),
            message: chain(e),
        },
    }
}

/// Reads a body up to `max_bytes`.
async fn read_limited(
    url: &str,
    resp: reqwest::Response,
    max_bytes: u64,
) -> Result<Bytes, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_bytes,
    };
    let declared: Option<u64> = header(&resp, CONTENT_LENGTH).and_then(|v| v.parse().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport_error(url, &e))?;
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A POST's answer, whatever its status, its body read up to `max_bytes`.
async fn post_answer(
    url: &str,
    resp: reqwest::Response,
    max_bytes: u64,
) -> Result<FetchResponse, FetchError> {
    let status = resp.status().as_u16();
    let final_url = resp.url().to_string();
    let content_type = header(&resp, CONTENT_TYPE);
    let body = read_limited(url, resp, max_bytes).await?;
    Ok(FetchResponse {
        status,
        final_url,
        body,
        etag: None,
        last_modified: None,
        content_type,
        date: None,
    })
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[async_trait]
impl HttpFetcher for ReqwestFetcher {
    fn address_policy(&self) -> AddressPolicy {
        self.policy
    }

    async fn get(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let url = check_url(&request.url, self.policy)?;
        let mut req = self.client.get(url);
        if let Some(etag) = &request.if_none_match {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &request.if_modified_since {
            req = req.header(IF_MODIFIED_SINCE, date);
        }
        // reqwest drops the key on a redirect to another host.
        if let Some(key) = &request.authorization {
            req = req.header(AUTHORIZATION, key);
        }
        if let Some(agent) = &request.user_agent {
            req = req.header(USER_AGENT, agent);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&request.url, &e))?;
        let status = resp.status().as_u16();
        let final_url = resp.url().to_string();
        if status != 304 && !resp.status().is_success() {
            return Err(FetchError::Status {
                url: request.url.clone(),
                status,
            });
        }
        let etag = header(&resp, ETAG);
        let last_modified = header(&resp, LAST_MODIFIED);
        let content_type = header(&resp, CONTENT_TYPE);
        let date = header(&resp, DATE);
        let body = read_limited(&request.url, resp, request.max_bytes).await?;
        Ok(FetchResponse {
            status,
            final_url,
            body,
            etag,
            last_modified,
            content_type,
            date,
        })
    }

    async fn post_json(&self, request: &PostJson) -> Result<FetchResponse, FetchError> {
        let resp = self.send_post(&self.client, request).await?;
        post_answer(&request.url, resp, request.max_bytes).await
    }

    async fn post_form(&self, request: &PostForm) -> Result<FetchResponse, FetchError> {
        let url = check_url(&request.url, self.policy)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&request.fields)
            .finish();
        let resp = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .timeout(request.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&request.url, &e))?;
        post_answer(&request.url, resp, request.max_bytes).await
    }

    async fn post_json_stream(&self, request: &PostJson) -> Result<(u16, ByteStream), FetchError> {
        let resp = self.send_post(&self.streaming, request).await?;
        let status = resp.status().as_u16();
        let owned = request.url.clone();
        Ok((
            status,
            Box::pin(
                resp.bytes_stream()
                    .map(move |chunk| chunk.map_err(|e| transport_error(&owned, &e))),
            ),
        ))
    }

    async fn get_stream(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<ByteStream, FetchError> {
        let checked = check_url(url, self.policy)?;
        let mut req = self.streaming.get(checked);
        if let Some(key) = authorization {
            req = req.header(AUTHORIZATION, key);
        }
        let resp = req.send().await.map_err(|e| transport_error(url, &e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let owned = url.to_string();
        Ok(Box::pin(resp.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| transport_error(&owned, &e))
        })))
    }
}

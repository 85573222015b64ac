//! The JWKS fetcher port and its adapters: HTTP(S) and a file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::redirect::{Attempt, Policy};
use reqwest::{Client, Url};

use crate::config::{IssuerConfigError, UrlRefusal, check_jwks_url, check_url_scheme};

/// The largest JWKS document read by default (1 MiB).
pub const DEFAULT_MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a JWKS could not be fetched. Never fatal for the verifier: the keys it holds keep
/// serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting or reading took too long.
    #[error("JWKS fetch timed out")]
    Timeout,
    /// The server answered with a status that is not 2xx.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The document is larger than the limit.
    #[error("JWKS document larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Connection, TLS, redirect or protocol failure.
    #[error("JWKS fetch failed: {0}")]
    Transport(String),
    /// Reading the file failed.
    #[error("JWKS file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// Fetches the raw JWKS document of one issuer. Used as `Arc<dyn JwksFetcher>`.
#[async_trait]
pub trait JwksFetcher: Send + Sync + fmt::Debug {
    /// The document's bytes.
    async fn fetch(&self) -> Result<Vec<u8>, FetchError>;
}

/// Limits of [`HttpJwksFetcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpFetcherConfig {
    /// Establishing the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// The whole request, body included.
    pub timeout: Duration,
    /// The largest document read.
    pub max_bytes: usize,
    /// Redirects followed (each must be https, or http on localhost).
    pub max_redirects: usize,
}

impl Default for HttpFetcherConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            max_bytes: DEFAULT_MAX_JWKS_BYTES,
            max_redirects: 3,
        }
    }
}

/// Fetches a JWKS over HTTPS with reqwest (rustls, webpki roots).
#[derive(Debug, Clone)]
pub struct HttpJwksFetcher {
    url: Url,
    client: Client,
    max_bytes: usize,
}

impl HttpJwksFetcher {
    /// A fetcher for `url` (checked as in the configuration: https, or http on localhost).
    /// `issuer` only names the configuration in errors.
    ///
    /// # Errors
    /// [`IssuerConfigError::InvalidJwksUrl`], [`IssuerConfigError::InsecureJwksUrl`], or
    /// [`IssuerConfigError::HttpClient`] when the TLS client cannot be built.
    pub fn new(
        issuer: &str,
        url: &str,
        config: HttpFetcherConfig,
    ) -> Result<Self, IssuerConfigError> {
        let url = check_jwks_url(issuer, url)?;
        let max_redirects = config.max_redirects;
        let redirects = Policy::custom(move |attempt: Attempt<'_>| {
            if attempt.previous().len() > max_redirects {
                attempt.error("too many redirects")
            } else {
                match check_url_scheme(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(UrlRefusal::Insecure | UrlRefusal::Scheme) => {
                        attempt.error("redirect to a URL that is not https")
                    }
                }
            }
        });
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(redirects)
            .user_agent(concat!("coffer-auth-oidc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IssuerConfigError::HttpClient {
                issuer: issuer.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url,
            client,
            max_bytes: config.max_bytes,
        })
    }

    /// The URL fetched.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    // Without the URL (the issuer is named elsewhere, and a URL might hold a secret), with
    // the chain of causes (reqwest's own text is only "error sending request").
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Transport(text)
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let limit = self.max_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Reads a JWKS from a file (each fetch reads it again, so replacing the file rotates keys).
#[derive(Debug, Clone)]
pub struct FileJwksFetcher {
    path: PathBuf,
    max_bytes: usize,
}

impl FileJwksFetcher {
    /// A fetcher for `path`, reading at most [`DEFAULT_MAX_JWKS_BYTES`].
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: DEFAULT_MAX_JWKS_BYTES,
        }
    }

    /// The file read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl JwksFetcher for FileJwksFetcher {
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let io = |e: std::io::Error| FetchError::File {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let len = tokio::fs::metadata(&self.path).await.map_err(io)?.len();
        if len > self.max_bytes as u64 {
            return Err(FetchError::TooLarge {
                limit: self.max_bytes,
            });
        }
        let bytes = tokio::fs::read(&self.path).await.map_err(io)?;
        if bytes.len() > self.max_bytes {
            return Err(FetchError::TooLarge {
                limit: self.max_bytes,
            });
        }
        Ok(bytes)
    }
}

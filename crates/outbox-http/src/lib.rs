//! The webhook transport: [`HttpTransport`] implements coffer-outbox's `Transport` over
//! HTTP(S) with reqwest.
//!
//! Each message is a `POST` of its JSON body with the Standard Webhooks headers:
//! `webhook-id` (the event's id, the same on every attempt), `webhook-timestamp` (the attempt's
//! time, Unix seconds) and `webhook-signature` (`v1,<base64>` per signing secret: two during a
//! rotation's overlap).
//!
//! What it refuses, so that an endpoint URL cannot be turned against Coffer's own network:
//!
//! - **Addresses.** Every address a host name resolves to is judged by the [`AddressPolicy`]
//!   in [`GuardedResolver`], the client's only resolver, at connect time: what is connected to
//!   is what was judged, so a name that resolves to a public address when registered and to
//!   `127.0.0.1` later (DNS rebinding) is refused then. A URL whose host is an address literal
//!   is judged before the request, since no resolver sees it. No proxy is used (one would
//!   resolve the name itself).
//! - **Redirects** are never followed: a 3xx is a failed attempt.
//! - **Plain http** unless the deployment allows it.
//!
//! Every request has a timeout (connect and whole). Logs name the endpoint by its origin only
//! (a path or query may carry a token) and never a secret or a body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_clock::Clock;
use coffer_outbox::{Message, SendError, Sent, SigningSource, Sink, Target, Transport};
use coffer_webhooks::{AddressPolicy, signature_header};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How deliveries are made (configuration).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The whole request, connection included.
    pub timeout: Duration,
    /// Connecting (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// Which resolved addresses a delivery may reach.
    pub policy: AddressPolicy,
    /// Whether plain `http` endpoints are delivered to.
    pub allow_http: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            policy: AddressPolicy::default(),
            allow_http: false,
        }
    }
}

/// Every address was refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("no address of the endpoint's host may be delivered to")]
pub struct AddressRefused;

/// The client's resolver: the system's, with every address the policy refuses dropped; none
/// left is an error ([`AddressRefused`]).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl GuardedResolver {
    /// Resolves through `policy`.
    #[must_use]
    pub fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }

    /// The addresses of `host` that `policy` allows.
    ///
    /// # Errors
    /// DNS failures; [`AddressRefused`] when none is allowed.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| self.policy.allows(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(Box::new(AddressRefused));
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_host(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The webhook transport.
pub struct HttpTransport {
    client: reqwest::Client,
    config: HttpConfig,
    secrets: Arc<dyn SigningSource>,
    clock: Arc<dyn Clock>,
}

coffer_macros::debug_non_exhaustive!(self => HttpTransport { config });

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("the webhook HTTP client could not be built")]
pub struct BuildError(#[source] reqwest::Error);

impl HttpTransport {
    /// A transport signing with `secrets`.
    ///
    /// # Errors
    /// [`BuildError`] when the TLS backend cannot start.
    pub fn new(
        config: HttpConfig,
        secrets: Arc<dyn SigningSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BuildError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(config.policy)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("Coffer-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError)?;
        Ok(Self {
            client,
            config,
            secrets,
            clock,
        })
    }

    /// Whether the URL itself may be delivered to: its scheme, and its host when it is an
    /// address literal (no resolver sees those).
    fn refused(&self, url: &reqwest::Url) -> bool {
        if url.scheme() != "https" && !(url.scheme() == "http" && self.config.allow_http) {
            return true;
        }
        match url.host() {
            Some(url::Host::Ipv4(v4)) => !self.config.policy.allows(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => !self.config.policy.allows(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => false,
            None => true,
        }
    }

    async fn post(
        &self,
        url: &reqwest::Url,
        sink: &Sink,
        message: &Message,
    ) -> Result<u16, SendError> {
        let now = self.clock.unix_micros();
        let secrets = self
            .secrets
            .signing(sink, now)
            .await
            .map_err(|_| SendError::Secret)?;
        let timestamp = now / 1_000_000;
        let id = message.id.to_string();
        let signature = signature_header(
            &secrets.iter().collect::<Vec<_>>(),
            &id,
            timestamp,
            &message.body,
        );
        let response = self
            .client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.body.clone())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            Ok(status)
        } else {
            Err(SendError::Status(status))
        }
    }
}

/// The failure a reqwest error is.
fn classify(e: &reqwest::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<AddressRefused>() {
            return SendError::AddressRefused;
        }
        source = s.source();
    }
    if e.is_timeout() {
        SendError::Timeout
    } else {
        SendError::Connect
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, sink: &Sink, message: &Message) -> Sent {
        let Target::Webhook(url) = &sink.target else {
            return Sent {
                result: Err(SendError::NoTransport),
                latency_ms: 0,
            };
        };
        let started = Instant::now();
        let result = if self.refused(url.as_url()) {
            Err(SendError::AddressRefused)
        } else {
            self.post(url.as_url(), sink, message).await
        };
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        if let Err(e) = &result {
            tracing::debug!(
                endpoint = %url.redacted(),
                sink = %sink.id,
                error = e.code(),
                "a webhook delivery failed"
            );
        }
        Sent { result, latency_ms }
    }
}

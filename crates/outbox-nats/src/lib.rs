//! The NATS JetStream transport: [`NatsTransport`] implements coffer-outbox's `Transport` for
//! the stream sink. Each message is published on `<subject prefix>.<wallet id>` with the
//! event's id as `Nats-Msg-Id`, and the publish waits for the stream's acknowledgement: a
//! message counts as delivered only once stored. A repeat (a worker killed after publishing,
//! before its cursor moved) carries the same id, and JetStream drops it when it comes within
//! the stream's `duplicate_window`: within that window, each event is in the stream exactly
//! once.
//!
//! The connection is made on first use (and again after a failure), so a worker starts while
//! NATS is down and its events wait on the retry schedule. On connecting, the stream is
//! created when missing (subjects `<prefix>.>`, the configured duplicate window); an existing
//! one is used as it is. Credentials: a user and password, a token, or a `.creds` file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use coffer_outbox::{Message, SendError, Sent, Sink, SubjectPrefix, Target, Transport};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Mutex;

/// How NATS is reached (configuration).
#[derive(Clone)]
pub struct NatsConfig {
    /// `nats://host:4222` (or `tls://…`).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.<wallet id>`; the stream takes `<prefix>.>`.
    pub subject_prefix: SubjectPrefix,
    /// JetStream drops a message whose `Nats-Msg-Id` it stored this recently.
    pub duplicate_window: Duration,
    /// Connecting and each publish's acknowledgement.
    pub timeout: Duration,
    /// A user and password.
    pub user: Option<(String, SecretString)>,
    /// A token.
    pub token: Option<SecretString>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
}

coffer_macros::debug_non_exhaustive!(self => NatsConfig { url, stream, subject_prefix, duplicate_window });

/// The stream transport.
pub struct NatsTransport {
    config: NatsConfig,
    context: Mutex<Option<Context>>,
}

coffer_macros::debug_non_exhaustive!(self => NatsTransport { config });

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No connection, or refused credentials.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The stream could not be found or created.
    #[error("the JetStream stream is unavailable: {0}")]
    Stream(String),
}

impl NatsTransport {
    /// A transport that connects on first use.
    #[must_use]
    pub fn new(config: NatsConfig) -> Self {
        Self {
            config,
            context: Mutex::new(None),
        }
    }

    /// The JetStream context, connecting (and creating the stream) when there is none.
    ///
    /// # Errors
    /// [`NatsError`].
    pub async fn context(&self) -> Result<Context, NatsError> {
        let mut held = self.context.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect().await?;
        *held = Some(c.clone());
        Ok(c)
    }

    async fn connect(&self) -> Result<Context, NatsError> {
        let c = &self.config;
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(c.timeout)
            .request_timeout(Some(c.timeout));
        if let Some((user, password)) = &c.user {
            options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
        }
        if let Some(token) = &c.token {
            options = options.token(token.expose_secret().to_owned());
        }
        if let Some(path) = &c.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::Connect(format!("credentials file: {e}")))?;
        }
        let client = tokio::time::timeout(c.timeout, options.connect(c.url.as_str()))
            .await
            .map_err(|_| NatsError::Connect("timed out".into()))?
            .map_err(|e| NatsError::Connect(e.to_string()))?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: c.stream.clone(),
            subjects: vec![format!("{}.>", c.subject_prefix.as_str())],
            duplicate_window: c.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Stream(e.to_string()))?;
        Ok(js)
    }

    /// The subject of `message` on `prefix`.
    fn subject(prefix: &SubjectPrefix, message: &Message) -> String {
        match message.wallet {
            Some(w) => format!("{}.{w}", prefix.as_str()),
            None => format!("{}.test", prefix.as_str()),
        }
    }

    async fn publish(&self, prefix: &SubjectPrefix, message: &Message) -> Result<u16, SendError> {
        let js = self.context().await.map_err(|e| {
            tracing::warn!(error = %e, "NATS is unavailable");
            SendError::Connect
        })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.id.to_string().as_str());
        let published = js
            .publish_with_headers(
                Self::subject(prefix, message),
                headers,
                message.body.clone().into(),
            )
            .await;
        let ack = match published {
            Ok(ack) => tokio::time::timeout(self.config.timeout, ack)
                .await
                .map_err(|_| SendError::Timeout)?,
            Err(e) => Err(e),
        };
        match ack {
            Ok(_) => Ok(200),
            Err(e) => {
                tracing::warn!(error = %e, "a JetStream publish failed");
                // Connect again next time: the connection may be what failed.
                *self.context.lock().await = None;
                Err(SendError::Connect)
            }
        }
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn send(&self, sink: &Sink, message: &Message) -> Sent {
        let Target::Stream(prefix) = &sink.target else {
            return Sent {
                result: Err(SendError::NoTransport),
                latency_ms: 0,
            };
        };
        let started = Instant::now();
        let result = self.publish(prefix, message).await;
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        Sent { result, latency_ms }
    }
}

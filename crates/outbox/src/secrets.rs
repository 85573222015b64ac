//! Sinks' signing secrets, kept in the secrets manager (`webhooks.<sink id>`, one version per
//! rotation), never in the sink's row. A rotation makes a new version active and keeps the
//! previous one signing beside it until the sink's `previous_secret_until`, so a receiver
//! can switch secrets without refusing a delivery: during the overlap every message carries
//! both signatures.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_secrets::{SecretError, SecretName, SecretsManager, SetOptions};
use coffer_webhooks::SigningSecret;

use crate::sink::{Sink, SinkId};

/// Sinks' signing secrets.
#[derive(Debug, Clone)]
pub struct SigningSecrets {
    manager: Arc<SecretsManager>,
}

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretUnavailable {
    /// The secrets manager failed (or has no such secret).
    #[error("webhook signing secret unavailable")]
    Manager(#[source] SecretError),
    /// The stored value is not a signing secret.
    #[error("the stored webhook signing secret is malformed")]
    Malformed,
}

fn name(id: SinkId) -> Result<SecretName, SecretUnavailable> {
    // `webhooks.` and a UUID: always a valid name.
    SecretName::parse(&format!("webhooks.{id}")).map_err(|_| SecretUnavailable::Malformed)
}

fn parse(bytes: &[u8]) -> Result<SigningSecret, SecretUnavailable> {
    let text = std::str::from_utf8(bytes).map_err(|_| SecretUnavailable::Malformed)?;
    SigningSecret::parse(text).map_err(|_| SecretUnavailable::Malformed)
}

impl SigningSecrets {
    /// Secrets kept in `manager`.
    #[must_use]
    pub fn new(manager: Arc<SecretsManager>) -> Self {
        Self { manager }
    }

    /// Makes and stores a new sink's secret (version 1); returns it, to be shown once.
    ///
    /// # Errors
    /// The secrets manager's.
    pub async fn create(&self, sink: &mut Sink) -> Result<SigningSecret, SecretUnavailable> {
        let secret = SigningSecret::generate();
        self.manager
            .set(
                &name(sink.id)?,
                secret.expose_text().as_bytes(),
                &SetOptions::default(),
            )
            .await
            .map_err(SecretUnavailable::Manager)?;
        sink.secret_version = 1;
        sink.previous_secret_until = None;
        Ok(secret)
    }

    /// Makes a new secret the sink's active one; the previous one still signs until `until`
    /// (µs). Returns the new one, to be shown once. The caller stores the sink.
    ///
    /// # Errors
    /// The secrets manager's (`Conflict` when another rotation won).
    pub async fn rotate(
        &self,
        sink: &mut Sink,
        until: i64,
    ) -> Result<SigningSecret, SecretUnavailable> {
        let secret = SigningSecret::generate();
        let meta = self
            .manager
            .rotate(&name(sink.id)?, secret.expose_text().as_bytes())
            .await
            .map_err(SecretUnavailable::Manager)?;
        sink.secret_version = meta.version;
        sink.previous_secret_until = Some(until);
        Ok(secret)
    }
}

/// Where a transport gets the secrets to sign a sink's messages with.
#[async_trait]
pub trait SigningSource: Send + Sync {
    /// The secrets a message to `sink` is signed with at `now` (µs): the active one, and the
    /// previous one during a rotation's overlap.
    ///
    /// # Errors
    /// The secrets manager's; a stored value that is not a secret.
    async fn signing(&self, sink: &Sink, now: i64)
    -> Result<Vec<SigningSecret>, SecretUnavailable>;
}

#[async_trait]
impl SigningSource for SigningSecrets {
    async fn signing(
        &self,
        sink: &Sink,
        now: i64,
    ) -> Result<Vec<SigningSecret>, SecretUnavailable> {
        let name = name(sink.id)?;
        let mut out = vec![parse(
            self.manager
                .get(&name)
                .await
                .map_err(SecretUnavailable::Manager)?
                .expose_secret(),
        )?];
        let overlap = sink.previous_secret_until.is_some_and(|until| now < until);
        if overlap && sink.secret_version > 1 {
            let previous = self
                .manager
                .get_version(&name, sink.secret_version - 1)
                .await
                .map_err(SecretUnavailable::Manager)?;
            out.push(parse(previous.expose_secret())?);
        }
        Ok(out)
    }
}

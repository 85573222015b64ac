//! [`Webhooks`]: the operators' webhook endpoints, each use case behind `webhook:admin`:
//! register (the signing secret is made, stored in the secrets manager and shown once),
//! read, change (enabling one clears its failures, and what waited for a retry goes at once),
//! remove,
//! rotate the secret (the old one signs beside the new for the configured overlap), list an
//! endpoint's deliveries, send a delivery again, and send a test message. Each change is an
//! audit record.

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{Action, AuditEvent, AuditLog, Code, DetailValue, Outcome, Subject};
use coffer_auth::{Permission, Principal, Rbac};
use coffer_clock::Clock;
use coffer_ledger::domain::EventKind;
use coffer_outbox::{
    Attempt, AttemptId, Dispatcher, OutboxError, OutboxStore, Sent, SigningSecrets, Sink, SinkId,
    Target, WebhookUrl,
};
use coffer_webhooks::SigningSecret;

use crate::UseCaseError;
use crate::shared::{actor, require};

/// The largest page of deliveries.
pub const MAX_DELIVERY_PAGE: u32 = 200;

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Where to deliver.
    pub url: WebhookUrl,
    /// The kinds wanted; empty: every kind.
    pub kinds: Vec<EventKind>,
    /// Whether it receives events from now on.
    pub enabled: bool,
}

/// A change to an endpoint: each part set replaces its value.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    /// A new URL.
    pub url: Option<WebhookUrl>,
    /// New kinds.
    pub kinds: Option<Vec<EventKind>>,
    /// Enabled or not.
    pub enabled: Option<bool>,
}

/// The webhook use cases.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn OutboxStore>,
    secrets: SigningSecrets,
    dispatcher: Arc<Dispatcher>,
    audit: Arc<dyn AuditLog>,
    rbac: Rbac,
    clock: Arc<dyn Clock>,
    allow_http: bool,
    overlap: Duration,
}

coffer_macros::debug_non_exhaustive!(self => Webhooks { allow_http, overlap });

impl Webhooks {
    /// The use cases; `allow_http` lets plain `http` URLs be registered, `overlap` is how long
    /// a rotated secret keeps signing.
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        store: Arc<dyn OutboxStore>,
        secrets: SigningSecrets,
        dispatcher: Arc<Dispatcher>,
        audit: Arc<dyn AuditLog>,
        rbac: Rbac,
        clock: Arc<dyn Clock>,
        allow_http: bool,
        overlap: Duration,
    ) -> Self {
        Self {
            store,
            secrets,
            dispatcher,
            audit,
            rbac,
            clock,
            allow_http,
            overlap,
        }
    }

    /// Parses an endpoint URL as this deployment allows them.
    ///
    /// # Errors
    /// [`UseCaseError::WebhookUrl`].
    pub fn parse_url(&self, text: &str) -> Result<WebhookUrl, UseCaseError> {
        WebhookUrl::parse(text, self.allow_http).map_err(UseCaseError::WebhookUrl)
    }

    fn now(&self) -> i64 {
        self.clock.unix_micros()
    }

    async fn found(&self, principal: &Principal, id: SinkId) -> Result<Sink, UseCaseError> {
        require(&self.rbac, principal, Permission::WebhookAdmin)?;
        // The stream sink is configuration, not an endpoint: not found here.
        self.store
            .sink(id)
            .await?
            .filter(|s| s.webhook_url().is_some())
            .ok_or(UseCaseError::WebhookNotFound)
    }

    async fn record(&self, principal: &Principal, action: Action, sink: SinkId) {
        let mut event = AuditEvent::new(
            coffer_audit::Actor::Admin(actor(principal)),
            action,
            Subject::System,
            Outcome::Success,
        );
        if let Ok(code) = Code::parse(&sink.to_string()) {
            let _ = event.details.insert("endpoint", DetailValue::Code(code));
        }
        if let Err(e) = self.audit.append(&event).await {
            tracing::warn!(error = %e, "a webhook change's audit record was not written");
        }
    }

    /// Registers an endpoint; returns it with its signing secret, shown this once.
    ///
    /// # Errors
    /// Forbidden; the secrets manager's and the store's.
    pub async fn create(
        &self,
        principal: &Principal,
        new: NewWebhook,
    ) -> Result<(Sink, SigningSecret), UseCaseError> {
        require(&self.rbac, principal, Permission::WebhookAdmin)?;
        let mut sink = Sink::new(Target::Webhook(new.url), new.kinds, self.now());
        sink.enabled = new.enabled;
        let secret = self.secrets.create(&mut sink).await?;
        self.store.put_sink(&sink).await?;
        self.record(principal, Action::WebhookCreated, sink.id)
            .await;
        Ok((sink, secret))
    }

    /// Every endpoint, oldest first.
    ///
    /// # Errors
    /// Forbidden; the store's.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<Sink>, UseCaseError> {
        require(&self.rbac, principal, Permission::WebhookAdmin)?;
        let mut sinks = self.store.sinks().await?;
        sinks.retain(|s| s.webhook_url().is_some());
        Ok(sinks)
    }

    /// One endpoint.
    ///
    /// # Errors
    /// Forbidden; [`UseCaseError::WebhookNotFound`]; the store's.
    pub async fn get(&self, principal: &Principal, id: SinkId) -> Result<Sink, UseCaseError> {
        self.found(principal, id).await
    }

    /// Changes an endpoint.
    ///
    /// # Errors
    /// As [`Webhooks::get`].
    pub async fn update(
        &self,
        principal: &Principal,
        id: SinkId,
        patch: WebhookPatch,
    ) -> Result<Sink, UseCaseError> {
        let mut sink = self.found(principal, id).await?;
        if let Some(url) = patch.url {
            sink.target = Target::Webhook(url);
        }
        if let Some(kinds) = patch.kinds {
            sink.kinds = kinds;
        }
        let enabling = patch.enabled == Some(true) && !sink.enabled;
        if let Some(enabled) = patch.enabled {
            sink.enabled = enabled;
        }
        if enabling {
            sink.failures = 0;
            sink.disabled_at = None;
        }
        self.store.put_sink(&sink).await?;
        if enabling {
            self.store.wake_sink(id, self.now()).await?;
        }
        self.record(principal, Action::WebhookUpdated, id).await;
        Ok(sink)
    }

    /// Removes an endpoint (its deliveries stay listed until they age out).
    ///
    /// # Errors
    /// As [`Webhooks::get`].
    pub async fn delete(&self, principal: &Principal, id: SinkId) -> Result<(), UseCaseError> {
        self.found(principal, id).await?;
        if !self.store.delete_sink(id).await? {
            return Err(UseCaseError::WebhookNotFound);
        }
        self.record(principal, Action::WebhookDeleted, id).await;
        Ok(())
    }

    /// Makes a new signing secret; the old one keeps signing beside it for the overlap.
    /// Returns the endpoint and the new secret, shown this once.
    ///
    /// # Errors
    /// As [`Webhooks::get`]; the secrets manager's.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        id: SinkId,
    ) -> Result<(Sink, SigningSecret), UseCaseError> {
        let mut sink = self.found(principal, id).await?;
        let until = self.now() + i64::try_from(self.overlap.as_micros()).unwrap_or(i64::MAX);
        let secret = self.secrets.rotate(&mut sink, until).await?;
        self.store.put_sink(&sink).await?;
        self.record(principal, Action::WebhookSecretRotated, id)
            .await;
        Ok((sink, secret))
    }

    /// An endpoint's deliveries, newest first.
    ///
    /// # Errors
    /// As [`Webhooks::get`]; [`UseCaseError::PageSize`].
    pub async fn deliveries(
        &self,
        principal: &Principal,
        id: SinkId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> Result<Vec<Attempt>, UseCaseError> {
        if limit == 0 || limit > MAX_DELIVERY_PAGE {
            return Err(UseCaseError::PageSize {
                max: MAX_DELIVERY_PAGE,
            });
        }
        self.found(principal, id).await?;
        Ok(self.store.attempts(id, before, limit).await?)
    }

    /// Sends a delivery's event to its endpoint again, now, and records the attempt.
    ///
    /// # Errors
    /// As [`Webhooks::get`]; [`UseCaseError::DeliveryNotFound`] for no such delivery (or its
    /// event pruned since).
    pub async fn retry(
        &self,
        principal: &Principal,
        id: SinkId,
        delivery: AttemptId,
    ) -> Result<Attempt, UseCaseError> {
        let sink = self.found(principal, id).await?;
        let attempt = self
            .store
            .attempt(id, delivery)
            .await?
            .ok_or(UseCaseError::DeliveryNotFound)?;
        match self
            .dispatcher
            .resend(&sink, attempt.wallet, attempt.seq)
            .await
        {
            Err(OutboxError::NotFound) => Err(UseCaseError::DeliveryNotFound),
            other => Ok(other?),
        }
    }

    /// Sends a test message (`webhook.test`) to an endpoint now.
    ///
    /// # Errors
    /// As [`Webhooks::get`].
    pub async fn test(&self, principal: &Principal, id: SinkId) -> Result<Sent, UseCaseError> {
        let sink = self.found(principal, id).await?;
        Ok(self.dispatcher.test(&sink).await)
    }
}

//! The outbox's delivery, composed: the store on the configured database, the transports (the
//! webhook one, signing with the secrets manager's keys; the JetStream one when
//! `[events.nats]` is set, with its sink), and the dispatcher the worker runs and the API's
//! webhook use cases send tests and retries through.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_audit::{AuditLog, EntityId};
use coffer_clock::Clock;
use coffer_ledger::Ledger;
use coffer_outbox::{
    Dispatcher, Message, OutboxStore, SendError, Sent, SigningSecrets, Sink, Target, Transport,
};
use coffer_outbox_http::HttpTransport;
use coffer_outbox_nats::NatsTransport;
use coffer_secrets::SecretsManager;
use coffer_store::outbox::{PgOutboxStore, SqliteOutboxStore};

use crate::{AppError, Config, Db};

/// The outbox's parts.
pub(crate) struct Outbox {
    pub(crate) store: Arc<dyn OutboxStore>,
    pub(crate) secrets: SigningSecrets,
    pub(crate) dispatcher: Arc<Dispatcher>,
}

/// Each sink to its transport.
struct Routed {
    http: HttpTransport,
    nats: Option<NatsTransport>,
}

#[async_trait]
impl Transport for Routed {
    async fn send(&self, sink: &Sink, message: &Message) -> Sent {
        match (&sink.target, &self.nats) {
            (Target::Webhook(_), _) => self.http.send(sink, message).await,
            (Target::Stream(_), Some(nats)) => nats.send(sink, message).await,
            (Target::Stream(_), None) => Sent {
                result: Err(SendError::NoTransport),
                latency_ms: 0,
            },
        }
    }
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> AppError {
    AppError::Service(Box::new(e))
}

/// Opens the outbox's delivery on `db`; with `[events.nats]`, makes sure the stream's sink
/// exists and is enabled (publishing under the configured prefix).
pub(crate) async fn open_outbox(
    config: &Config,
    db: &Db,
    ledger: Arc<Ledger>,
    secrets: Arc<SecretsManager>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    worker: EntityId,
) -> Result<Outbox, AppError> {
    let store: Arc<dyn OutboxStore> = match db {
        Db::Sqlite(p) => Arc::new(SqliteOutboxStore::new(p.clone())),
        Db::Postgres(p) => Arc::new(PgOutboxStore::new(p.clone())),
    };
    let secrets = SigningSecrets::new(secrets);
    let http = HttpTransport::new(
        config.events.http(),
        Arc::new(secrets.clone()),
        clock.clone(),
    )
    .map_err(failed)?;
    let nats = config.events.nats();
    if let Some(n) = &nats {
        let wanted = Sink::stream(&n.stream, n.subject_prefix.clone(), clock.unix_micros());
        match store.sink(wanted.id).await.map_err(failed)? {
            None => store.put_sink(&wanted).await.map_err(failed)?,
            // Configured means wanted: a changed prefix is taken, and a stream disabled for
            // failing is enabled again, what waited for a retry going at once.
            Some(mut sink) if sink.target != wanted.target || !sink.enabled => {
                let enabling = !sink.enabled;
                sink.target = wanted.target;
                sink.enabled = true;
                sink.failures = 0;
                sink.disabled_at = None;
                store.put_sink(&sink).await.map_err(failed)?;
                if enabling {
                    store
                        .wake_sink(sink.id, clock.unix_micros())
                        .await
                        .map_err(failed)?;
                }
            }
            Some(_) => {}
        }
    }
    let transport = Routed {
        http,
        nats: nats.map(NatsTransport::new),
    };
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        ledger,
        Arc::new(transport),
        audit,
        clock,
        config.events.dispatch(),
        worker,
    ));
    Ok(Outbox {
        store,
        secrets,
        dispatcher,
    })
}

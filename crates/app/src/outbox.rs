//! The outbox's delivery, composed: the store on the configured database, the webhook
//! transport (signing with the secrets manager's keys), and the dispatcher the worker runs and
//! the API's webhook use cases send tests and retries through.

use std::sync::Arc;

use coffer_audit::{AuditLog, EntityId};
use coffer_clock::Clock;
use coffer_ledger::Ledger;
use coffer_outbox::{Dispatcher, OutboxStore, SigningSecrets};
use coffer_outbox_http::HttpTransport;
use coffer_secrets::SecretsManager;
use coffer_store::outbox::{PgOutboxStore, SqliteOutboxStore};

use crate::{AppError, Config, Db};

/// The outbox's parts.
pub(crate) struct Outbox {
    pub(crate) store: Arc<dyn OutboxStore>,
    pub(crate) secrets: SigningSecrets,
    pub(crate) dispatcher: Arc<Dispatcher>,
}

/// Opens the outbox's delivery on `db`.
pub(crate) fn open_outbox(
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
    let transport = HttpTransport::new(
        config.events.http(),
        Arc::new(secrets.clone()),
        clock.clone(),
    )
    .map_err(|e| AppError::Service(Box::new(e)))?;
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

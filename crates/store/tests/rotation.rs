//! The rotation store's contract suite on SQLite and on Postgres as the application role (each
//! test its own database or schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use coffer_clock::Clock;
use coffer_keys::KeyProvider;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource};
use coffer_rotation::testkit::{Backend, Stores};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::ledger::{PgLedgerStore, SqliteLedgerStore};
use coffer_store::rotation::{PgRotationStore, SqliteRotationStore};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use coffer_store::testing;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

/// A fresh key file (so the master key can rotate), kept for the test's lifetime.
struct KeyFile {
    keys: Arc<dyn KeyProvider>,
    _dir: tempfile::TempDir,
}

impl KeyFile {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys: Arc<dyn KeyProvider> = Arc::new(
            LocalKeyProvider::open(
                LocalKeySource::File {
                    path: dir.path().join("master.json"),
                    create_if_missing: true,
                },
                "coffer-master",
            )
            .unwrap(),
        );
        Self { keys, _dir: dir }
    }
}

struct Sqlite {
    pool: SqlitePool,
    _dir: tempfile::TempDir,
    key_file: KeyFile,
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores {
        let audit = SqliteAuditLog::open(self.pool.clone(), keys.as_ref())
            .await
            .expect("open audit log")
            .with_clock(clock.clone());
        Stores {
            rotation: Arc::new(SqliteRotationStore::new(self.pool.clone())),
            ledger: Arc::new(
                SqliteLedgerStore::new(self.pool.clone(), audit.clone()).with_clock(clock),
            ),
            audit: Arc::new(audit),
            secrets: Arc::new(SqliteSecretStore::new(self.pool.clone())),
        }
    }

    async fn set_wallet_key(&self, wallet: Uuid, wrapped: &[u8]) {
        sqlx::query("UPDATE wallet_keys SET wrapped = $1 WHERE wallet_id = $2 AND version = 1")
            .bind(wrapped)
            .bind(wallet)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.key_file.keys.clone()
    }
}

/// The schema owner's pool for tampering, the application role's for the store.
struct Postgres {
    owner: PgPool,
    app: PgPool,
    key_file: KeyFile,
}

#[async_trait]
impl Backend for Postgres {
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores {
        let audit = PgAuditLog::open(self.app.clone(), keys.as_ref())
            .await
            .expect("open audit log")
            .with_clock(clock.clone());
        Stores {
            rotation: Arc::new(PgRotationStore::new(self.app.clone())),
            ledger: Arc::new(PgLedgerStore::new(self.app.clone(), audit.clone()).with_clock(clock)),
            audit: Arc::new(audit),
            secrets: Arc::new(PgSecretStore::new(self.app.clone())),
        }
    }

    async fn set_wallet_key(&self, wallet: Uuid, wrapped: &[u8]) {
        sqlx::query("UPDATE wallet_keys SET wrapped = $1 WHERE wallet_id = $2 AND version = 1")
            .bind(wrapped)
            .bind(wallet)
            .execute(&self.owner)
            .await
            .unwrap();
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.key_file.keys.clone()
    }
}

mod sqlite {
    use super::*;
    coffer_rotation::rotation_store_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        Sqlite {
            pool,
            _dir: dir,
            key_file: KeyFile::new(),
        }
    });
}

mod postgres {
    use super::*;
    coffer_rotation::rotation_store_contract_tests!(|| async {
        let owner = testing::pg_pool().await;
        let app = testing::pg_app_pool(&owner).await;
        Postgres {
            owner,
            app,
            key_file: KeyFile::new(),
        }
    });
}

/// The application role may record and update rotations but never erase their history.
#[tokio::test]
async fn the_application_role_cannot_delete_rotation_history() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    for sql in ["DELETE FROM key_rotations", "TRUNCATE key_rotations"] {
        let err = sqlx::query(sql).execute(&app).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
}

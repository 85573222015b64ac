//! The user store's and the revocation list's contract suites on SQLite, on Postgres, and (the
//! user store's) on a Postgres that takes only TLS with client certificates (each test its own
//! database or schema), and the revocation list surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use coffer_auth::RevocationList;
use coffer_auth::testkit::ListUnderTest;
use coffer_auth::testkit::accounts::{Backend, Opened};
use coffer_clock::ManualClock;
use coffer_keys::KeyProvider;
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::auth::{PgRevocationList, PgUserStore, SqliteRevocationList, SqliteUserStore};
use coffer_store::testing;
use sqlx::sqlite::SqlitePool;

struct Sqlite {
    pool: SqlitePool,
    dir: tempfile::TempDir,
    keys: Arc<dyn KeyProvider>,
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> Opened {
        let audit = SqliteAuditLog::open(self.pool.clone(), keys.as_ref())
            .await
            .expect("open audit log");
        let store = SqliteUserStore::new(self.pool.clone(), audit.clone());
        let revocation = SqliteRevocationList::new(self.pool.clone());
        (Arc::new(store), Arc::new(audit), Arc::new(revocation))
    }

    async fn raw_dump(&self) -> Vec<u8> {
        common::sqlite_raw_dump(&self.pool, self.dir.path()).await
    }

    fn secret_store(&self) -> Arc<dyn coffer_secrets::SecretStore> {
        Arc::new(coffer_store::secrets::SqliteSecretStore::new(
            self.pool.clone(),
        ))
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

use common::PgBackend as Postgres;

#[async_trait]
impl Backend for Postgres {
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> Opened {
        let audit = PgAuditLog::open(self.app.clone(), keys.as_ref())
            .await
            .expect("open audit log");
        let store = PgUserStore::new(self.app.clone(), audit.clone());
        let revocation = PgRevocationList::new(self.app.clone());
        (Arc::new(store), Arc::new(audit), Arc::new(revocation))
    }

    async fn raw_dump(&self) -> Vec<u8> {
        common::pg_raw_dump(&self.pool, "users").await
    }

    fn secret_store(&self) -> Arc<dyn coffer_secrets::SecretStore> {
        Arc::new(coffer_store::secrets::PgSecretStore::new(self.app.clone()))
    }

    fn keys(&self) -> Arc<dyn KeyProvider> {
        self.keys.clone()
    }
}

mod sqlite_users {
    use super::*;
    coffer_auth::user_store_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        Sqlite {
            pool,
            dir,
            keys: common::provider(),
        }
    });
}

mod postgres_users {
    use super::*;
    coffer_auth::user_store_contract_tests!(|| async {
        Postgres::new(testing::pg_pool_with_connections(12).await).await
    });
}

mod postgres_tls_users {
    use super::*;
    coffer_auth::user_store_contract_tests!(|| async {
        Postgres::owner_only(testing::pg_pool_on(common::tls_pg_options(), 12).await)
    });
}

mod sqlite_revocation {
    use super::*;
    coffer_auth::revocation_list_contract_tests!(|| async {
        let (pool, dir) = testing::sqlite_pool().await;
        // The directory lives as long as the test process; the pool keeps the file open.
        std::mem::forget(dir);
        let clock = Arc::new(ManualClock::default());
        let list = SqliteRevocationList::new(pool).with_clock(clock.clone());
        ListUnderTest::with_clock(Arc::new(list) as Arc<dyn RevocationList>, clock)
    });
}

mod postgres_revocation {
    use super::*;
    coffer_auth::revocation_list_contract_tests!(|| async {
        let clock = Arc::new(ManualClock::default());
        let list = PgRevocationList::new(testing::pg_pool().await).with_clock(clock.clone());
        ListUnderTest::with_clock(Arc::new(list) as Arc<dyn RevocationList>, clock)
    });
}

mod postgres_cached_revocation {
    use super::*;
    coffer_auth::revocation_list_contract_tests!(|| async {
        let pool = testing::pg_pool().await;
        let clock = Arc::new(ManualClock::default());
        let cache = Arc::new(
            coffer_auth::CachedRevocationList::new(
                Arc::new(PgRevocationList::new(pool.clone()).with_clock(clock.clone())),
                Duration::from_secs(600),
            )
            .with_clock(clock.clone()),
        );
        tokio::spawn(coffer_store::auth::feed_revocations(
            pool,
            coffer_store::auth::FeedListeners {
                revocations: Some(cache.clone()),
                erased_wallet: Arc::new(|_| {}),
            },
            Duration::from_millis(100),
        ));
        ListUnderTest::with_clock(cache as Arc<dyn RevocationList>, clock)
    });
}

/// What the in-memory list cannot do: a logout, a revoke-all and an emergency revoke made before
/// a restart still hold after it, and for another process on the same database.
#[tokio::test]
async fn revocations_survive_a_restart_on_both_databases() {
    let (sqlite, _dir) = testing::sqlite_pool().await;
    let pg = testing::pg_pool().await;
    let lists: [(Arc<dyn RevocationList>, Arc<dyn RevocationList>); 2] = [
        (
            Arc::new(SqliteRevocationList::new(sqlite.clone())),
            Arc::new(SqliteRevocationList::new(sqlite)),
        ),
        (
            Arc::new(PgRevocationList::new(pg.clone())),
            Arc::new(PgRevocationList::new(pg)),
        ),
    ];
    for (before, after) in lists {
        before
            .revoke_token("jti-1", SystemTime::now() + Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(before.revoke_user("u1").await.unwrap(), 1);
        assert_eq!(before.revoke_everyone().await.unwrap(), 1);
        drop(before);
        let s = after.status("jti-1", "u1").await.unwrap();
        assert!(s.token_revoked);
        assert_eq!((s.user_epoch, s.global_epoch), (1, 1));
        assert_eq!(after.epochs("u2").await.unwrap(), (0, 1));
    }
}

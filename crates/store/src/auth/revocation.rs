//! The persistent revocation list ([`PgRevocationList`], [`SqliteRevocationList`]): logouts and
//! revocations survive restarts and are shared by every process on the database; the embedded
//! default.
//!
//! A revoked token id is a `revoked_tokens` row kept until the token would have expired (of two
//! expiries the later wins; expired rows are swept every `SWEEP_EVERY` insertions). The per-user
//! and the global epoch are counters in `revocation_epochs`, each bumped by one upsert. A
//! verification reads the denylist entry and both epochs in one statement. On Postgres each
//! revocation is also announced on [`REVOCATION_CHANNEL`] with `pg_notify`, in the statement that
//! writes it, so the announcement goes out when the revocation commits and never for one that
//! rolled back; the `feed` module relays the announcements to a process's cache.
//!
//! One body of SQL for both databases, [`RevocationListOn`], generic over the user store's
//! [`AuthDialect`] (whose `ANNOUNCE` says whether revocations are announced); the public types
//! are thin shells around it, made by `revocation_list!`.
//!
//! Whether an entry has expired is decided against the list's clock (the system's from `new`,
//! another from `with_clock`), not the database's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use coffer_auth::RevocationStatus;
use coffer_auth::revocation::RevocationError;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::rows::i64_of;
use super::{AuthDialect, Conn};

/// The channel on which the Postgres revocation list announces each revocation it commits
/// (payload `token:<jti>`, `user:<id>` or `global`), for [`feed_revocations`](super::feed_revocations).
pub const REVOCATION_CHANNEL: &str = "coffer_revocations";

/// Denylist entries are swept once every this many insertions.
const SWEEP_EVERY: u64 = 256;

fn revocation_err(e: sqlx::Error) -> RevocationError {
    RevocationError::Unavailable(Box::new(e))
}

fn check(what: &'static str, s: &str) -> Result<(), RevocationError> {
    if s.is_empty() || s.len() > 256 {
        Err(RevocationError::Invalid(what))
    } else {
        Ok(())
    }
}

/// The revocation list on the database of `D`.
pub(super) struct RevocationListOn<D: AuthDialect> {
    pool: Pool<D::Db>,
    inserts: Arc<AtomicU64>,
    clock: Arc<dyn coffer_clock::Clock>,
}

impl<D: AuthDialect> Clone for RevocationListOn<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            inserts: Arc::clone(&self.inserts),
            clock: Arc::clone(&self.clock),
        }
    }
}

/// What the statements need of a database: sqlx's executor and argument traits, and the types
/// they bind and read. Postgres and SQLite both have them all.
impl<D: AuthDialect> RevocationListOn<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Type<D::Db> + Decode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn new(pool: Pool<D::Db>) -> Self {
        Self {
            pool,
            inserts: Arc::default(),
            clock: coffer_clock::system(),
        }
    }

    async fn denied_len(&self) -> Result<u64, RevocationError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(revocation_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn bump(&self, subject: &str) -> Result<u64, RevocationError> {
        const BUMP: &str = "INSERT INTO revocation_epochs (subject, epoch) \
             VALUES ($1, 1) \
             ON CONFLICT (subject) DO UPDATE SET epoch = revocation_epochs.epoch + 1 \
             RETURNING epoch";
        let sql = if D::ANNOUNCE {
            format!(
                "WITH b AS ({BUMP}) \
                 SELECT epoch FROM b, pg_notify('{REVOCATION_CHANNEL}', $1)"
            )
        } else {
            BUMP.to_owned()
        };
        let epoch: i64 = sqlx::query_scalar(&sql)
            .bind(subject)
            .fetch_one(&self.pool)
            .await
            .map_err(revocation_err)?;
        Ok(u64::try_from(epoch).unwrap_or(0))
    }

    async fn revoke_token(&self, jti: &str, expires: SystemTime) -> Result<(), RevocationError> {
        check("jti", jti)?;
        let now = self.clock.unix_secs();
        let until = coffer_auth::revocation::unix_secs(expires);
        if until <= now {
            return Ok(());
        }
        const INSERT: &str = "INSERT INTO revoked_tokens (jti, expires_at) \
             VALUES ($1, $2) ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
             WHEN excluded.expires_at > revoked_tokens.expires_at \
             THEN excluded.expires_at ELSE revoked_tokens.expires_at END";
        // On Postgres the revocation is announced to every process's cache when it commits
        // (crate::auth::feed_revocations).
        let sql = if D::ANNOUNCE {
            format!(
                "WITH r AS ({INSERT} RETURNING 1) \
                 SELECT pg_notify('{REVOCATION_CHANNEL}', 'token:' || $1) FROM r"
            )
        } else {
            INSERT.to_owned()
        };
        sqlx::query(&sql)
            .bind(jti)
            .bind(i64_of(until))
            .execute(&self.pool)
            .await
            .map_err(revocation_err)?;
        let n = self.inserts.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(SWEEP_EVERY) {
            sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
                .bind(i64_of(now))
                .execute(&self.pool)
                .await
                .map_err(revocation_err)?;
        }
        Ok(())
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
        check("user", user)?;
        self.bump(&format!("user:{user}")).await
    }

    async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
        self.bump("global").await
    }

    async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
        let s = self.status("-", user).await?;
        Ok((s.user_epoch, s.global_epoch))
    }

    async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError> {
        check("jti", jti)?;
        check("user", user)?;
        let row = sqlx::query(
            "SELECT \
             (SELECT expires_at FROM revoked_tokens WHERE jti = $1) AS denied_until, \
             (SELECT epoch FROM revocation_epochs WHERE subject = $2) AS user_epoch, \
             (SELECT epoch FROM revocation_epochs WHERE subject = 'global') AS global_epoch",
        )
        .bind(jti)
        .bind(format!("user:{user}"))
        .fetch_one(&self.pool)
        .await
        .map_err(revocation_err)?;
        let get = |c: &str| -> Result<u64, RevocationError> {
            let v: Option<i64> = row.try_get(c).map_err(revocation_err)?;
            Ok(v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
        };
        Ok(RevocationStatus {
            token_revoked: get("denied_until")? > self.clock.unix_secs(),
            user_epoch: get("user_epoch")?,
            global_epoch: get("global_epoch")?,
        })
    }
}

/// The public revocation list `$revocation` for one dialect: a thin shell that implements
/// [`RevocationList`](coffer_auth::RevocationList) by calling its [`RevocationListOn`].
macro_rules! revocation_list {
    ($revocation:ident, dialect = $D:ty, pool = $Pool:ty, db = $db:literal) => {
        #[doc = concat!(
            "The revocation list on ", $db, ": logouts and revocations survive restarts and ",
            "are shared by every process on the database."
        )]
        #[derive(Clone)]
        pub struct $revocation(RevocationListOn<$D>);

        coffer_macros::debug_non_exhaustive!(self => $revocation {});

        impl $revocation {
            /// A list on `pool` (migrated).
            #[must_use]
            pub fn new(pool: $Pool) -> Self {
                Self(RevocationListOn::new(pool))
            }

            /// The same list, reading the time from `clock`.
            #[must_use]
            pub fn with_clock(mut self, clock: Arc<dyn coffer_clock::Clock>) -> Self {
                self.0.clock = clock;
                self
            }

            /// Denylist rows held now (expired ones are swept as new ones arrive).
            ///
            /// # Errors
            /// [`RevocationError::Unavailable`].
            pub async fn denied_len(&self) -> Result<u64, RevocationError> {
                self.0.denied_len().await
            }
        }

        #[async_trait::async_trait]
        impl coffer_auth::RevocationList for $revocation {
            async fn revoke_token(
                &self,
                jti: &str,
                expires: SystemTime,
            ) -> Result<(), RevocationError> {
                self.0.revoke_token(jti, expires).await
            }

            async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
                self.0.revoke_user(user).await
            }

            async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
                self.0.revoke_everyone().await
            }

            async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
                self.0.epochs(user).await
            }

            async fn status(
                &self,
                jti: &str,
                user: &str,
            ) -> Result<RevocationStatus, RevocationError> {
                self.0.status(jti, user).await
            }
        }
    };
}

revocation_list!(
    PgRevocationList,
    dialect = crate::dialect::Pg,
    pool = PgPool,
    db = "Postgres"
);
revocation_list!(
    SqliteRevocationList,
    dialect = crate::dialect::Sqlite,
    pool = SqlitePool,
    db = "SQLite"
);

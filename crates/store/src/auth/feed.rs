//! The revocation feed, Postgres only: [`feed_revocations`] listens on the channel the Postgres
//! revocation list announces every revocation on (and the erasure of a user's wallets, see
//! [`ERASED_WALLET`]), tells a process's
//! [`CachedRevocationList`](coffer_auth::CachedRevocationList) what was revoked, by any process,
//! and tells the process which wallets were erased, so it forgets their unwrapped keys.
//! The cache may answer from memory only while that holds: it is live only while the listening
//! connection is up, and when the connection drops or the task ends it stops answering from
//! memory and forgets everything; the feed connects again after a pause.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::revocation::REVOCATION_CHANNEL;

/// The payload prefix announcing that a wallet's data keys were destroyed (its owner erased):
/// `wallet_erased:<id>`.
pub const ERASED_WALLET: &str = "wallet_erased:";

/// Who [`feed_revocations`] tells.
#[derive(Clone)]
pub struct FeedListeners {
    /// The revocation cache to keep true; `None` when the process keeps none.
    pub revocations: Option<Arc<coffer_auth::CachedRevocationList>>,
    /// Called with each wallet erased by any process (this one's included).
    pub erased_wallet: Arc<dyn Fn(Uuid) + Send + Sync>,
}

coffer_macros::debug_non_exhaustive!(self => FeedListeners { revocations });

/// Keeps `listeners` told of every revocation and erasure committed on `pool`'s database, by
/// any process: `LISTEN`s on [`REVOCATION_CHANNEL`] on a connection of its own, marks the cache
/// live once listening and not live whenever that connection is lost (reconnecting after
/// `retry`), and when the task ends. Runs until aborted.
pub async fn feed_revocations(pool: PgPool, listeners: FeedListeners, retry: std::time::Duration) {
    /// Not live once the feed is gone, however it ends.
    struct Stop(Option<Arc<coffer_auth::CachedRevocationList>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(cache) = &self.0 {
                cache.set_live(false);
            }
        }
    }
    let _stop = Stop(listeners.revocations.clone());
    let set_live = |live: bool| {
        if let Some(cache) = &listeners.revocations {
            cache.set_live(live);
        }
    };
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(REVOCATION_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                set_live(true);
                tracing::debug!("revocation feed listening");
                while let Ok(Some(n)) = listener.try_recv().await {
                    forget(&listeners, n.payload());
                }
                set_live(false);
                tracing::warn!(
                    "revocation feed lost its connection; every token is checked in the \
                     database until it is back"
                );
            }
            Err(e) => tracing::warn!(error = %e, "revocation feed cannot listen; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
}

/// What an announcement says was revoked or erased; anything else forgets everything.
fn forget(listeners: &FeedListeners, payload: &str) {
    if let Some(wallet) = payload.strip_prefix(ERASED_WALLET) {
        match Uuid::parse_str(wallet) {
            Ok(id) => (listeners.erased_wallet)(id),
            Err(_) => tracing::warn!("revocation feed: malformed erasure announcement"),
        }
        return;
    }
    let Some(cache) = &listeners.revocations else {
        return;
    };
    if let Some(jti) = payload.strip_prefix("token:") {
        cache.forget_token(jti);
    } else if let Some(user) = payload.strip_prefix("user:") {
        cache.forget_user(user);
    } else if payload == "global" {
        cache.forget_everyone();
    } else {
        // Still live; everything remembered is forgotten.
        cache.set_live(true);
    }
}

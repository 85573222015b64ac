//! The revocation feed, Postgres only: [`feed_revocations`] listens on the channel the Postgres
//! revocation list announces every revocation on, and tells a process's
//! [`CachedRevocationList`](coffer_auth::CachedRevocationList) what was revoked, by any process.
//! The cache may answer from memory only while that holds: it is live only while the listening
//! connection is up, and when the connection drops or the task ends it stops answering from
//! memory and forgets everything; the feed connects again after a pause.

use sqlx::postgres::PgPool;

use super::revocation::REVOCATION_CHANNEL;

/// Keeps `cache` told of every revocation committed on `pool`'s database, by any process:
/// `LISTEN`s on [`REVOCATION_CHANNEL`] on a connection of its own, marks the cache live
/// once listening and not live whenever that connection is lost (reconnecting after
/// `retry`), and when the task ends. Runs until aborted.
pub async fn feed_revocations(
    pool: PgPool,
    cache: std::sync::Arc<coffer_auth::CachedRevocationList>,
    retry: std::time::Duration,
) {
    /// Not live once the feed is gone, however it ends.
    struct Stop<'a>(&'a coffer_auth::CachedRevocationList);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.set_live(false);
        }
    }
    let _stop = Stop(&cache);
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(REVOCATION_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                cache.set_live(true);
                tracing::debug!("revocation feed listening");
                while let Ok(Some(n)) = listener.try_recv().await {
                    forget(&cache, n.payload());
                }
                cache.set_live(false);
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

/// What an announcement says was revoked; anything else forgets everything.
fn forget(cache: &coffer_auth::CachedRevocationList, payload: &str) {
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

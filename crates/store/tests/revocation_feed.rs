//! The revocation cache on Postgres: answers are remembered while the feed (`LISTEN`) is up,
//! a revocation committed by another process reaches them, and one committed while the feed
//! was down is not answered from memory. In a database of its own: announcements are
//! database-wide, and other tests' would make the cache forget at random moments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coffer_auth::{CachedRevocationList, RevocationList, RevocationStatus};
use coffer_store::auth::{PgRevocationList, feed_revocations};
use coffer_store::testing;
use sqlx::postgres::{PgPool, PgPoolOptions};

const JTI: &str = "jti-feed";
const USER: &str = "user-feed";

/// A pool on the same schema whose connections carry `name`, so the test can find them.
async fn named_pool(pool: &PgPool, name: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with((*pool.connect_options()).clone().application_name(name))
        .await
        .unwrap()
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(list: &CachedRevocationList) -> RevocationStatus {
    list.status(JTI, USER).await.unwrap()
}

/// Writes a denylist entry the way a revocation would, but without announcing it.
async fn revoke_silently(pool: &PgPool) {
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)")
        .bind(JTI)
        .bind(i64::MAX)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn revocations_by_another_process_reach_the_cache_and_missed_ones_are_not_answered() {
    let pool = testing::pg_pool_in_database("coffer_test_revocation_feed").await;
    let name = format!("coffer-feed-{}", std::process::id());
    let feed_pool = named_pool(&pool, &name).await;
    let cache = Arc::new(CachedRevocationList::new(
        Arc::new(PgRevocationList::new(pool.clone())),
        Duration::from_secs(600),
    ));
    let feed = tokio::spawn(feed_revocations(
        feed_pool,
        coffer_store::auth::FeedListeners {
            revocations: Some(cache.clone()),
            erased_wallet: Arc::new(|_| {}),
        },
        Duration::from_millis(100),
    ));
    eventually("the feed listens", async || cache.is_live()).await;

    // Another process's revocations are announced and reach the cache.
    let other = PgRevocationList::new(pool.clone());
    other.revoke_user(USER).await.unwrap();
    eventually("a user's revocation arrives", async || {
        status(&cache).await.user_epoch == 1
    })
    .await;
    other.revoke_everyone().await.unwrap();
    eventually("the global revocation arrives", async || {
        status(&cache).await.global_epoch == 1
    })
    .await;
    other
        .revoke_token("jti-other", SystemTime::now() + Duration::from_secs(600))
        .await
        .unwrap();
    eventually("a token's revocation arrives", async || {
        cache.status("jti-other", USER).await.unwrap().token_revoked
    })
    .await;

    // Remembered: a change that is not announced is not seen.
    assert!(!status(&cache).await.token_revoked);
    revoke_silently(&pool).await;
    assert!(
        !status(&cache).await.token_revoked,
        "the answer is remembered"
    );

    // The feed's connection is lost: what was remembered may miss revocations, and is not used.
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(killed.contains(&true), "the feed's connection was found");
    eventually("the silent revocation is seen", async || {
        status(&cache).await.token_revoked
    })
    .await;
    eventually("the feed listens again", async || cache.is_live()).await;

    // And when the feed ends, nothing more is remembered.
    feed.abort();
    let _ = feed.await;
    assert!(!cache.is_live());
}

//! Failures around accounts: a key provider that times out, a database that goes away, and the
//! application role's limits on Postgres. Each must end in a typed error and write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{Action, AlertConfig, AuditLog, AuditQuery, EntityId, ObservedAuditLog};
use coffer_auth::accounts::{
    Accounts, AccountsConfig, AccountsDeps, AuthError, Registration, RequestContext,
};
use coffer_auth::password::PasswordHasher;
use coffer_auth::store::UserStore;
use coffer_auth::testkit::accounts::{PASSWORD, credentials};
use coffer_auth::{Rbac, RevocationList};
use coffer_keys::KeyProvider;
use coffer_keys_local::{LocalKeyProvider, LocalKeySource, generate_inline_key};
use coffer_secrets::{SecretStore, SecretsManager};
use coffer_store::audit::{PgAuditLog, SqliteAuditLog};
use coffer_store::auth::{PgRevocationList, PgUserStore, SqliteRevocationList, SqliteUserStore};
use coffer_store::secrets::{PgSecretStore, SqliteSecretStore};
use coffer_store::testing;

use common::{MockProvider, timed_out};

fn local_keys() -> Arc<dyn KeyProvider> {
    Arc::new(LocalKeyProvider::open(LocalKeySource::Inline(generate_inline_key()), "test").unwrap())
}

async fn accounts(
    store: Arc<dyn UserStore>,
    audit: Arc<dyn AuditLog>,
    revocation: Arc<dyn RevocationList>,
    keys: Arc<dyn KeyProvider>,
    secrets: Arc<dyn SecretStore>,
) -> Result<Accounts, AuthError> {
    let deps = AccountsDeps {
        store,
        secrets: Arc::new(SecretsManager::new(
            secrets,
            keys.clone(),
            Duration::from_secs(300),
        )),
        keys,
        hasher: PasswordHasher::with_params(1024, 1, 2).unwrap(),
        revocation,
        audit: Arc::new(ObservedAuditLog::new(
            audit,
            AlertConfig::default(),
            EntityId::parse("failure-tests").unwrap(),
        )),
        rbac: Rbac::default(),
        clock: coffer_clock::system(),
    };
    Accounts::open(deps, AccountsConfig::default()).await
}

fn registration(email: &str) -> Registration<'_> {
    Registration {
        email,
        password: PASSWORD,
        phone: Some("+442079460958"),
        tax_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_provider_that_times_out_fails_retryably_and_writes_nothing() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store: Arc<dyn UserStore> = Arc::new(SqliteUserStore::new(pool.clone(), audit.clone()));
    let secrets: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(pool.clone()));
    let revocation: Arc<dyn RevocationList> = Arc::new(SqliteRevocationList::new(pool));
    let good = accounts(
        store.clone(),
        Arc::new(audit.clone()),
        revocation.clone(),
        keys.clone(),
        secrets.clone(),
    )
    .await
    .unwrap();
    let alice = good
        .register(
            registration("alice@example.com"),
            &RequestContext::default(),
        )
        .await
        .unwrap();

    // Stored keys still unwrap (the service opens), but no new data key can be made.
    let mut kms = MockProvider::new();
    kms.expect_name().return_const("mock".to_owned());
    kms.expect_generate_data_key()
        .returning(|_| Err(timed_out()));
    let inner = keys.clone();
    kms.expect_unwrap_data_key().returning(move |w, c| {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(inner.unwrap_data_key(w, c))
        })
    });
    let flaky = accounts(
        store.clone(),
        Arc::new(audit.clone()),
        revocation.clone(),
        Arc::new(kms),
        secrets.clone(),
    )
    .await
    .unwrap();
    let e = flaky
        .register(registration("bob@example.com"), &RequestContext::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Unavailable(_)), "{e:?}");
    assert_eq!(e.code(), "unavailable");
    assert!(
        good.login(credentials("bob@example.com"), &RequestContext::default())
            .await
            .is_err(),
        "nothing was written"
    );
    let registered = audit
        .list(&AuditQuery::default())
        .await
        .unwrap()
        .iter()
        .filter(|r| r.event.action == Action::UserRegister)
        .count();
    assert_eq!(registered, 1);

    // A provider that unwraps the service's keys but times out on users' data keys: the
    // profile (personal data) is unavailable, not corrupt, and login (no personal data) works.
    let mut partial = MockProvider::new();
    partial.expect_name().return_const("mock".to_owned());
    let inner = keys.clone();
    partial.expect_unwrap_data_key().returning(move |w, c| {
        if c.iter().any(|(k, v)| k == "purpose" && v == "user-dek") {
            return Err(timed_out());
        }
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(inner.unwrap_data_key(w, c))
        })
    });
    let degraded = accounts(
        store.clone(),
        Arc::new(audit.clone()),
        revocation.clone(),
        Arc::new(partial),
        secrets.clone(),
    )
    .await
    .unwrap();
    let e = degraded.profile(alice).await.unwrap_err();
    assert!(matches!(e, AuthError::Unavailable(_)), "{e:?}");
    assert!(
        degraded
            .login(credentials("alice@example.com"), &RequestContext::default())
            .await
            .is_ok()
    );

    // A provider that cannot unwrap anything: the service does not start.
    let mut down = MockProvider::new();
    down.expect_name().return_const("mock".to_owned());
    down.expect_unwrap_data_key()
        .returning(|_, _| Err(timed_out()));
    down.expect_generate_data_key()
        .returning(|_| Err(timed_out()));
    let e = accounts(store, Arc::new(audit), revocation, Arc::new(down), secrets)
        .await
        .unwrap_err();
    assert!(
        matches!(e, AuthError::Unavailable(_)),
        "cannot even start: {e:?}"
    );
    assert!(good.profile(alice).await.is_ok());
}

#[tokio::test]
async fn a_database_that_goes_away_fails_retryably() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store = Arc::new(SqliteUserStore::new(pool.clone(), audit.clone()));
    let a = accounts(
        store,
        Arc::new(audit),
        Arc::new(SqliteRevocationList::new(pool.clone())),
        keys,
        Arc::new(SqliteSecretStore::new(pool.clone())),
    )
    .await
    .unwrap();
    a.register(
        registration("alice@example.com"),
        &RequestContext::default(),
    )
    .await
    .unwrap();
    pool.close().await;
    let e = a
        .login(credentials("alice@example.com"), &RequestContext::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Unavailable(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_runs_accounts_but_cannot_rewrite_secrets() {
    let owner = testing::pg_pool().await;
    let app = testing::pg_app_pool(&owner).await;
    let keys = local_keys();
    let audit = PgAuditLog::open(app.clone(), keys.as_ref()).await.unwrap();
    let store = Arc::new(PgUserStore::new(app.clone(), audit.clone()));
    let a = accounts(
        store.clone(),
        Arc::new(audit),
        Arc::new(PgRevocationList::new(app.clone())),
        keys,
        Arc::new(PgSecretStore::new(app.clone())),
    )
    .await
    .unwrap();
    let ctx = RequestContext::default();
    let id = a
        .register(registration("alice@example.com"), &ctx)
        .await
        .unwrap();
    let s = a
        .login(credentials("alice@example.com"), &ctx)
        .await
        .unwrap();
    let r = a.refresh(s.refresh_token.expose(), &ctx).await.unwrap();
    a.logout(&r.claims, &ctx).await.unwrap();
    a.set_roles(coffer_auth::user::UserId::new(), id, &["user".into()], &ctx)
        .await
        .unwrap();
    a.totp_enroll(id, PASSWORD, &ctx).await.unwrap();
    a.revoke_sessions(
        coffer_audit::Actor::User(EntityId::parse(&id.to_string()).unwrap()),
        id,
        &ctx,
    )
    .await
    .unwrap();
    a.rotate_signing_key().await.unwrap();
    let later = coffer_auth::revocation::unix_secs(std::time::SystemTime::now())
        + coffer_auth::refresh::FAMILY_LIFETIME_SECS
        + 1;
    assert_eq!(store.purge_families(later).await.unwrap(), 2);
    assert!(a.profile(id).await.is_ok());
    common::assert_refused_to_app_role(
        &app,
        &[
            "UPDATE service_secrets SET wrapped = wrapped",
            "DELETE FROM service_secrets",
            "DELETE FROM users",
            "DELETE FROM user_keys",
            "DELETE FROM signing_keys",
            "TRUNCATE users CASCADE",
        ],
    )
    .await;
}

/// A database from before the secrets manager keeps its service secrets: the blind-index key
/// in `service_secrets` is adopted with its bytes (so existing users are still found by email),
/// and from then on lives in the secrets manager, listed and backed up with the others.
#[tokio::test]
async fn service_secrets_of_an_older_database_are_adopted_by_the_secrets_manager() {
    use coffer_keys::{KeyContext, WrappedKey};
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store: Arc<dyn UserStore> = Arc::new(SqliteUserStore::new(pool.clone(), audit.clone()));
    // What the older release stored: a data key wrapped for the purpose, in service_secrets.
    let context = KeyContext::new().with("purpose", "email-blind-index");
    let legacy = keys.generate_data_key(&context).await.unwrap();
    store
        .insert_secret(
            "email-blind-index",
            &legacy.wrapped.to_bytes(),
            legacy.wrapped.version,
        )
        .await
        .unwrap();
    let secret_store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(pool.clone()));
    accounts(
        store.clone(),
        Arc::new(audit.clone()),
        Arc::new(SqliteRevocationList::new(pool.clone())),
        keys.clone(),
        secret_store.clone(),
    )
    .await
    .unwrap();

    let manager = SecretsManager::new(secret_store, keys.clone(), Duration::from_secs(300));
    let name = coffer_secrets::SecretName::parse("coffer/email-blind-index").unwrap();
    let adopted = manager.get(&name).await.unwrap();
    assert_eq!(adopted.expose_secret(), legacy.plaintext.expose_secret());
    let stored =
        WrappedKey::from_bytes(&store.secret("email-blind-index").await.unwrap().unwrap()).unwrap();
    assert_eq!(stored, legacy.wrapped, "the legacy row is left as it was");
    let listed: Vec<String> = manager
        .list(Some(("owner", "coffer-auth")))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.active.name.to_string())
        .filter(|n| !n.starts_with("coffer/jwt-signing/"))
        .collect();
    assert_eq!(
        listed,
        ["coffer/audit-detail-hash", "coffer/email-blind-index"],
        "the service's secrets are listed with the others"
    );
}

/// Signing keys live in the secrets manager; a key from before it (its private key sealed in
/// its row) keeps signing and verifying, and is adopted with its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_live_in_the_secrets_manager_and_older_ones_are_adopted() {
    let (pool, _dir) = testing::sqlite_pool().await;
    let keys = local_keys();
    let audit = SqliteAuditLog::open(pool.clone(), keys.as_ref())
        .await
        .unwrap();
    let store: Arc<dyn UserStore> = Arc::new(SqliteUserStore::new(pool.clone(), audit.clone()));
    let secret_store: Arc<dyn SecretStore> = Arc::new(SqliteSecretStore::new(pool.clone()));
    let legacy = coffer_auth::testkit::accounts::legacy_signing_key(keys.as_ref()).await;
    store.add_signing_key(&legacy, true).await.unwrap();
    let open = || {
        accounts(
            store.clone(),
            Arc::new(audit.clone()),
            Arc::new(SqliteRevocationList::new(pool.clone())),
            keys.clone(),
            secret_store.clone(),
        )
    };
    let a = open().await.unwrap();
    let ctx = RequestContext::default();
    a.register(registration("alice@example.com"), &ctx)
        .await
        .unwrap();
    let old = a
        .login(credentials("alice@example.com"), &ctx)
        .await
        .unwrap();
    assert_eq!(
        a.tokens().current_kid().as_deref(),
        Some(legacy.kid.as_str())
    );

    // A rotation makes a key whose row holds no material: it is a secret.
    let new_kid = a.rotate_signing_key().await.unwrap();
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kid, sealed FROM signing_keys ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    let new_row = rows.iter().find(|(kid, _)| *kid == new_kid).unwrap();
    assert!(new_row.1.is_empty(), "no private key in signing_keys");
    let manager = SecretsManager::new(secret_store.clone(), keys.clone(), Duration::from_secs(300));
    let mut listed: Vec<String> = manager
        .list(Some(("purpose", "jwt-signing")))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.active.name.to_string())
        .collect();
    listed.sort();
    let mut expected = vec![
        format!("coffer/jwt-signing/{}", legacy.kid),
        format!("coffer/jwt-signing/{new_kid}"),
    ];
    expected.sort();
    assert_eq!(
        listed, expected,
        "the legacy key was adopted, the new one made there"
    );

    // Another process: both keys load, the token of the legacy key still verifies.
    let b = open().await.unwrap();
    b.tokens().verify(&old.access_token).await.unwrap();
    let fresh = b
        .login(credentials("alice@example.com"), &ctx)
        .await
        .unwrap();
    a.tokens().verify(&fresh.access_token).await.unwrap();
}

//! The user-store port's contract suite. Every adapter runs it through
//! [`user_store_contract_tests!`](crate::user_store_contract_tests), one `#[tokio::test]` per
//! case, each on a fresh, empty database. The cases drive the whole [`Accounts`] service over
//! the adapter, so they check what users rely on: registration and login, refresh rotation and
//! reuse detection under concurrency, revocation, password changes and resets (in `passwords`),
//! API keys (in `api_keys`), erasure (in `erasure`),
//! TOTP, roles, signing keys that survive a restart, and no personal data or secret in the
//! database in the clear.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_audit::{
    Action, Actor, AlertConfig, AuditLog, AuditQuery, DetailValue, EntityId, ObservedAuditLog,
    Subject,
};
use coffer_clock::{Clock, ManualClock};
use coffer_keys::KeyProvider;

use crate::accounts::{
    Accounts, AccountsConfig, AccountsDeps, AuthError, Credentials, Registration, RequestContext,
};
use crate::mfa::TotpSecret;
use crate::password::PasswordHasher;
use crate::rbac::Rbac;
use crate::refresh::RefreshToken;
use crate::revocation::{RevocationList, unix_secs};
use crate::store::UserStore;
use crate::token::TokenError;
use crate::user::UserId;

mod api_keys;
mod erasure;
mod factors;
mod issuers;
mod keys;
mod passwords;
mod sessions;

pub use api_keys::api_keys_act_as_their_owner_until_revoked_or_expired;
pub use erasure::an_erased_user_is_unreadable_and_every_way_in_ends;
pub use factors::*;
pub use issuers::*;
pub use keys::*;
pub use sessions::*;

pub use passwords::{
    a_password_change_ends_a_session_being_refreshed, a_password_change_ends_every_other_session,
    a_password_reset_asks_for_the_second_factor,
    a_password_reset_works_once_and_ends_every_session,
};

/// What [`Backend::open`] opens: the user store, the audit log and the revocation list.
pub type Opened = (
    Arc<dyn UserStore>,
    Arc<dyn AuditLog>,
    Arc<dyn RevocationList>,
);

/// What an adapter's test provides: its database, opened as often as a test needs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the store, an audit log and a revocation list on this test's database, as a new
    /// process would (a "restart" opens again).
    async fn open(&self, keys: Arc<dyn KeyProvider>) -> Opened;
    /// Every byte stored in the database's tables (or files), for the plaintext scan.
    async fn raw_dump(&self) -> Vec<u8>;
    /// The master key provider.
    fn keys(&self) -> Arc<dyn KeyProvider>;
    /// The secrets manager's store on this test's database (the service's own secrets).
    fn secret_store(&self) -> Arc<dyn coffer_secrets::SecretStore>;
}

/// Expands to one test per contract case.
#[macro_export]
macro_rules! user_store_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 4, $factory, |backend| $crate::testkit::accounts(&backend);
            register_login_refresh_and_logout,
            registration_refuses_bad_input_and_taken_emails,
            a_taken_email_costs_no_data_key,
            failed_logins_look_alike_and_are_audited,
            a_reused_refresh_token_revokes_its_family,
            concurrent_uses_of_one_refresh_token_leave_one_live_session,
            revoke_all_ends_every_session,
            a_password_change_ends_every_other_session,
            a_password_change_ends_a_session_being_refreshed,
            a_password_reset_works_once_and_ends_every_session,
            a_password_reset_asks_for_the_second_factor,
            api_keys_act_as_their_owner_until_revoked_or_expired,
            an_erased_user_is_unreadable_and_every_way_in_ends,
            a_revoked_session_stays_revoked_while_it_is_being_refreshed,
            totp_enrollment_login_and_replay,
            guesses_at_one_account_back_off_from_any_address,
            role_changes_take_effect_now,
            the_last_administrator_keeps_the_role,
            keys_and_sessions_survive_a_restart,
            raw_tables_hold_no_personal_data_or_secrets,
            ended_families_are_purged,
            a_users_data_key_rotates_with_every_field,
            tokens_reach_their_issuers_verifier_and_external_subjects_keep_one_id,
        );
    };
}

/// The password of every user the cases register.
pub const PASSWORD: &str = "correct plum tart at noon";
const EMAIL: &str = "Alice.Example@Example.ORG";

fn ctx() -> RequestContext {
    RequestContext {
        client_ip: Some("203.0.113.7".parse().unwrap()),
        request_id: None,
    }
}

/// A signing key stored the way releases before the secrets manager stored it (the private key
/// sealed in its row), for tests of the adoption.
///
/// # Panics
/// When the provider fails.
pub async fn legacy_signing_key(keys: &dyn KeyProvider) -> crate::store::StoredSigningKey {
    crate::accounts::legacy_signing_key(keys).await.unwrap()
}

/// The service over a freshly opened store, with a cheap Argon2 and `grace` for refresh retries.
pub async fn accounts(backend: &dyn Backend, grace: Duration) -> (Accounts, Arc<dyn AuditLog>) {
    accounts_on(backend, grace, coffer_clock::system()).await
}

/// The same, reading the time from `clock`.
pub async fn accounts_on(
    backend: &dyn Backend,
    grace: Duration,
    clock: Arc<dyn Clock>,
) -> (Accounts, Arc<dyn AuditLog>) {
    accounts_keyed(backend, grace, clock, backend.keys()).await
}

/// As [`accounts_on`], with the accounts calling `keys` (the store keeps the backend's).
pub async fn accounts_keyed(
    backend: &dyn Backend,
    grace: Duration,
    clock: Arc<dyn Clock>,
    keys: Arc<dyn KeyProvider>,
) -> (Accounts, Arc<dyn AuditLog>) {
    let (store, audit, revocation) = backend.open(backend.keys()).await;
    let observed = Arc::new(ObservedAuditLog::new(
        audit.clone(),
        AlertConfig::default(),
        EntityId::parse("auth-tests").unwrap(),
    ));
    let deps = AccountsDeps {
        store,
        secrets: Arc::new(coffer_secrets::SecretsManager::new(
            backend.secret_store(),
            backend.keys(),
            Duration::from_secs(300),
        )),
        keys,
        hasher: PasswordHasher::with_params(1024, 1, 4).unwrap(),
        revocation,
        audit: observed,
        rbac: Rbac::default(),
        clock,
    };
    let config = AccountsConfig {
        refresh_grace: grace,
        ..AccountsConfig::default()
    };
    (Accounts::open(deps, config).await.unwrap(), audit)
}

fn registration(email: &str) -> Registration<'_> {
    Registration {
        email,
        password: PASSWORD,
        phone: Some("+44 20 7946 0958"),
        tax_id: Some("DE 123 456 789"),
    }
}

/// A login as `email` with [`PASSWORD`] from the `web` client, without a TOTP code.
#[must_use]
pub fn credentials(email: &str) -> Credentials<'_> {
    Credentials {
        email,
        password: PASSWORD,
        totp: None,
        client_id: "web",
    }
}

async fn events(audit: &dyn AuditLog) -> Vec<coffer_audit::AuditEvent> {
    audit
        .list(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

fn count(events: &[coffer_audit::AuditEvent], action: Action) -> usize {
    events.iter().filter(|e| e.action == action).count()
}

/// The ordinary life of a session.
pub async fn register_login_refresh_and_logout(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let profile = a.profile(id).await.unwrap();
    assert_eq!(profile.email.expose(), "alice.example@example.org");
    assert_eq!(profile.phone.unwrap().expose(), "+442079460958");
    assert_eq!(profile.tax_id.unwrap().expose(), "DE123456789");
    assert_eq!(profile.roles, ["user"]);
    assert!(!profile.mfa_enabled);

    // Any spelling of the address logs in.
    let s1 = a
        .login(credentials("  alice.example@EXAMPLE.org"), &ctx())
        .await
        .unwrap();
    assert_eq!(s1.expires_in, 3600);
    assert!(!format!("{s1:?}").contains(s1.access_token.as_str()));
    let v = a.tokens().verify(&s1.access_token).await.unwrap();
    assert_eq!(v.claims.sub, id.to_string());
    assert_eq!(v.claims.amr, ["pwd"]);
    assert_eq!(v.claims.client_id, "web");
    assert_eq!(v.claims.roles, ["user"]);

    // Refresh: a new pair in the same session, the old refresh token spent.
    let s2 = a.refresh(s1.refresh_token.expose(), &ctx()).await.unwrap();
    assert_ne!(s2.refresh_token.expose(), s1.refresh_token.expose());
    assert_eq!(s2.claims.sid, s1.claims.sid);
    assert_eq!(s2.claims.amr, ["pwd"]);
    assert!(a.tokens().verify(&s2.access_token).await.is_ok());

    // Logout ends this access token and the session's refresh token, nothing else.
    let other = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    a.logout(&s2.claims, &ctx()).await.unwrap();
    assert!(matches!(
        a.tokens().verify(&s2.access_token).await,
        Err(TokenError::Revoked)
    ));
    assert!(matches!(
        a.refresh(s2.refresh_token.expose(), &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(a.tokens().verify(&other.access_token).await.is_ok());
    assert!(
        a.refresh(other.refresh_token.expose(), &ctx())
            .await
            .is_ok()
    );

    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserRegister), 1);
    assert_eq!(count(&e, Action::UserLogin), 2);
    assert_eq!(count(&e, Action::UserLogout), 1);
    assert!(
        e.iter()
            .filter(|e| e.action == Action::UserLogin)
            .all(|e| e.subject == Subject::User(EntityId::parse(&id.to_string()).unwrap()))
    );
    assert!(matches!(
        a.refresh("cfr1_nonsense", &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
}

/// A taken email is refused before a data key is generated for it: registering costs the key
/// manager a call only when it can succeed.
pub async fn a_taken_email_costs_no_data_key(backend: &dyn Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use coffer_keys::testkit::{DataKeyCall, Intercepted};

    let counting = Arc::new(Intercepted::new(
        backend.keys(),
        AtomicUsize::new(0),
        |generated: &AtomicUsize, call| {
            if call == DataKeyCall::Generate {
                generated.fetch_add(1, SeqCst);
            }
            Ok(())
        },
    ));
    let (a, _) = accounts_keyed(
        backend,
        Duration::ZERO,
        coffer_clock::system(),
        counting.clone(),
    )
    .await;
    let before = counting.load(SeqCst);
    a.register(registration(EMAIL), &ctx()).await.unwrap();
    assert_eq!(counting.load(SeqCst), before + 1);
    for again in [EMAIL.to_owned(), EMAIL.to_lowercase()] {
        assert!(matches!(
            a.register(registration(&again), &ctx()).await,
            Err(AuthError::EmailTaken)
        ));
    }
    assert_eq!(counting.load(SeqCst), before + 1);
}

/// Every field's refusal is typed; a taken email (in any spelling) is refused and writes nothing.
pub async fn registration_refuses_bad_input_and_taken_emails(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let field = |r: Result<UserId, AuthError>| match r {
        Err(AuthError::Invalid { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    };
    let ok = registration("bob@example.com");
    let cases: [(Registration<'_>, &str); 5] = [
        (
            Registration {
                email: "bob@",
                ..ok
            },
            "email",
        ),
        (
            Registration {
                password: "short",
                ..ok
            },
            "password",
        ),
        (
            Registration {
                password: "password1234",
                ..ok
            },
            "password",
        ),
        (
            Registration {
                phone: Some("0207 946 0958"),
                ..ok
            },
            "phone",
        ),
        (
            Registration {
                tax_id: Some("x"),
                ..ok
            },
            "tax_id",
        ),
    ];
    for (r, expected) in cases {
        assert_eq!(field(a.register(r, &ctx()).await), expected);
    }
    a.register(ok, &ctx()).await.unwrap();
    let again = a.register(registration(" BOB@example.com"), &ctx()).await;
    assert!(matches!(again, Err(AuthError::EmailTaken)), "{again:?}");
    assert_eq!(AuthError::EmailTaken.code(), "email_taken");
    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserRegister), 1, "refusals write nothing");
    // Optional fields may be left out.
    let minimal = Registration {
        phone: None,
        tax_id: None,
        ..registration("carol@example.com")
    };
    let id = a.register(minimal, &ctx()).await.unwrap();
    let p = a.profile(id).await.unwrap();
    assert!(p.phone.is_none() && p.tax_id.is_none());
}

/// An unknown email, a wrong password and a malformed email fail alike, are audited, and feed
/// the failed-login alert.
pub async fn failed_logins_look_alike_and_are_audited(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let attempts = [
        Credentials {
            password: "wrong password here",
            ..credentials(EMAIL)
        },
        credentials("nobody@example.com"),
        credentials("not an email"),
    ];
    for c in attempts {
        let err = a.login(c, &ctx()).await.unwrap_err();
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
        assert_eq!(err.to_string(), "invalid email, password or code");
    }
    let e = events(audit.as_ref()).await;
    let failed: Vec<_> = e
        .iter()
        .filter(|e| e.action == Action::UserLoginFailed)
        .collect();
    assert_eq!(failed.len(), 3);
    let user = Subject::User(EntityId::parse(&id.to_string()).unwrap());
    assert_eq!(failed.iter().filter(|e| e.subject == user).count(), 1);
    assert!(
        failed
            .iter()
            .any(|e| matches!(e.details.get("email"), Some(DetailValue::Mac(_)))),
        "an unknown address is correlated by its keyed hash"
    );
    assert!(failed.iter().all(|e| e.details.get("client_ip").is_some()));
    // Five more wrong passwords: the sixth failure within five minutes raises the alert.
    for _ in 0..5 {
        let wrong = Credentials {
            password: "wrong password here",
            ..credentials(EMAIL)
        };
        assert!(a.login(wrong, &ctx()).await.is_err());
    }
    let e = events(audit.as_ref()).await;
    assert!(
        e.iter().any(|e| e.action == Action::SecurityAlert
            && matches!(e.details.get("rule"), Some(DetailValue::Code(c)) if c.as_str() == "failed_logins")),
        "failed_logins alert"
    );
    let dump = format!("{e:?}");
    assert!(!dump.contains("nobody@example.com") && !dump.contains("wrong password"));
}

fn decode_base32(s: &str) -> TotpSecret {
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32"),
        };
        bits = (bits << 5) | u64::from(v);
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).unwrap());
        }
    }
    TotpSecret::from_bytes(&out).unwrap()
}

fn with_code(code: &str) -> Credentials<'_> {
    Credentials {
        totp: Some(code),
        ..credentials(EMAIL)
    }
}

/// A thief refreshing `stolen` in a loop until refused, meanwhile: every token it was issued.
/// Bounded, since a session that outlived its end would refresh forever.
fn refresh_until_refused(
    a: &Arc<Accounts>,
    stolen: &RefreshToken,
) -> tokio::task::JoinHandle<Vec<RefreshToken>> {
    let a = a.clone();
    let first = RefreshToken::parse(stolen.expose()).unwrap();
    tokio::spawn(async move {
        let mut issued = vec![first];
        for _ in 0..300 {
            let current = issued.last().unwrap().expose().to_owned();
            match a.refresh(&current, &RequestContext::default()).await {
                Ok(next) => issued.push(next.refresh_token),
                Err(_) => break,
            }
        }
        issued
    })
}

/// Each of `issued` is revoked or spent: `what` has no live token.
async fn none_live(store: &dyn UserStore, issued: &[RefreshToken], what: &str) {
    for t in issued {
        let r = store.refresh_token(&t.hash()).await.unwrap().unwrap();
        assert!(r.revoked || r.spent_at.is_some(), "{what}: a token is live");
    }
}

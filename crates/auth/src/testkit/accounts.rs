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
mod passwords;

pub use api_keys::api_keys_act_as_their_owner_until_revoked_or_expired;
pub use erasure::an_erased_user_is_unreadable_and_every_way_in_ends;

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

/// A spent refresh token presented again (outside the grace window) revokes the whole family
/// and is audited; inside the window, a retry rotates and the thief's or owner's other copy
/// then trips reuse detection.
pub async fn a_reused_refresh_token_revokes_its_family(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    a.register(registration(EMAIL), &ctx()).await.unwrap();
    let s1 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let s2 = a.refresh(s1.refresh_token.expose(), &ctx()).await.unwrap();
    let reuse = a.refresh(s1.refresh_token.expose(), &ctx()).await;
    assert!(matches!(reuse, Err(AuthError::InvalidRefreshToken)));
    assert!(
        matches!(
            a.refresh(s2.refresh_token.expose(), &ctx()).await,
            Err(AuthError::InvalidRefreshToken)
        ),
        "the family is revoked with it"
    );
    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserRefreshReuseDetected), 1);

    // With a grace window: the retry of a lost response rotates again...
    let (a, _) = accounts(backend, Duration::from_secs(30)).await;
    let t1 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let lost = a.refresh(t1.refresh_token.expose(), &ctx()).await.unwrap();
    let retried = a.refresh(t1.refresh_token.expose(), &ctx()).await.unwrap();
    // ...and the response that was "lost", turning up, is a copy in someone else's hands.
    assert!(matches!(
        a.refresh(lost.refresh_token.expose(), &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(matches!(
        a.refresh(retried.refresh_token.expose(), &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
}

/// Many concurrent uses of one refresh token: without a grace window exactly one rotates (and
/// the others, being reuse, end the session); with one, every retry rotates but one session
/// stays live.
pub async fn concurrent_uses_of_one_refresh_token_leave_one_live_session(backend: &dyn Backend) {
    for grace in [Duration::ZERO, Duration::from_secs(30)] {
        let (a, _) = accounts(backend, grace).await;
        let a = Arc::new(a);
        if grace.is_zero() {
            a.register(registration(EMAIL), &ctx()).await.unwrap();
        }
        let s = a.login(credentials(EMAIL), &ctx()).await.unwrap();
        let token = s.refresh_token.expose().to_owned();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (a, token) = (a.clone(), token.clone());
                tokio::spawn(async move { a.refresh(&token, &RequestContext::default()).await })
            })
            .collect();
        let mut issued = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(s) => issued.push(s.refresh_token),
                Err(AuthError::InvalidRefreshToken) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(!issued.is_empty());
        // Live: stored, unspent, not revoked (read from the store: presenting a superseded
        // token would itself revoke the family).
        let (store, _, _) = backend.open(backend.keys()).await;
        let mut live = 0;
        for t in &issued {
            let r = store.refresh_token(&t.hash()).await.unwrap().unwrap();
            if !r.revoked && r.spent_at.is_none() {
                live += 1;
            }
        }
        if grace.is_zero() {
            assert_eq!(issued.len(), 1, "one use wins");
            assert_eq!(live, 0, "the other uses were reuse: the family is revoked");
        } else {
            assert_eq!(issued.len(), 8, "every retry within the window rotates");
            assert_eq!(live, 1, "and exactly one of the tokens handed out is live");
        }
    }
}

/// Revoke-all (and an admin's revoke) ends every access token and refresh family of the user,
/// and only theirs; the user can log in again.
pub async fn revoke_all_ends_every_session(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    a.register(registration("bob@example.com"), &ctx())
        .await
        .unwrap();
    let s1 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let s2 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let bob = a
        .login(credentials("bob@example.com"), &ctx())
        .await
        .unwrap();
    let me = Actor::User(EntityId::parse(&id.to_string()).unwrap());
    a.revoke_sessions(me.clone(), id, &ctx()).await.unwrap();
    assert!(matches!(
        a.revoke_sessions(me, UserId::new(), &ctx()).await,
        Err(AuthError::UserNotFound)
    ));
    for s in [&s1, &s2] {
        assert!(matches!(
            a.tokens().verify(&s.access_token).await,
            Err(TokenError::UserRevoked)
        ));
        assert!(matches!(
            a.refresh(s.refresh_token.expose(), &ctx()).await,
            Err(AuthError::InvalidRefreshToken)
        ));
    }
    assert!(a.tokens().verify(&bob.access_token).await.is_ok());
    let again = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    assert!(a.tokens().verify(&again.access_token).await.is_ok());

    // The emergency revoke: every access token issued so far.
    let admin = Actor::Service(EntityId::parse("worker").unwrap());
    a.revoke_everyone(admin, &ctx()).await.unwrap();
    for s in [&again, &bob] {
        assert!(matches!(
            a.tokens().verify(&s.access_token).await,
            Err(TokenError::EveryoneRevoked)
        ));
        assert!(
            matches!(
                a.refresh(s.refresh_token.expose(), &ctx()).await,
                Err(AuthError::InvalidRefreshToken)
            ),
            "sessions end too: a stolen refresh token mints nothing"
        );
    }
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());
    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserSessionRevoked), 2);
}

/// A session refreshed in a loop (a thief with the token) while its owner logs out: once the
/// logout returns, no token of the family is live, whatever the interleaving.
pub async fn a_revoked_session_stays_revoked_while_it_is_being_refreshed(backend: &dyn Backend) {
    let (a, _) = accounts(backend, Duration::ZERO).await;
    let a = Arc::new(a);
    a.register(registration(EMAIL), &ctx()).await.unwrap();
    let (store, _, _) = backend.open(backend.keys()).await;
    for round in 0..5 {
        let s = a.login(credentials(EMAIL), &ctx()).await.unwrap();
        let thief = refresh_until_refused(&a, &s.refresh_token);
        tokio::time::sleep(Duration::from_millis(5 * round)).await;
        a.logout(&s.claims, &ctx()).await.unwrap();
        let issued = thief.await.unwrap();
        none_live(
            store.as_ref(),
            &issued,
            &format!("round {round}, the logged-out session"),
        )
        .await;
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

/// TOTP: enrollment needs the password and takes effect once confirmed; then a login needs a
/// fresh code and carries `amr` ["pwd","otp"]; a code is accepted once, also when sent by
/// several logins at once; turning the factor off needs a fresh code.
pub async fn totp_enrollment_login_and_replay(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::default());
    let (a, audit) = accounts_on(backend, Duration::ZERO, clock.clone()).await;
    let a = Arc::new(a);
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    assert!(
        matches!(
            a.totp_enroll(id, "not the password", &ctx()).await,
            Err(AuthError::InvalidCredentials)
        ),
        "an access token alone cannot enroll a factor"
    );
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    assert!(format!("{enrollment:?}").contains("REDACTED"));
    assert!(enrollment.otpauth_uri.contains(enrollment.secret.as_str()));
    assert!(
        !enrollment.otpauth_uri.contains("example"),
        "no email in the URI"
    );
    let secret = decode_base32(&enrollment.secret);
    // Codes are computed here and checked by the service a moment later: start well inside a
    // step so both see the same one (the service's clock is the test's, and it stands still).
    let step = crate::mfa::STEP_SECS;
    let in_step = clock.unix_secs() % step;
    if in_step > step - 8 {
        clock.advance(Duration::from_secs(step - in_step + 1));
    }
    let now = clock.unix_secs();
    let (previous, current, next) = (
        secret.code_at(now - step),
        secret.code_at(now),
        secret.code_at(now + step),
    );
    // A code that is not the current one (each digit moved by one).
    let wrong: String = current
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect();
    // Not confirmed yet: the password alone still logs in.
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());
    assert!(matches!(
        a.totp_confirm(id, &wrong, &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    // Confirm with the previous step's code, so the current one is still fresh for the login.
    a.totp_confirm(id, &previous, &ctx()).await.unwrap();
    assert!(a.profile(id).await.unwrap().mfa_enabled);
    assert!(matches!(
        a.totp_enroll(id, PASSWORD, &ctx()).await,
        Err(AuthError::MfaState(_))
    ));

    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    let wrong_password = Credentials {
        password: "wrong password here",
        ..with_code(&current)
    };
    assert!(
        matches!(
            a.login(wrong_password, &ctx()).await,
            Err(AuthError::InvalidCredentials)
        ),
        "a wrong password never reveals that a code is needed"
    );
    assert!(matches!(
        a.login(with_code("12345x"), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        a.login(with_code(&wrong), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    // Four logins with one code at once: one gets in.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (a, code) = (a.clone(), current.clone());
            tokio::spawn(async move {
                let c = Credentials {
                    totp: Some(&code),
                    ..credentials(EMAIL)
                };
                a.login(c, &RequestContext::default()).await
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => sessions.push(s),
            Err(AuthError::InvalidCredentials) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sessions.len(), 1, "a code is accepted once");
    let s = sessions.pop().unwrap();
    assert_eq!(s.claims.amr, ["pwd", "otp"]);
    let refreshed = a.refresh(s.refresh_token.expose(), &ctx()).await.unwrap();
    assert_eq!(
        refreshed.claims.amr,
        ["pwd", "otp"],
        "kept through rotation"
    );
    assert!(matches!(
        a.login(with_code(&current), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    let e = events(audit.as_ref()).await;
    assert!(count(&e, Action::UserMfaUpdate) >= 2);
    assert!(e.iter().any(|e| e.action == Action::UserLoginFailed
        && matches!(e.details.get("reason"), Some(DetailValue::Code(c)) if c.as_str() == "bad_otp")));
    // Turning it off needs a fresh code: the one just used is refused, the next step's works.
    assert!(matches!(
        a.totp_disable(id, &current, &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    a.totp_disable(id, &next, &ctx()).await.unwrap();
    assert!(!a.profile(id).await.unwrap().mfa_enabled);
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());
}

/// Guesses at one account from many addresses: six wrong codes are checked, then the account
/// takes no guess for a doubling wait (at most 15 minutes), so a day of guessing checks about a
/// hundred codes of a million. A wrong password at an unknown email gets the same answers as at
/// a known one. The right password alone is audited like a failed login, and so is a refused
/// removal of the factor. The right password and code after the wait log in.
pub async fn guesses_at_one_account_back_off_from_any_address(backend: &dyn Backend) {
    let clock = Arc::new(ManualClock::default());
    let (a, audit) = accounts_on(backend, Duration::ZERO, clock.clone()).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    let secret = decode_base32(&enrollment.secret);
    let code_now = || secret.code_at(clock.unix_secs());
    a.totp_confirm(id, &code_now(), &ctx()).await.unwrap();
    let failed_for = |reason: &'static str| {
        let audit = audit.clone();
        async move {
            events(audit.as_ref())
                .await
                .iter()
                .filter(|e| {
                    e.action == Action::UserLoginFailed
                        && matches!(e.details.get("reason"), Some(DetailValue::Code(c)) if c.as_str() == reason)
                })
                .count()
        }
    };
    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    assert_eq!(
        failed_for("mfa_required").await,
        1,
        "the right password alone"
    );

    let from = |i: u8| RequestContext {
        client_ip: Some(std::net::IpAddr::from([198, 51, 100, i])),
        request_id: None,
    };
    // A code that is none of the three accepted now.
    let not_a_code = || {
        let now = clock.unix_secs();
        let step = crate::mfa::STEP_SECS;
        let accepted = [now - step, now, now + step].map(|t| secret.code_at(t));
        (0..4)
            .map(|i| format!("{i}{i}{i}{i}{i}{i}"))
            .find(|c| !accepted.contains(c))
            .unwrap()
    };
    let mut answers = (0, 0);
    for i in 0..200 {
        match a.login(with_code(&not_a_code()), &from(i)).await {
            Err(AuthError::InvalidCredentials) => answers.0 += 1,
            Err(AuthError::TooManyGuesses { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(1));
                answers.1 += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers, (6, 194), "six codes checked, then none");
    let start = clock.unix_secs();
    let mut checked = 0;
    while clock.unix_secs() < start + 24 * 3600 {
        match a.login(with_code(&not_a_code()), &from(7)).await {
            Err(AuthError::InvalidCredentials) => checked += 1,
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        checked <= 24 * 4 + 11,
        "{checked} codes checked in a day: one per 15 minutes once the wait is at its longest"
    );

    for email in [EMAIL, "nobody@example.com"] {
        let wrong = Credentials {
            email,
            password: "wrong password here",
            ..credentials(EMAIL)
        };
        let mut codes = Vec::new();
        for i in 0..8 {
            codes.push(a.login(wrong, &from(i)).await.unwrap_err().code());
        }
        assert_eq!(
            codes,
            [["invalid_credentials"; 6].as_slice(), &["rate_limited"; 2]].concat(),
            "{email}"
        );
    }

    let refused = failed_for("bad_otp").await;
    let disabled = loop {
        match a.totp_disable(id, &not_a_code(), &ctx()).await {
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => break other,
        }
    };
    assert!(matches!(disabled, Err(AuthError::InvalidCredentials)));
    assert_eq!(
        failed_for("bad_otp").await,
        refused + 1,
        "a refused removal is audited"
    );
    let session = loop {
        match a.login(with_code(&code_now()), &ctx()).await {
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => break other.unwrap(),
        }
    };
    assert_eq!(session.claims.amr, ["pwd", "otp"]);
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

/// Role changes by an admin end the user's current access tokens; a refresh brings the new
/// roles. Unknown roles and users are refused.
pub async fn role_changes_take_effect_now(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let admin = UserId::new();
    let s = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    a.set_roles(admin, id, &["admin".to_owned(), "user".to_owned()], &ctx())
        .await
        .unwrap();
    assert!(matches!(
        a.tokens().verify(&s.access_token).await,
        Err(TokenError::UserRevoked)
    ));
    let r = a.refresh(s.refresh_token.expose(), &ctx()).await.unwrap();
    assert_eq!(r.claims.roles, ["admin", "user"]);
    assert!(a.tokens().verify(&r.access_token).await.is_ok());
    assert!(matches!(
        a.set_roles(admin, id, &["root".to_owned()], &ctx()).await,
        Err(AuthError::UnknownRole(r)) if r == "root"
    ));
    assert!(matches!(
        a.set_roles(admin, UserId::new(), &["user".to_owned()], &ctx())
            .await,
        Err(AuthError::UserNotFound)
    ));
    assert_eq!(a.profile(id).await.unwrap().roles, ["admin", "user"]);
    let e = events(audit.as_ref()).await;
    let changed: Vec<_> = e
        .iter()
        .filter(|e| e.action == Action::UserRolesChanged)
        .collect();
    assert_eq!(changed.len(), 1, "refusals write nothing");
    assert_eq!(
        changed[0].actor,
        Actor::Admin(EntityId::parse(&admin.to_string()).unwrap())
    );
}

/// Nobody can take the last administrator's role away, the administrator included, and two
/// administrators demoting each other at once leave one.
pub async fn the_last_administrator_keeps_the_role(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let admin = |roles: &[&str]| roles.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>();
    let first = a
        .register(registration("first@example.com"), &ctx())
        .await
        .unwrap();
    a.set_roles(first, first, &admin(&["admin"]), &ctx())
        .await
        .unwrap();
    // Demoting oneself as the only administrator is refused, and so is anyone else's doing it.
    for by in [first, UserId::new()] {
        assert!(matches!(
            a.set_roles(by, first, &admin(&["user"]), &ctx()).await,
            Err(AuthError::LastAdmin)
        ));
    }
    assert_eq!(a.profile(first).await.unwrap().roles, ["admin"]);
    // With a second administrator, one may go; then the other is the last.
    let second = a
        .register(registration("second@example.com"), &ctx())
        .await
        .unwrap();
    a.set_roles(first, second, &admin(&["admin", "user"]), &ctx())
        .await
        .unwrap();
    a.set_roles(first, first, &admin(&["user"]), &ctx())
        .await
        .unwrap();
    assert!(matches!(
        a.set_roles(second, second, &admin(&[]), &ctx()).await,
        Err(AuthError::LastAdmin)
    ));
    // Two administrators demoting each other at the same time, again and again: each time one
    // change lands and one administrator is left.
    let a = Arc::new(a);
    let mut holder = second;
    for _ in 0..8 {
        let other = if holder == first { second } else { first };
        a.set_roles(holder, other, &admin(&["admin"]), &ctx())
            .await
            .unwrap();
        let race = [(first, second), (second, first)].map(|(by, whom)| {
            let (a, user) = (a.clone(), admin(&["user"]));
            tokio::spawn(async move { a.set_roles(by, whom, &user, &ctx()).await })
        });
        let mut landed = 0;
        for task in race {
            match task.await.unwrap() {
                Ok(_) => landed += 1,
                Err(AuthError::LastAdmin) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(landed, 1);
        let mut admins = Vec::new();
        for u in [first, second] {
            if a.profile(u)
                .await
                .unwrap()
                .roles
                .iter()
                .any(|r| r == "admin")
            {
                admins.push(u);
            }
        }
        assert_eq!(admins.len(), 1);
        holder = admins[0];
    }
    // A refusal writes nothing: one roles record per change that landed.
    let changed = events(audit.as_ref())
        .await
        .iter()
        .filter(|e| e.action == Action::UserRolesChanged)
        .count();
    assert_eq!(changed, 3 + 8 * 2);
}

/// The signing keys and the blind-index key are made once and read back by every later start;
/// tokens and sessions from before a restart keep working; a rotation keeps old tokens valid.
pub async fn keys_and_sessions_survive_a_restart(backend: &dyn Backend) {
    let (first, _) = accounts(backend, Duration::ZERO).await;
    first.register(registration(EMAIL), &ctx()).await.unwrap();
    let s = first.login(credentials(EMAIL), &ctx()).await.unwrap();
    let kid = first.tokens().current_kid().unwrap();

    let (second, _) = accounts(backend, Duration::ZERO).await;
    assert_eq!(
        second.tokens().current_kid().unwrap(),
        kid,
        "one key, not one per start"
    );
    assert_eq!(second.tokens().jwks(), first.tokens().jwks());
    assert!(second.tokens().verify(&s.access_token).await.is_ok());
    // The blind-index key is the same: the user is found.
    let again = second.login(credentials(EMAIL), &ctx()).await.unwrap();
    let r = second
        .refresh(s.refresh_token.expose(), &ctx())
        .await
        .unwrap();

    let new_kid = second.rotate_signing_key().await.unwrap();
    assert_ne!(new_kid, kid);
    let after = second
        .refresh(r.refresh_token.expose(), &ctx())
        .await
        .unwrap();
    assert!(second.tokens().verify(&after.access_token).await.is_ok());
    assert!(
        second.tokens().verify(&again.access_token).await.is_ok(),
        "old key still verifies"
    );
    let jwks = second.tokens().jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // The first process has not seen the rotation: a token under the new kid makes it read
    // the keys again, once, instead of refusing the token.
    assert!(matches!(
        first.tokens().verify(&after.access_token).await,
        Err(TokenError::UnknownKey)
    ));
    assert!(first.verify(&after.access_token).await.is_ok());
    assert_eq!(first.tokens().current_kid().unwrap(), new_kid);
    assert!(matches!(
        first
            .verify("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Im5vcGUifQ.e30.c2ln")
            .await,
        Err(AuthError::Token(TokenError::UnknownKey))
    ));
    let (third, _) = accounts(backend, Duration::ZERO).await;
    assert_eq!(third.tokens().jwks(), jwks);

    // The old key leaked: dropped, its tokens stop verifying everywhere, also after a reload;
    // the current key cannot be dropped.
    assert!(matches!(
        third.drop_signing_key(&new_kid).await,
        Err(AuthError::Invalid { .. })
    ));
    third.drop_signing_key(&kid).await.unwrap();
    assert!(matches!(
        third.verify(&again.access_token).await,
        Err(AuthError::Token(TokenError::UnknownKey))
    ));
    third.reload_signing_keys().await.unwrap();
    assert_eq!(third.tokens().jwks()["keys"].as_array().unwrap().len(), 1);
    let (fourth, _) = accounts(backend, Duration::ZERO).await;
    assert!(matches!(
        fourth.verify(&again.access_token).await,
        Err(AuthError::Token(TokenError::UnknownKey))
    ));
    assert!(fourth.verify(&after.access_token).await.is_ok());
}

/// A raw scan of everything stored: no email (in any case), phone, tax id, password, refresh
/// token or TOTP secret in the clear.
pub async fn raw_tables_hold_no_personal_data_or_secrets(backend: &dyn Backend) {
    let (a, _) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let s = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let r = a.refresh(s.refresh_token.expose(), &ctx()).await.unwrap();
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    let secret = decode_base32(&enrollment.secret);
    let raw = backend.raw_dump().await;
    let lower = String::from_utf8_lossy(&raw).to_lowercase();
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    for needle in [
        "alice.example@example.org",
        "alice.example",
        "442079460958",
        "2079460958",
        "de123456789",
        "123456789",
        PASSWORD,
        &s.refresh_token.expose().to_lowercase(),
        &r.refresh_token.expose().to_lowercase(),
        &enrollment.secret.to_lowercase(),
    ] {
        assert!(!lower.contains(needle), "{needle} stored in the clear");
    }
    assert!(!contains(secret.expose()), "TOTP secret stored raw");
    // Postgres dumps bytea as hex: look for the secret that way too.
    let hex: String = secret.expose().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!lower.contains(&hex), "TOTP secret stored as hex");
    assert!(
        lower.contains("argon2id"),
        "the scan sees the password hash column"
    );
}

/// Families that ended are deleted by the purge; live ones stay.
pub async fn ended_families_are_purged(backend: &dyn Backend) {
    let (a, _) = accounts(backend, Duration::ZERO).await;
    let (store, _, _) = backend.open(backend.keys()).await;
    a.register(registration(EMAIL), &ctx()).await.unwrap();
    let s = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let now = unix_secs(std::time::SystemTime::now());
    assert_eq!(store.purge_families(now).await.unwrap(), 0);
    let r = a.refresh(s.refresh_token.expose(), &ctx()).await.unwrap();
    // Thirty days and a second later, both tokens of the family go.
    let later = now + crate::refresh::FAMILY_LIFETIME_SECS + 1;
    assert_eq!(store.purge_families(later).await.unwrap(), 2);
    assert!(
        store
            .refresh_token(&r.refresh_token.hash())
            .await
            .unwrap()
            .is_none()
    );
}

/// A user's data key rotates: every personal field and the TOTP secret move to the new
/// version; the profile reads the same, the password and the second factor still log in; an
/// enrollment written under the old version after a rotation is refused, not left unreadable.
pub async fn a_users_data_key_rotates_with_every_field(backend: &dyn Backend) {
    let (a, _) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let before = a.profile(id).await.unwrap();
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    assert_eq!(a.rotate_user_key(id).await.unwrap(), 2);
    let (store, _, _) = backend.open(backend.keys()).await;
    let loaded = store.user(id).await.unwrap().unwrap();
    assert_eq!(loaded.record.dek_version, 2);
    assert_eq!(
        loaded.keys.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let after = a.profile(id).await.unwrap();
    assert_eq!(after.email.expose(), before.email.expose());
    assert_eq!(
        after.phone.as_ref().map(|p| p.expose().to_owned()),
        before.phone.as_ref().map(|p| p.expose().to_owned())
    );
    assert_eq!(
        after.tax_id.as_ref().map(|t| t.expose().to_owned()),
        before.tax_id.as_ref().map(|t| t.expose().to_owned())
    );
    // The TOTP secret moved too: a code from the app enrolled before the rotation confirms.
    let secret = decode_base32(&enrollment.secret);
    let now = unix_secs(std::time::SystemTime::now());
    a.totp_confirm(id, &secret.code_at(now - crate::mfa::STEP_SECS), &ctx())
        .await
        .unwrap();
    assert!(a.profile(id).await.unwrap().mfa_enabled);
    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    assert_eq!(a.rotate_user_key(id).await.unwrap(), 3);
    a.login(with_code(&secret.code_at(now)), &ctx())
        .await
        .unwrap();
    // A factor sealed under version 3 cannot be written once version 4 is current.
    let user = store.user(id).await.unwrap().unwrap();
    assert_eq!(a.rotate_user_key(id).await.unwrap(), 4);
    let event = coffer_audit::AuditEvent::new(
        coffer_audit::Actor::Anonymous,
        Action::UserMfaUpdate,
        coffer_audit::Subject::System,
        coffer_audit::Outcome::Success,
    );
    assert!(
        store
            .set_totp(id, None, true, user.record.dek_version, &event)
            .await
            .unwrap()
            .is_none(),
        "written under version 3 while 4 is current: refused"
    );
    assert!(a.profile(id).await.unwrap().mfa_enabled);
    assert!(matches!(
        a.rotate_user_key(crate::user::UserId::new()).await,
        Err(AuthError::UserNotFound)
    ));
}

fn with_code(code: &str) -> Credentials<'_> {
    Credentials {
        totp: Some(code),
        ..credentials(EMAIL)
    }
}

/// An external issuer for the authenticator's case: it claims the tokens `ext:<subject>` (or,
/// when `claims_everything`, every token), verifies them as `subject` of `issuer`, and counts
/// what it is asked.
#[derive(Debug)]
struct FakeIssuer {
    issuer: String,
    claims_everything: bool,
    verified: std::sync::atomic::AtomicUsize,
    revoked: std::sync::Mutex<Vec<crate::ExternalPrincipal>>,
}

impl FakeIssuer {
    fn new(issuer: &str, claims_everything: bool) -> Arc<Self> {
        Arc::new(Self {
            issuer: issuer.to_owned(),
            claims_everything,
            verified: std::sync::atomic::AtomicUsize::new(0),
            revoked: std::sync::Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl crate::ExternalIssuers for FakeIssuer {
    fn claimed_issuer(&self, token: &str) -> Option<String> {
        (self.claims_everything || token.starts_with("ext:")).then(|| self.issuer.clone())
    }

    async fn verify(&self, token: &str) -> Result<crate::ExternalPrincipal, TokenError> {
        self.verified
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let subject = token.strip_prefix("ext:").ok_or(TokenError::BadSignature)?;
        Ok(crate::ExternalPrincipal {
            issuer: self.issuer.clone(),
            subject: subject.to_owned(),
            roles: vec!["user".into()],
            amr: vec!["pwd".into(), "otp".into()],
            jti: Some(format!("jti-{subject}")),
            expires_at: unix_secs(std::time::SystemTime::now()) + 600,
            client_id: Some("idp-client".into()),
        })
    }

    async fn revoke(&self, principal: &crate::ExternalPrincipal) -> Result<(), TokenError> {
        self.revoked.lock().unwrap().push(principal.clone());
        Ok(())
    }
}

/// The authenticator, as every driving adapter calls it: Coffer's own tokens are verified by
/// the accounts service, tokens an external issuer claims by that issuer; an external subject
/// maps to one stable user id per issuer and subject; a token can never reach an external
/// verifier by claiming Coffer's own issuer name; logout of an external token revokes it at its
/// issuer's verifier.
pub async fn tokens_reach_their_issuers_verifier_and_external_subjects_keep_one_id(
    backend: &dyn Backend,
) {
    use crate::{Authenticator, ExternalIssuers};

    let (a, _) = accounts(backend, Duration::ZERO).await;
    let a = Arc::new(a);
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let own = a.login(credentials(EMAIL), &ctx()).await.unwrap();

    let idp = FakeIssuer::new("https://idp.example", false);
    let auth = Authenticator::new(a.clone(), Some(idp.clone() as Arc<dyn ExternalIssuers>));
    let me = auth.authenticate(&own.access_token).await.unwrap();
    assert_eq!((me.user, me.external.as_ref()), (id, None));
    assert_eq!(me.claims.sub, id.to_string());
    assert_eq!(idp.verified.load(std::sync::atomic::Ordering::SeqCst), 0);

    let carol = auth.authenticate("ext:carol").await.unwrap();
    let expected = UserId::from_uuid(uuid::Uuid::new_v5(
        &crate::authenticator::EXTERNAL_SUBJECTS,
        b"https://idp.example\0carol",
    ));
    assert_eq!(carol.user, expected);
    assert_eq!(carol.claims.sub, expected.to_string());
    assert_eq!(carol.claims.iss, "https://idp.example");
    assert_eq!(carol.claims.aud, a.tokens().config().audience);
    assert_eq!(carol.claims.roles, ["user"]);
    assert_eq!(carol.claims.amr, ["pwd", "otp"]);
    assert_eq!(carol.claims.jti, "jti-carol");
    assert_eq!(carol.external.as_ref().unwrap().subject, "carol");
    let again = auth.authenticate("ext:carol").await.unwrap();
    assert_eq!(again.user, carol.user, "the same subject is the same user");
    let dave = auth.authenticate("ext:dave").await.unwrap();
    assert_ne!(dave.user, carol.user, "another subject is another user");
    let elsewhere = FakeIssuer::new("https://other.example", false);
    let other_auth = Authenticator::new(a.clone(), Some(elsewhere as Arc<dyn ExternalIssuers>));
    assert_ne!(
        other_auth.authenticate("ext:carol").await.unwrap().user,
        carol.user,
        "the same subject at another issuer is someone else"
    );
    // What the external verifier refuses is refused.
    let refused = FakeIssuer::new("https://idp.example", true);
    let strict = Authenticator::new(a.clone(), Some(refused.clone() as Arc<dyn ExternalIssuers>));
    assert!(matches!(
        strict.authenticate("not-a-token").await,
        Err(AuthError::Token(TokenError::BadSignature))
    ));

    // An issuer that claims Coffer's own name never sees Coffer's tokens.
    let impostor = FakeIssuer::new(&a.tokens().config().issuer, true);
    let guarded = Authenticator::new(
        a.clone(),
        Some(impostor.clone() as Arc<dyn ExternalIssuers>),
    );
    assert_eq!(
        guarded.authenticate(&own.access_token).await.unwrap().user,
        id
    );
    assert_eq!(
        impostor.verified.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // Logout: an external token is revoked at its issuer's verifier, Coffer's own ends its
    // session.
    auth.logout(&carol, &ctx()).await.unwrap();
    assert_eq!(
        idp.revoked.lock().unwrap().as_slice(),
        [carol.external.clone().unwrap()]
    );
    auth.logout(&me, &ctx()).await.unwrap();
    assert!(matches!(
        auth.authenticate(&own.access_token).await,
        Err(AuthError::Token(TokenError::Revoked))
    ));
    assert!(idp.revoked.lock().unwrap().len() == 1);
}

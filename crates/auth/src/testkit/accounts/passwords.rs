//! The password cases of the user-store contract: a change by the user (with the current
//! password) and a reset an administrator issues (a one-time token), each ending the sessions it
//! must end, also while they are being refreshed.

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{Action, Actor, AuditLog, DetailValue, EntityId, Subject};
use coffer_clock::{Clock, ManualClock};

use super::{
    Backend, EMAIL, PASSWORD, accounts, accounts_on, count, credentials, ctx, decode_base32,
    events, none_live, refresh_until_refused, registration,
};
use crate::accounts::{Accounts, AuthError, Credentials};
use crate::password::NewPassword;
use crate::token::TokenError;
use crate::user::UserId;

/// A password change needs the current password (a wrong one is a failed login), ends every
/// other session of the user at once and keeps the asking one after a refresh; the old password
/// no longer logs in; of two changes at once from one password, one wins.
pub async fn a_password_change_ends_every_other_session(backend: &dyn Backend) {
    let (a, audit) = accounts(backend, Duration::ZERO).await;
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    a.register(registration("bob@example.com"), &ctx())
        .await
        .unwrap();
    let here = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let elsewhere = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let bob = a
        .login(credentials("bob@example.com"), &ctx())
        .await
        .unwrap();
    let sid = here
        .claims
        .sid
        .as_deref()
        .map(|s| uuid::Uuid::parse_str(s).unwrap());
    let new = NewPassword::parse("a different plum tart at dusk").unwrap();
    assert!(matches!(
        a.change_password(id, "not the password", &new, sid, &ctx())
            .await,
        Err(AuthError::InvalidCredentials)
    ));
    let same = NewPassword::parse(PASSWORD).unwrap();
    assert!(matches!(
        a.change_password(id, PASSWORD, &same, sid, &ctx()).await,
        Err(AuthError::Invalid {
            field: "new_password",
            ..
        })
    ));
    a.change_password(id, PASSWORD, &new, sid, &ctx())
        .await
        .unwrap();

    // Every access token of the user stops at once; the other session's refresh token too.
    for s in [&here, &elsewhere] {
        assert!(matches!(
            a.tokens().verify(&s.access_token).await,
            Err(TokenError::UserRevoked)
        ));
    }
    assert!(matches!(
        a.refresh(elsewhere.refresh_token.expose(), &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    // The asking session continues after a refresh; other users are untouched.
    let continued = a
        .refresh(here.refresh_token.expose(), &ctx())
        .await
        .unwrap();
    assert!(a.tokens().verify(&continued.access_token).await.is_ok());
    assert!(a.tokens().verify(&bob.access_token).await.is_ok());
    // Only the new password logs in.
    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    let with_new = Credentials {
        password: "a different plum tart at dusk",
        ..credentials(EMAIL)
    };
    a.login(with_new, &ctx()).await.unwrap();

    // Two changes at once from the same password: one wins, the other is told the password it
    // gave is no longer current.
    let (x, y) = (
        NewPassword::parse("the first of two new passwords").unwrap(),
        NewPassword::parse("the second of two new passwords").unwrap(),
    );
    let c = ctx();
    let (rx, ry) = tokio::join!(
        a.change_password(id, "a different plum tart at dusk", &x, None, &c),
        a.change_password(id, "a different plum tart at dusk", &y, None, &c),
    );
    assert_eq!(
        [rx.is_ok(), ry.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{rx:?} {ry:?}"
    );
    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserPasswordChange), 2);
    assert!(
        count(&e, Action::UserLoginFailed) >= 1,
        "the wrong current password"
    );
}

/// A session refreshed in a loop (a thief with the token) while its owner changes the password
/// from another session: once the change returns, no token of the thief's family is live,
/// whatever the interleaving, and the owner's session goes on.
pub async fn a_password_change_ends_a_session_being_refreshed(backend: &dyn Backend) {
    let (a, _) = accounts(backend, Duration::ZERO).await;
    let a = Arc::new(a);
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    let (store, _, _) = backend.open(backend.keys()).await;
    let passwords = ["a first new password for the race", PASSWORD];
    for round in 0..6 {
        let current = passwords[(round + 1) % 2];
        let owner = a
            .login(
                Credentials {
                    password: current,
                    ..credentials(EMAIL)
                },
                &ctx(),
            )
            .await
            .unwrap();
        let stolen = a
            .login(
                Credentials {
                    password: current,
                    ..credentials(EMAIL)
                },
                &ctx(),
            )
            .await
            .unwrap();
        let thief = refresh_until_refused(&a, &stolen.refresh_token);
        tokio::time::sleep(Duration::from_millis(5 * round as u64)).await;
        let sid = owner
            .claims
            .sid
            .as_deref()
            .map(|s| uuid::Uuid::parse_str(s).unwrap());
        let new = NewPassword::parse(passwords[round % 2]).unwrap();
        a.change_password(id, current, &new, sid, &ctx())
            .await
            .unwrap();
        let issued = thief.await.unwrap();
        let what = format!("round {round}, the other session after the change");
        none_live(store.as_ref(), &issued, &what).await;
        assert!(
            a.refresh(owner.refresh_token.expose(), &ctx())
                .await
                .is_ok(),
            "round {round}: the asking session goes on"
        );
    }
}

/// Accounts on a clock the test holds, with two users: an administrator and [`EMAIL`].
pub(super) async fn admin_and_user(
    backend: &dyn Backend,
) -> (
    Arc<ManualClock>,
    Accounts,
    Arc<dyn AuditLog>,
    UserId,
    UserId,
) {
    let clock = Arc::new(ManualClock::default());
    let (a, audit) = accounts_on(backend, Duration::ZERO, clock.clone()).await;
    let admin = a
        .register(registration("admin@example.com"), &ctx())
        .await
        .unwrap();
    let id = a.register(registration(EMAIL), &ctx()).await.unwrap();
    (clock, a, audit, admin, id)
}

/// An administrator's password reset: not for their own account nor for nobody; a new one
/// replaces the pending one; it changes nothing until redeemed, then works once (also when
/// redeemed twice at once), sets the new password, ends every session of the user and stops
/// working when its lifetime is over, and the cleanup then deletes it. Issuing and redeeming are
/// audited, without the token.
pub async fn a_password_reset_works_once_and_ends_every_session(backend: &dyn Backend) {
    let (clock, a, audit, admin, id) = admin_and_user(backend).await;
    let s1 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let s2 = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    assert!(matches!(
        a.issue_password_reset(admin, admin, &ctx()).await,
        Err(AuthError::Invalid { field: "id", .. })
    ));
    assert!(matches!(
        a.issue_password_reset(admin, UserId::new(), &ctx()).await,
        Err(AuthError::UserNotFound)
    ));
    let first = a.issue_password_reset(admin, id, &ctx()).await.unwrap();
    assert_eq!(first.expires_at, clock.unix_secs() + 24 * 3600);
    assert!(format!("{first:?}").contains("REDACTED"));
    let second = a.issue_password_reset(admin, id, &ctx()).await.unwrap();
    let new = NewPassword::parse("a reset plum tart at dawn").unwrap();
    for (what, bad) in [
        ("the replaced reset", first.token.expose()),
        ("a malformed token", "cpr1_nope"),
        ("a refresh token", s1.refresh_token.expose()),
        ("nothing", ""),
    ] {
        assert!(
            matches!(
                a.reset_password(bad, &new, None, &ctx()).await,
                Err(AuthError::InvalidResetToken)
            ),
            "{what}"
        );
    }
    // Issued and not redeemed, it changes nothing.
    assert!(a.tokens().verify(&s1.access_token).await.is_ok());
    assert!(a.login(credentials(EMAIL), &ctx()).await.is_ok());

    // Redeemed twice at once: once.
    let c = ctx();
    let (r1, r2) = tokio::join!(
        a.reset_password(second.token.expose(), &new, None, &c),
        a.reset_password(second.token.expose(), &new, None, &c),
    );
    assert_eq!(
        [r1.is_ok(), r2.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{r1:?} {r2:?}"
    );
    assert!(matches!(
        a.reset_password(second.token.expose(), &new, None, &ctx())
            .await,
        Err(AuthError::InvalidResetToken)
    ));
    // Every session ends; only the new password logs in.
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
    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    let with_new = Credentials {
        password: "a reset plum tart at dawn",
        ..credentials(EMAIL)
    };
    a.login(with_new, &ctx()).await.unwrap();

    // A reset works until its lifetime is over, not a second longer.
    let third = a.issue_password_reset(admin, id, &ctx()).await.unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    assert!(matches!(
        a.reset_password(third.token.expose(), &new, None, &ctx())
            .await,
        Err(AuthError::InvalidResetToken)
    ));
    // The worker's cleanup deletes it, once.
    assert_eq!(a.purge_expired_resets().await.unwrap(), 1);
    assert_eq!(a.purge_expired_resets().await.unwrap(), 0);

    let e = events(audit.as_ref()).await;
    assert_eq!(count(&e, Action::UserPasswordReset), 1);
    let issued: Vec<_> = e
        .iter()
        .filter(|e| e.action == Action::UserPasswordResetIssued)
        .collect();
    assert_eq!(issued.len(), 3);
    for event in issued {
        assert_eq!(
            event.actor,
            Actor::Admin(EntityId::parse(&admin.to_string()).unwrap())
        );
        assert_eq!(
            event.subject,
            Subject::User(EntityId::parse(&id.to_string()).unwrap())
        );
    }
    assert!(
        e.iter()
            .all(|event| !format!("{event:?}").contains("cpr1_")),
        "a reset token is in the audit log"
    );
}

/// A reset never stands in for a confirmed second factor: without a current code it is refused
/// (`mfa_required`), with a wrong one too, each audited as a failed login, and the reset stays
/// pending for the right code.
pub async fn a_password_reset_asks_for_the_second_factor(backend: &dyn Backend) {
    let (clock, a, audit, admin, id) = admin_and_user(backend).await;
    let enrollment = a.totp_enroll(id, PASSWORD, &ctx()).await.unwrap();
    let secret = decode_base32(&enrollment.secret);
    a.totp_confirm(id, &secret.code_at(clock.unix_secs()), &ctx())
        .await
        .unwrap();
    let issued = a.issue_password_reset(admin, id, &ctx()).await.unwrap();
    let token = issued.token.expose();
    let new = NewPassword::parse("a reset plum tart at dawn").unwrap();
    assert!(matches!(
        a.reset_password(token, &new, None, &ctx()).await,
        Err(AuthError::MfaRequired)
    ));
    clock.advance(Duration::from_secs(crate::mfa::STEP_SECS));
    let current = secret.code_at(clock.unix_secs());
    let wrong: String = current
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect();
    assert!(matches!(
        a.reset_password(token, &new, Some(&wrong), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    loop {
        match a.reset_password(token, &new, Some(&current), &ctx()).await {
            Err(AuthError::TooManyGuesses { retry_after }) => clock.advance(retry_after),
            other => break other.unwrap(),
        }
    }
    let e = events(audit.as_ref()).await;
    let mut failed: Vec<_> = e
        .iter()
        .filter(|e| e.action == Action::UserLoginFailed)
        .filter_map(|e| match e.details.get("reason") {
            Some(DetailValue::Code(c)) => Some(c.as_str().to_owned()),
            _ => None,
        })
        .collect();
    failed.sort();
    assert_eq!(failed, ["bad_otp", "mfa_required"]);
    assert_eq!(count(&e, Action::UserPasswordReset), 1);
}

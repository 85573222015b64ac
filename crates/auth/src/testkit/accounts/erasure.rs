//! The erasure case of the user-store contract: an erased user's data key is destroyed and their
//! personal fields cleared, every way in ends (password, sessions, access tokens, API keys, a
//! pending password reset), the email registers again, and the erasure answers its own retry.

use coffer_audit::{Action, Actor, Code, DetailValue, EntityId};

use super::passwords::admin_and_user;
use super::{Backend, EMAIL, credentials, ctx, events, registration};
use crate::accounts::AuthError;
use crate::api_key::{ApiKeyName, NewApiKey, parse_permissions};
use crate::password::NewPassword;
use crate::token::TokenError;
use crate::user::UserId;

/// A user with a session, an API key and a pending password reset is erased: their key rows
/// are gone and their phone and tax id cleared; their password, session, access token, API key
/// and reset stop working; admin actions on them answer `UserErased`; the email registers a new
/// user; the only administrator is not erased; the same request again answers the first erasure, another key `UserErased` and the
/// same key with another reason `IdempotencyConflict`; one `user.erased` record, with the reason.
pub async fn an_erased_user_is_unreadable_and_every_way_in_ends(backend: &dyn Backend) {
    let (_clock, a, audit, admin, id) = admin_and_user(backend).await;
    let by = Actor::Admin(EntityId::from_uuid(admin.as_uuid()));
    let session = a.login(credentials(EMAIL), &ctx()).await.unwrap();
    let key = a
        .create_api_key(
            admin,
            NewApiKey::new(
                id,
                ApiKeyName::parse("payouts").unwrap(),
                parse_permissions(&["wallet:read"]).unwrap(),
                30,
                None,
            )
            .unwrap(),
            &ctx(),
        )
        .await
        .unwrap();
    let reset = a.issue_password_reset(admin, id, &ctx()).await.unwrap();
    let reason = Code::parse("gdpr_art17").unwrap();
    assert!(matches!(
        a.erase_user(by.clone(), UserId::new(), "k1", &reason, &ctx())
            .await,
        Err(AuthError::UserNotFound)
    ));

    // The only administrator is not erased (asked first, and refused by the store too).
    let nobody = UserId::from_uuid(uuid::Uuid::nil());
    a.set_roles(nobody, admin, &["admin".to_owned()], &ctx())
        .await
        .unwrap();
    assert!(matches!(
        a.check_erasable(admin).await,
        Err(AuthError::LastAdmin)
    ));
    assert!(matches!(
        a.erase_user(by.clone(), admin, "k0", &reason, &ctx()).await,
        Err(AuthError::LastAdmin)
    ));
    assert!(a.profile(admin).await.is_ok(), "nothing of theirs changed");
    assert_eq!(a.check_erasable(id).await.unwrap(), None);

    let done = a
        .erase_user(by.clone(), id, "k1", &reason, &ctx())
        .await
        .unwrap();
    assert_eq!(
        (done.idempotency_key.as_str(), done.reason.as_str()),
        ("k1", "gdpr_art17")
    );
    let (store, _, _) = backend.open(backend.keys()).await;
    let stored = store.user(id).await.unwrap().unwrap();
    assert!(
        stored.keys.is_empty(),
        "every version of the data key is destroyed"
    );
    assert_eq!(
        (
            &stored.record.phone,
            &stored.record.tax_id,
            &stored.record.totp
        ),
        (&None, &None, &None)
    );
    assert_eq!(stored.record.erased.as_ref(), Some(&done));

    assert!(matches!(
        a.login(credentials(EMAIL), &ctx()).await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        a.tokens().verify(&session.access_token).await,
        Err(TokenError::UserRevoked)
    ));
    assert!(matches!(
        a.refresh(session.refresh_token.expose(), &ctx()).await,
        Err(AuthError::InvalidRefreshToken)
    ));
    assert!(matches!(
        a.verify_api_key(key.secret.expose()).await,
        Err(AuthError::Token(TokenError::Revoked))
    ));
    let new = NewPassword::parse("a reset plum tart at dawn").unwrap();
    assert!(matches!(
        a.reset_password(reset.token.expose(), &new, None, &ctx())
            .await,
        Err(AuthError::InvalidResetToken)
    ));
    assert!(matches!(a.profile(id).await, Err(AuthError::UserErased)));
    assert!(matches!(
        a.issue_password_reset(admin, id, &ctx()).await,
        Err(AuthError::UserErased)
    ));
    assert!(matches!(
        a.set_roles(admin, id, &["user".to_owned()], &ctx()).await,
        Err(AuthError::UserErased)
    ));
    let another_key = NewApiKey::new(
        id,
        ApiKeyName::parse("again").unwrap(),
        parse_permissions(&["wallet:read"]).unwrap(),
        30,
        None,
    )
    .unwrap();
    assert!(matches!(
        a.create_api_key(admin, another_key, &ctx()).await,
        Err(AuthError::UserErased)
    ));

    // Retries.
    let again = a
        .erase_user(by.clone(), id, "k1", &reason, &ctx())
        .await
        .unwrap();
    assert_eq!(again, done);
    assert!(matches!(
        a.erase_user(by.clone(), id, "k2", &reason, &ctx()).await,
        Err(AuthError::UserErased)
    ));
    let other = Code::parse("another").unwrap();
    assert!(matches!(
        a.erase_user(by, id, "k1", &other, &ctx()).await,
        Err(AuthError::IdempotencyConflict)
    ));

    // The address is free again: a new user, not the erased one.
    let newcomer = a.register(registration(EMAIL), &ctx()).await.unwrap();
    assert_ne!(newcomer, id);
    assert!(a.profile(newcomer).await.is_ok());

    let erased: Vec<_> = events(audit.as_ref())
        .await
        .into_iter()
        .filter(|e| e.action == Action::UserErased)
        .collect();
    assert_eq!(erased.len(), 1);
    assert_eq!(
        erased[0].details.get("reason"),
        Some(&DetailValue::Code(reason))
    );
}

//! The API-key case of the user-store contract: a key acts as its owner with a subset of the
//! owner's permissions, until it is revoked or expires; it is listed without its secret, and its
//! creation and revocation are audited.

use std::time::Duration;

use coffer_audit::{Action, Actor, DetailValue, EntityId};

use super::passwords::admin_and_user;
use super::{Backend, ctx, events};
use crate::accounts::AuthError;
use crate::api_key::{ApiKeyName, ApiKeySecret, NewApiKey, parse_permissions};
use crate::token::TokenError;
use crate::user::UserId;

fn new_key(user: UserId, permissions: &[&str], days: u32, rate: Option<u32>) -> NewApiKey {
    NewApiKey::new(
        user,
        ApiKeyName::parse("payouts").unwrap(),
        parse_permissions(permissions).unwrap(),
        days,
        rate,
    )
    .unwrap()
}

/// A key is created only with permissions its owner's roles grant, for an existing user; it
/// verifies as its owner with the owner's roles now; a revoked key and an expired one are
/// refused (revoking twice records once), an unknown one too; keys are listed in id order, by
/// owner and in pages; the secret is stored nowhere.
pub async fn api_keys_act_as_their_owner_until_revoked_or_expired(backend: &dyn Backend) {
    let (clock, a, audit, admin, id) = admin_and_user(backend).await;
    assert!(matches!(
        a.create_api_key(admin, new_key(id, &["system:metrics"], 30, None), &ctx())
            .await,
        Err(AuthError::Invalid {
            field: "permissions",
            ..
        })
    ));
    assert!(matches!(
        a.create_api_key(
            admin,
            new_key(UserId::new(), &["wallet:read"], 30, None),
            &ctx()
        )
        .await,
        Err(AuthError::UserNotFound)
    ));
    let first = a
        .create_api_key(admin, new_key(id, &["wallet:read"], 30, Some(5)), &ctx())
        .await
        .unwrap();
    let second = a
        .create_api_key(
            admin,
            new_key(id, &["wallet:read", "wallet:transfer"], 1, None),
            &ctx(),
        )
        .await
        .unwrap();
    let theirs = a
        .create_api_key(admin, new_key(admin, &["wallet:read"], 30, None), &ctx())
        .await
        .unwrap();

    let v = a.verify_api_key(first.secret.expose()).await.unwrap();
    assert_eq!(
        (v.user, v.roles.as_slice()),
        (id, ["user".to_owned()].as_slice())
    );
    assert_eq!(v.grant.id, first.record.id);
    assert_eq!(v.grant.permissions, first.record.permissions);
    assert_eq!(v.grant.rate_per_minute, Some(5));
    assert_eq!(a.api_key(first.record.id).await.unwrap(), first.record);
    for unknown in [ApiKeySecret::generate().expose(), "ck_live_short", ""] {
        assert!(matches!(
            a.verify_api_key(unknown).await,
            Err(AuthError::InvalidApiKey)
        ));
    }
    // The owner's roles are read on every request: without a role the key grants nothing.
    a.set_roles(admin, id, &[], &ctx()).await.unwrap();
    assert!(
        a.verify_api_key(first.secret.expose())
            .await
            .unwrap()
            .roles
            .is_empty()
    );
    a.set_roles(admin, id, &["user".to_owned()], &ctx())
        .await
        .unwrap();

    // Listing: id order, by owner, in pages.
    let all = a.api_keys(None, None, 10).await.unwrap();
    let ids: Vec<_> = all.iter().map(|k| k.id).collect();
    assert_eq!(ids, [first.record.id, second.record.id, theirs.record.id]);
    let mine = a.api_keys(Some(id), None, 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    let page = a
        .api_keys(Some(id), Some(first.record.id), 1)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|k| k.id).collect::<Vec<_>>(),
        [second.record.id]
    );

    // Revoked: refused at once, listed with its time; a second revocation records nothing.
    a.revoke_api_key(admin, first.record.id, &ctx())
        .await
        .unwrap();
    let revoked = a.api_key(first.record.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        a.verify_api_key(first.secret.expose()).await,
        Err(AuthError::Token(TokenError::Revoked))
    ));
    a.revoke_api_key(admin, first.record.id, &ctx())
        .await
        .unwrap();
    assert!(matches!(
        a.revoke_api_key(admin, crate::api_key::ApiKeyId::new(), &ctx())
            .await,
        Err(AuthError::ApiKeyNotFound)
    ));
    assert!(a.verify_api_key(theirs.secret.expose()).await.is_ok());

    // Expired: the second key works for its one day and not a second longer.
    clock.advance(Duration::from_secs(86_400 - 1));
    assert!(a.verify_api_key(second.secret.expose()).await.is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        a.verify_api_key(second.secret.expose()).await,
        Err(AuthError::Token(TokenError::Expired))
    ));

    let events = events(audit.as_ref()).await;
    let named = |action: Action| {
        events
            .iter()
            .filter(|e| e.action == action)
            .map(|e| {
                assert_eq!(e.actor, Actor::Admin(EntityId::from_uuid(admin.as_uuid())));
                match e.details.get("key_id") {
                    Some(DetailValue::Code(c)) => c.as_str().to_owned(),
                    other => panic!("{action:?} names no key: {other:?}"),
                }
            })
            .rev() // the log lists the newest first
            .collect::<Vec<_>>()
    };
    assert_eq!(
        named(Action::ApiKeyCreated),
        [first.record.id, second.record.id, theirs.record.id].map(|k| k.to_string())
    );
    assert_eq!(named(Action::ApiKeyRevoked), [first.record.id.to_string()]);

    let raw = backend.raw_dump().await;
    let lower = String::from_utf8_lossy(&raw).to_lowercase();
    for key in [&first, &second, &theirs] {
        let secret = key.secret.expose().to_lowercase();
        assert!(!lower.contains(&secret), "an API key's secret stored");
        assert!(
            !lower.contains(&secret["ck_live_".len()..]),
            "an API key's secret stored"
        );
    }
}

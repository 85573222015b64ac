//! Roles, keys and storage cases of the user-store contract: role changes and the last
//! administrator, keys and sessions across a restart, the raw-table scan, the purge of ended
//! families, and a user's data-key rotation.

use super::*;

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

//! Session cases of the user-store contract: refresh reuse, concurrent refreshes, revoke-all,
//! and a session revoked while it is being refreshed.

use super::*;

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

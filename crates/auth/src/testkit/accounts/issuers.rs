//! The authenticator's case of the user-store contract: Coffer's own tokens and external
//! issuers' subjects.

use super::*;

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

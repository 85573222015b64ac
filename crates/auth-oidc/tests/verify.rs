//! External tokens against a real JWKS endpoint on a local port: the table of attacks, each
//! refused with its reason; algorithms; roles; revocation; several issuers; configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::{Rbac, RevocationError, RevocationList, RevocationStatus};
use coffer_auth_oidc::{
    IssuerConfig, IssuerConfigError, JwksSource, MAX_TOKEN_BYTES, OidcIssuers, OidcVerifier,
    revocation_key, unverified_issuer,
};
use common::{AUDIENCE, ISSUER, Idp, claims, config, ec_p256, ed25519, now, revocation, rsa};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims();
    edit(&mut c);
    c
}

fn without(claim: &str) -> Value {
    with(|c| {
        c.as_object_mut().unwrap().remove(claim);
    })
}

#[tokio::test]
async fn every_attack_is_refused_with_its_reason() {
    // "a": RSA key 0 pinned to RS256; "a-ps": RSA key 1 pinned to PS256.
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256"), rsa(1).jwk("a-ps", "PS256")]).await;
    let (list, port) = revocation();
    let v = OidcVerifier::new(config(&idp.url), port).unwrap();
    let a = rsa(0);

    // A valid token verifies (the first use loads the keys: one request).
    let valid = a.sign(Algorithm::RS256, "a", &claims());
    let principal = v.verify(&valid).await.unwrap();
    assert_eq!(idp.requests(), 1);

    // Revoked: through the verifier, which denylists the namespaced token id.
    let revoked = a.sign(Algorithm::RS256, "a", &claims());
    let p = v.verify(&revoked).await.unwrap();
    v.revoke(&p).await.unwrap();
    assert_eq!(list.denied_len(), 1);
    assert_eq!(
        p.revocation_key().unwrap(),
        revocation_key(ISSUER, p.jti.as_deref().unwrap())
    );
    assert!(p.revocation_key().unwrap().starts_with("oidc:"));
    // Revoked directly in the list, by key, as an IdP back-channel would.
    let revoked_by_key_claims = claims();
    let revoked_by_key = a.sign(Algorithm::RS256, "a", &revoked_by_key_claims);
    list.revoke_token(
        &revocation_key(ISSUER, revoked_by_key_claims["jti"].as_str().unwrap()),
        SystemTime::now() + Duration::from_secs(3600),
    )
    .await
    .unwrap();

    let public_n = URL_SAFE_NO_PAD
        .decode(rsa(0).jwk("a", "RS256")["n"].as_str().unwrap())
        .unwrap();
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".into());
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public_n)).unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "a"})),
        b64(&claims())
    );
    let mut tampered: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let mut escalated = claims();
    escalated["realm_access"]["roles"] = json!(["wallet-admin"]);
    tampered[1] = b64(&escalated);
    let tampered = tampered.join(".");
    let sign = |c: &Value| a.sign(Algorithm::RS256, "a", c);

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "unsupported_algorithm"),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
            "unsupported_algorithm",
        ),
        (
            "header RS384 for an RS256 key, really signed RS384",
            a.sign(Algorithm::RS384, "a", &claims()),
            "unsupported_algorithm",
        ),
        (
            "header PS256 for an RS256 key",
            a.sign(Algorithm::PS256, "a", &claims()),
            "unsupported_algorithm",
        ),
        (
            "header RS256 for a PS256 key",
            rsa(1).sign(Algorithm::RS256, "a-ps", &claims()),
            "unsupported_algorithm",
        ),
        (
            "unknown kid",
            rsa(2).sign(Algorithm::RS256, "unknown-1", &claims()),
            "unknown_key",
        ),
        (
            "second unknown kid",
            rsa(2).sign(Algorithm::RS256, "unknown-2", &claims()),
            "unknown_key",
        ),
        (
            "no kid",
            a.sign_with(Algorithm::RS256, &claims(), |h| h.kid = None),
            "unknown_key",
        ),
        (
            "expired",
            sign(&with(|c| {
                c["iat"] = json!(now() - 7200);
                c["exp"] = json!(now() - 3600);
            })),
            "expired",
        ),
        (
            "iat in the future",
            sign(&with(|c| {
                c["iat"] = json!(now() + 600);
                c["exp"] = json!(now() + 4200);
            })),
            "issued_in_future",
        ),
        (
            "nbf in the future",
            sign(&with(|c| c["nbf"] = json!(now() + 600))),
            "issued_in_future",
        ),
        (
            "wrong iss",
            sign(&with(|c| c["iss"] = json!("https://evil.example"))),
            "wrong_issuer",
        ),
        (
            "iss as an array holding the issuer",
            sign(&with(|c| c["iss"] = json!([ISSUER]))),
            "malformed",
        ),
        (
            "wrong aud",
            sign(&with(|c| c["aud"] = json!("another-api"))),
            "wrong_audience",
        ),
        (
            "aud array without ours",
            sign(&with(|c| c["aud"] = json!(["another-api", "account"]))),
            "wrong_audience",
        ),
        ("missing aud", sign(&without("aud")), "missing_claim"),
        ("missing sub", sign(&without("sub")), "missing_claim"),
        ("missing exp", sign(&without("exp")), "missing_claim"),
        ("missing iat", sign(&without("iat")), "missing_claim"),
        ("missing iss", sign(&without("iss")), "missing_claim"),
        (
            "missing jti when required",
            sign(&without("jti")),
            "missing_claim",
        ),
        (
            "exp as a string",
            sign(&with(|c| c["exp"] = json!((now() + 600).to_string()))),
            "malformed",
        ),
        (
            "iat as a string",
            sign(&with(|c| c["iat"] = json!(now().to_string()))),
            "malformed",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "signed by another key under a known kid",
            rsa(2).sign(Algorithm::RS256, "a", &claims()),
            "bad_signature",
        ),
        ("revoked jti (verifier)", revoked, "revoked"),
        ("revoked jti (list, by key)", revoked_by_key, "revoked"),
        (
            "typ of a logout token",
            a.sign_with(Algorithm::RS256, &claims(), |h| {
                h.kid = Some("a".into());
                h.typ = Some("logout+jwt".into());
            }),
            "wrong_type",
        ),
        (
            "a critical header extension",
            a.sign_with(Algorithm::RS256, &claims(), |h| {
                h.kid = Some("a".into());
                h.crit = Some(vec!["exp".into()]);
            }),
            "malformed",
        ),
        ("garbage", "not.a.token".to_owned(), "malformed"),
        (
            "oversized",
            sign(&with(|c| c["pad"] = json!("x".repeat(MAX_TOKEN_BYTES)))),
            "malformed",
        ),
    ];
    for (name, token, reason) in cases {
        let got = v.verify(&token).await.map(|_| ()).unwrap_err();
        assert_eq!(got.reason(), reason, "{name}: {got:?}");
    }
    // The first unknown kid refetched once; the second, within the interval, did not.
    assert_eq!(idp.requests(), 2, "one load and one refetch");
    let stats = v.jwks().stats();
    assert_eq!((stats.fetches, stats.unknown_kid_refetches), (2, 1));

    // Accepted variants: aud as an array holding ours, typ at+jwt, no typ at all.
    for (name, token) in [
        (
            "aud array",
            sign(&with(|c| c["aud"] = json!(["account", AUDIENCE]))),
        ),
        (
            "typ at+jwt",
            a.sign_with(Algorithm::RS256, &claims(), |h| {
                h.kid = Some("a".into());
                h.typ = Some("at+jwt".into());
            }),
        ),
        (
            "no typ",
            a.sign_with(Algorithm::RS256, &claims(), |h| {
                h.kid = Some("a".into());
                h.typ = None;
            }),
        ),
        (
            "PS256 under the PS256 key",
            rsa(1).sign(Algorithm::PS256, "a-ps", &claims()),
        ),
        (
            "iat within the leeway",
            sign(&with(|c| c["iat"] = json!(now() + 20))),
        ),
    ] {
        v.verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // The valid token still verifies; its principal carries the claims.
    assert_eq!(v.verify(&valid).await.unwrap(), principal);
}

#[tokio::test]
async fn the_principal_carries_mapped_roles_and_the_claims_and_logs_no_token() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let v = OidcVerifier::new(config(&idp.url), revocation().1).unwrap();
    let mut c = claims();
    // Duplicates and unmapped values: deduplicated, dropped.
    c["realm_access"]["roles"] = json!([
        "wallet-user",
        "offline_access",
        "wallet-auditor",
        "wallet-user",
        42
    ]);
    let token = rsa(0).sign(Algorithm::RS256, "a", &c);
    let p = v.verify(&token).await.unwrap();
    assert_eq!(p.issuer, ISSUER);
    assert_eq!(p.subject, "ext-user-1");
    assert_eq!(p.roles, vec!["admin".to_owned(), "user".to_owned()]);
    assert_eq!(p.amr, vec!["pwd".to_owned(), "otp".to_owned()]);
    assert_eq!(p.jti.as_deref(), c["jti"].as_str());
    assert_eq!(p.expires_at, c["exp"].as_u64().unwrap());
    assert_eq!(p.client_id.as_deref(), Some("coffer-spa"), "azp");
    let logged = format!("{p:?}");
    assert!(!logged.contains(&token) && !logged.contains(token.split('.').nth(2).unwrap()));

    // client_id wins over azp; no amr is an empty list; no mapped role is no role.
    let c = with(|c| {
        c["client_id"] = json!("backend");
        c.as_object_mut().unwrap().remove("amr");
        c["realm_access"]["roles"] = json!(["offline_access"]);
    });
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "a", &c))
        .await
        .unwrap();
    assert_eq!(p.client_id.as_deref(), Some("backend"));
    assert!(p.amr.is_empty() && p.roles.is_empty());

    // Roles from a space-separated scope.
    let scoped = IssuerConfig {
        roles_claim: "scope".into(),
        role_map: [
            ("coffer.read".to_owned(), vec!["user".to_owned()]),
            (
                "coffer.admin".to_owned(),
                vec!["admin".to_owned(), "user".to_owned()],
            ),
        ]
        .into_iter()
        .collect(),
        ..config(&idp.url)
    };
    let v = OidcVerifier::new(scoped, revocation().1).unwrap();
    let c = with(|c| c["scope"] = json!("openid  coffer.read profile coffer.admin"));
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "a", &c))
        .await
        .unwrap();
    assert_eq!(p.roles, vec!["admin".to_owned(), "user".to_owned()]);

    // A namespaced top-level claim whose name has dots is found whole.
    let namespaced = IssuerConfig {
        roles_claim: "https://coffer.example/roles".into(),
        ..config(&idp.url)
    };
    let v = OidcVerifier::new(namespaced, revocation().1).unwrap();
    let c = with(|c| c["https://coffer.example/roles"] = json!(["wallet-admin"]));
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "a", &c))
        .await
        .unwrap();
    assert_eq!(p.roles, vec!["admin".to_owned()]);
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify_under_their_pinned_algorithm() {
    let ec = ec_p256();
    let ed = ed25519();
    // The Ed25519 key has no alg: its curve names it.
    let idp = Idp::start(vec![ec.jwk("ec", "ES256"), ed.jwk_without_alg("ed")]).await;
    let v = OidcVerifier::new(config(&idp.url), revocation().1).unwrap();
    let p = v
        .verify(&ec.sign(Algorithm::ES256, "ec", &claims()))
        .await
        .unwrap();
    assert_eq!(p.roles, vec!["user".to_owned()]);
    v.verify(&ed.sign(Algorithm::EdDSA, "ed", &claims()))
        .await
        .unwrap();
    // An ES256 key verifies nothing under another header alg, and another P-256 key's
    // signature under its kid fails.
    let got = v
        .verify(&ed.sign(Algorithm::EdDSA, "ec", &claims()))
        .await
        .unwrap_err();
    assert_eq!(got.reason(), "unsupported_algorithm");
    let other_ec = ec_p256();
    let got = v
        .verify(&other_ec.sign(Algorithm::ES256, "ec", &claims()))
        .await
        .unwrap_err();
    assert_eq!(got.reason(), "bad_signature");
}

/// A revocation list that does not answer.
#[derive(Debug)]
struct DownList;

#[async_trait]
impl RevocationList for DownList {
    async fn revoke_token(&self, _: &str, _: SystemTime) -> Result<(), RevocationError> {
        Err(RevocationError::Unavailable("down".into()))
    }
    async fn revoke_user(&self, _: &str) -> Result<u64, RevocationError> {
        Err(RevocationError::Unavailable("down".into()))
    }
    async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
        Err(RevocationError::Unavailable("down".into()))
    }
    async fn epochs(&self, _: &str) -> Result<(u64, u64), RevocationError> {
        Err(RevocationError::Unavailable("down".into()))
    }
    async fn status(&self, _: &str, _: &str) -> Result<RevocationStatus, RevocationError> {
        Err(RevocationError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn revocation_fails_closed_and_jti_can_be_optional() {
    let idp = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let down = OidcVerifier::new(config(&idp.url), Arc::new(DownList)).unwrap();
    let token = rsa(0).sign(Algorithm::RS256, "a", &claims());
    assert_eq!(
        down.verify(&token).await.unwrap_err().reason(),
        "unavailable"
    );

    // require_jti = false: a token without one is accepted, and cannot be revoked.
    let lax = IssuerConfig {
        require_jti: false,
        ..config(&idp.url)
    };
    let v = OidcVerifier::new(lax, revocation().1).unwrap();
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "a", &without("jti")))
        .await
        .unwrap();
    assert_eq!(p.jti, None);
    assert_eq!(v.revoke(&p).await.unwrap_err().reason(), "missing_claim");
    // One with a jti is still checked.
    let c = claims();
    let p = v
        .verify(&rsa(0).sign(Algorithm::RS256, "a", &c))
        .await
        .unwrap();
    v.revoke(&p).await.unwrap();
    assert_eq!(
        v.verify(&rsa(0).sign(Algorithm::RS256, "a", &c))
            .await
            .unwrap_err()
            .reason(),
        "revoked"
    );
    // The same token id from another issuer is another token.
    assert_ne!(
        revocation_key(ISSUER, "id-1"),
        revocation_key("https://other.example", "id-1")
    );
}

#[tokio::test]
async fn several_issuers_dispatch_by_iss() {
    const OTHER: &str = "https://login.partner.example";
    let idp_a = Idp::start(vec![rsa(0).jwk("a", "RS256")]).await;
    let idp_b = Idp::start(vec![ec_p256_shared().jwk("b", "ES256")]).await;
    let config_b = IssuerConfig {
        audience: "api://coffer".into(),
        roles_claim: "roles".into(),
        role_map: [("Coffer.Admin".to_owned(), vec!["admin".to_owned()])]
            .into_iter()
            .collect(),
        ..IssuerConfig::new(OTHER, "", JwksSource::Url(idp_b.url.clone()), "roles")
    };
    let (_, list) = revocation();
    let issuers = OidcIssuers::from_configs([config(&idp_a.url), config_b.clone()], &list).unwrap();
    assert_eq!(issuers.issuers(), vec![ISSUER, OTHER]);

    let token_a = rsa(0).sign(Algorithm::RS256, "a", &claims());
    let claims_b = with(|c| {
        c["iss"] = json!(OTHER);
        c["aud"] = json!("api://coffer");
        c["roles"] = json!(["Coffer.Admin"]);
    });
    let token_b = ec_p256_shared().sign(Algorithm::ES256, "b", &claims_b);
    assert_eq!(unverified_issuer(&token_b).as_deref(), Some(OTHER));

    let a = issuers.verify(&token_a).await.unwrap();
    assert_eq!(
        (a.issuer.as_str(), a.roles.as_slice()),
        (ISSUER, &["user".to_owned()][..])
    );
    let b = issuers.verify(&token_b).await.unwrap();
    assert_eq!(
        (b.issuer.as_str(), b.roles.as_slice()),
        (OTHER, &["admin".to_owned()][..])
    );
    assert_eq!((idp_a.requests(), idp_b.requests()), (1, 1));

    // A token of B's claims signed with A's key under A's kid: B does not know kid "a", and
    // A's keys are never consulted for it.
    let crossed = rsa(0).sign(Algorithm::RS256, "a", &claims_b);
    assert_eq!(
        issuers.verify(&crossed).await.unwrap_err().reason(),
        "unknown_key"
    );
    assert_eq!(idp_a.requests(), 1);
    // An issuer not configured; no iss at all.
    let stranger = rsa(0).sign(
        Algorithm::RS256,
        "a",
        &with(|c| c["iss"] = json!("https://stranger.example")),
    );
    assert_eq!(
        issuers.verify(&stranger).await.unwrap_err().reason(),
        "wrong_issuer"
    );
    assert_eq!(
        issuers
            .verify(&rsa(0).sign(Algorithm::RS256, "a", &without("iss")))
            .await
            .unwrap_err()
            .reason(),
        "missing_claim"
    );
    assert_eq!(
        issuers.verify("garbage").await.unwrap_err().reason(),
        "malformed"
    );
    // Revocation goes to the principal's issuer.
    issuers.revoke(&b).await.unwrap();
    assert_eq!(
        issuers.verify(&token_b).await.unwrap_err().reason(),
        "revoked"
    );
    issuers.verify(&token_a).await.unwrap();

    let twice = OidcIssuers::from_configs([config_b.clone(), config_b], &list);
    assert_eq!(
        twice.unwrap_err(),
        IssuerConfigError::DuplicateIssuer(OTHER.to_owned())
    );
}

/// One P-256 key for the dispatch test (signing and JWK must agree).
fn ec_p256_shared() -> &'static common::TestKey {
    static KEY: std::sync::OnceLock<common::TestKey> = std::sync::OnceLock::new();
    KEY.get_or_init(ec_p256)
}

#[test]
fn configuration_is_validated() {
    let (_, list) = revocation();
    // Plain http off localhost is refused when the verifier is built.
    let err = OidcVerifier::new(config("http://idp.example/jwks"), list.clone()).unwrap_err();
    assert!(
        matches!(err, IssuerConfigError::InsecureJwksUrl { ref url, .. } if url == "http://idp.example/jwks"),
        "{err:?}"
    );
    OidcVerifier::new(config("https://idp.example/jwks"), list.clone()).unwrap();
    OidcVerifier::new(config("http://localhost:8080/jwks"), list.clone()).unwrap();
    OidcVerifier::new(config("http://[::1]:8080/jwks"), list.clone()).unwrap();

    let base = || config("https://idp.example/jwks");
    let refused = [
        IssuerConfig {
            issuer: " ".into(),
            ..base()
        },
        IssuerConfig {
            audience: String::new(),
            ..base()
        },
        IssuerConfig {
            roles_claim: "realm_access..roles".into(),
            ..base()
        },
        IssuerConfig {
            jwks: JwksSource::Url("ftp://idp.example/jwks".into()),
            ..base()
        },
        IssuerConfig {
            role_map: [("x".to_owned(), vec![])].into_iter().collect(),
            ..base()
        },
        IssuerConfig {
            leeway: Duration::from_secs(3600),
            ..base()
        },
        IssuerConfig {
            refetch_min_interval: Duration::ZERO,
            ..base()
        },
        IssuerConfig {
            cache_ttl: Duration::from_secs(60),
            ..base()
        },
    ];
    for config in refused {
        assert!(
            OidcVerifier::new(config.clone(), list.clone()).is_err(),
            "{config:?}"
        );
    }

    // Mapped roles are checked against the RBAC configuration.
    let rbac = Rbac::default();
    base().check_roles(&rbac).unwrap();
    let typo = IssuerConfig {
        role_map: [("x".to_owned(), vec!["admni".to_owned()])]
            .into_iter()
            .collect(),
        ..base()
    };
    assert_eq!(
        typo.check_roles(&rbac).unwrap_err(),
        IssuerConfigError::UnknownRole {
            issuer: ISSUER.to_owned(),
            role: "admni".to_owned()
        }
    );
}

#[test]
fn configuration_deserialises_with_defaults_and_units() {
    let config: IssuerConfig = serde_json::from_value(json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": { "url": "https://idp.example/jwks" },
        "roles_claim": "realm_access.roles",
        "role_map": { "wallet-user": ["user"] },
        "refetch_min_interval": "2m",
        "cache_ttl": 600,
    }))
    .unwrap();
    assert_eq!(
        config.jwks,
        JwksSource::Url("https://idp.example/jwks".into())
    );
    assert_eq!(config.leeway, Duration::from_secs(30));
    assert_eq!(config.refetch_min_interval, Duration::from_secs(120));
    assert_eq!(config.cache_ttl, Duration::from_secs(600));
    assert!(config.require_jti);
    config.validate().unwrap();

    let file: IssuerConfig = serde_json::from_value(json!({
        "issuer": ISSUER, "audience": AUDIENCE, "jwks": { "file": "/etc/coffer/jwks.json" },
        "roles_claim": "scope", "require_jti": false, "leeway": "10s",
    }))
    .unwrap();
    assert_eq!(file.jwks, JwksSource::File("/etc/coffer/jwks.json".into()));
    assert_eq!(
        (
            file.leeway,
            file.refetch_min_interval,
            file.cache_ttl,
            file.require_jti
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(3600),
            false
        )
    );
    // A misspelt setting or a bad duration is an error, not a default.
    for bad in [
        json!({ "issuer": ISSUER, "audience": AUDIENCE, "jwks": { "url": "https://x" },
                "roles_claim": "scope", "require_jit": false }),
        json!({ "issuer": ISSUER, "audience": AUDIENCE, "jwks": { "url": "https://x" },
                "roles_claim": "scope", "leeway": "30 seconds" }),
    ] {
        assert!(serde_json::from_value::<IssuerConfig>(bad).is_err());
    }
}

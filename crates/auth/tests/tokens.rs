//! Access tokens: a round trip, rotation, and the table of attacks, each refused with its own
//! reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::revocation::unix_secs;
use coffer_auth::{
    Grant, InMemoryRevocationList, RevocationList, SigningKey, TokenConfig, TokenKeys, Tokens,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// RSA key generation takes a while: the tests share three keys.
fn keys() -> &'static [Vec<u8>; 3] {
    static KEYS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [(); 3].map(|()| SigningKey::generate().unwrap().expose_pkcs1_der().to_vec())
    })
}

fn key(i: usize) -> SigningKey {
    SigningKey::from_pkcs1_der(&keys()[i]).unwrap()
}

struct Fixture {
    tokens: Tokens,
    revocation: Arc<InMemoryRevocationList>,
}

fn fixture() -> Fixture {
    let config = TokenConfig::default();
    let revocation = Arc::new(InMemoryRevocationList::new());
    let ring = TokenKeys::new(key(0), &config);
    Fixture {
        tokens: Tokens::new(config, ring, revocation.clone()),
        revocation,
    }
}

fn roles() -> Vec<String> {
    vec!["user".to_owned()]
}

static PWD: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec!["pwd".to_owned()]);

fn grant<'a>(roles: &'a [String]) -> Grant<'a> {
    Grant {
        subject: "user-1",
        client_id: "web",
        roles,
        amr: &PWD,
        session: None,
        epochs: None,
    }
}

/// Claims as the service would issue them, as JSON, to be altered.
fn claims(now: u64) -> Value {
    json!({
        "iss": "https://coffer.local", "sub": "user-1", "aud": "coffer-api",
        "exp": now + 600, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": "web", "roles": ["user"], "amr": ["pwd"], "uep": 0, "gep": 0,
    })
}

/// Signs `claims` with key `i` under a header of the caller's choosing.
fn forge(i: usize, claims: &Value, edit: impl FnOnce(&mut Header)) -> String {
    let k = key(i);
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(k.kid().to_owned());
    edit(&mut header);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_der(k.expose_pkcs1_der()),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn issued_tokens_verify_and_carry_their_claims() {
    let f = fixture();
    let roles = roles();
    let (token, issued) = f.tokens.issue(&grant(&roles)).await.unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(key(0).kid()));
    let verified = f.tokens.verify(&token).await.unwrap();
    assert_eq!(verified.claims, issued);
    assert_eq!(issued.exp - issued.iat, 3600);
    assert_eq!(
        (issued.sub.as_str(), issued.amr.as_slice()),
        ("user-1", &["pwd".to_owned()][..])
    );
    assert!(format!("{:?}", key(0)).contains("REDACTED"));
}

#[tokio::test]
async fn rotation_keeps_tokens_in_flight_valid_and_publishes_both_keys() {
    let f = fixture();
    let roles = roles();
    let (old, _) = f.tokens.issue(&grant(&roles)).await.unwrap();
    f.tokens.rotate(key(1));
    let (new, _) = f.tokens.issue(&grant(&roles)).await.unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
        Some(key(1).kid()),
        "the new key signs"
    );
    f.tokens.verify(&old).await.unwrap();
    f.tokens.verify(&new).await.unwrap();
    // A compromised key goes at once; the current one cannot.
    let fresh = fixture();
    let (before, _) = fresh.tokens.issue(&grant(&roles)).await.unwrap();
    fresh.tokens.rotate(key(1));
    assert!(
        !fresh.tokens.drop_key(key(1).kid()),
        "the signing key stays"
    );
    assert!(fresh.tokens.drop_key(key(0).kid()));
    assert_eq!(
        fresh.tokens.verify(&before).await.unwrap_err().reason(),
        "unknown_key"
    );
    let jwks = f.tokens.jwks();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![key(0).kid(), key(1).kid()]);
    for k in jwks["keys"].as_array().unwrap() {
        assert!(
            k.get("d").is_none() && k.get("p").is_none(),
            "no private parts in the JWKS"
        );
    }
}

#[tokio::test]
async fn every_attack_is_refused_with_its_reason() {
    let f = fixture();
    let roles = roles();
    let now = unix_secs(SystemTime::now());
    let (valid, issued) = f.tokens.issue(&grant(&roles)).await.unwrap();
    let public_n = URL_SAFE_NO_PAD
        .decode(key(0).jwk()["n"].as_str().unwrap())
        .unwrap();

    // A key past its window: a ring that retired key 2 long ago.
    let config = TokenConfig {
        access_ttl: Duration::from_secs(60),
        leeway: Duration::from_secs(5),
        ..TokenConfig::default()
    };
    let mut ring = TokenKeys::new(key(2), &config);
    ring.rotate(key(0), SystemTime::now() - Duration::from_secs(120));
    let short = Tokens::new(config, ring, f.revocation.clone());
    let retired = forge(2, &claims(now), |_| {});

    let mut tampered: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let mut escalated = serde_json::to_value(&issued).unwrap();
    escalated["roles"] = json!(["admin"]);
    tampered[1] = b64(&escalated);
    let tampered = tampered.join(".");

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": key(0).kid()})),
        b64(&claims(now))
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key(0).kid().to_owned());
        jsonwebtoken::encode(&header, &claims(now), &EncodingKey::from_secret(&public_n)).unwrap()
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(now);
        edit(&mut c);
        forge(0, &c, |_| {})
    };

    let mut cases: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "unsupported_algorithm"),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
            "unsupported_algorithm",
        ),
        ("unknown kid", forge(1, &claims(now), |_| {}), "unknown_key"),
        (
            "no kid",
            forge(0, &claims(now), |h| h.kid = None),
            "unknown_key",
        ),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
            "expired",
        ),
        (
            "iat in the future",
            with(&|c| {
                c["iat"] = json!(now + 600);
                c["exp"] = json!(now + 4200);
            }),
            "issued_in_future",
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example")),
            "wrong_issuer",
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("another-api")),
            "wrong_audience",
        ),
        (
            "missing aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "missing_claim",
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "missing_claim",
        ),
        (
            "exp as a string",
            with(&|c| c["exp"] = json!((now + 600).to_string())),
            "malformed",
        ),
        (
            "wrong typ",
            forge(0, &claims(now), |h| h.typ = Some("JWT".into())),
            "wrong_type",
        ),
        (
            "no typ",
            forge(0, &claims(now), |h| h.typ = None),
            "wrong_type",
        ),
        ("tampered payload", tampered, "bad_signature"),
        ("garbage", "not.a.token".to_owned(), "malformed"),
    ];
    for (name, token, reason) in cases.drain(..) {
        let got = f.tokens.verify(&token).await.map(|_| ()).unwrap_err();
        assert_eq!(got.reason(), reason, "{name}: {got:?}");
    }
    let got = short.verify(&retired).await.unwrap_err();
    assert_eq!(got.reason(), "key_retired", "retired kid: {got:?}");
    assert!(
        !short.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == key(2).kid()),
        "a key past its window leaves the JWKS"
    );

    // Revocation: the token id, then the user's epoch, then everyone's.
    f.tokens.verify(&valid).await.unwrap();
    f.tokens.revoke(&issued).await.unwrap();
    assert_eq!(
        f.tokens.verify(&valid).await.unwrap_err().reason(),
        "revoked"
    );
    let (second, _) = f.tokens.issue(&grant(&roles)).await.unwrap();
    f.tokens.verify(&second).await.unwrap();
    f.revocation.revoke_user("user-1").await.unwrap();
    assert_eq!(
        f.tokens.verify(&second).await.unwrap_err().reason(),
        "user_revoked"
    );
    let (third, _) = f.tokens.issue(&grant(&roles)).await.unwrap();
    f.tokens.verify(&third).await.unwrap();
    f.revocation.revoke_everyone().await.unwrap();
    assert_eq!(
        f.tokens.verify(&third).await.unwrap_err().reason(),
        "everyone_revoked"
    );
    let (fourth, _) = f.tokens.issue(&grant(&roles)).await.unwrap();
    f.tokens.verify(&fourth).await.unwrap();

    // A revocation list that lost its counters (an unpersisted store restarted) sees epochs
    // below the tokens': those tokens are refused, not trusted.
    let forgetful = Tokens::new(
        TokenConfig::default(),
        TokenKeys::new(key(0), &TokenConfig::default()),
        Arc::new(InMemoryRevocationList::new()),
    );
    assert_eq!(
        forgetful.verify(&fourth).await.unwrap_err().reason(),
        "user_revoked"
    );
}

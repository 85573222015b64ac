//! Shared by the tests: an identity provider's JWKS endpoint on a local port, keys of each
//! kind, and token signing.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::revocation::unix_secs;
use coffer_auth::{InMemoryRevocationList, RevocationList, SigningKey};
use coffer_auth_oidc::{IssuerConfig, JwksSource};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.example/realms/coffer";
pub const AUDIENCE: &str = "coffer-api";

#[derive(Default)]
struct IdpState {
    jwks: Mutex<Value>,
    status: AtomicU16,
    requests: AtomicUsize,
    delay_ms: AtomicU64,
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests and can be made slow or failing.
pub struct Idp {
    pub url: String,
    state: Arc<IdpState>,
}

async fn serve_jwks(State(s): State<Arc<IdpState>>) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
    let body = serde_json::to_vec(&*s.jwks.lock().unwrap()).unwrap();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Idp {
    /// Serves `{"keys": keys}` at `/jwks`.
    pub async fn start(keys: Vec<Value>) -> Self {
        let state = Arc::new(IdpState {
            jwks: Mutex::new(json!({ "keys": keys })),
            status: AtomicU16::new(200),
            ..IdpState::default()
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://127.0.0.1:{port}/jwks"),
            state,
        }
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Publishes another key set (rotation).
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    /// Serves any document.
    pub fn set_document(&self, doc: Value) {
        *self.state.jwks.lock().unwrap() = doc;
    }

    /// Answers with this status (200 to recover).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Answers after this delay.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

/// A signing key and its public JWK members (without kid, alg, use).
pub struct TestKey {
    encoding: EncodingKey,
    public: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RSA key generation takes a while: the tests share three 2048-bit keys.
fn rsa_der() -> &'static [Vec<u8>; 3] {
    static KEYS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [(); 3].map(|()| SigningKey::generate().unwrap().expose_pkcs1_der().to_vec())
    })
}

/// RSA key `i` (0 to 2).
pub fn rsa(i: usize) -> TestKey {
    let key = SigningKey::from_pkcs1_der(&rsa_der()[i]).unwrap();
    let jwk = key.jwk();
    TestKey {
        encoding: EncodingKey::from_rsa_der(key.expose_pkcs1_der()),
        public: json!({ "kty": "RSA", "n": jwk["n"], "e": jwk["e"] }),
    }
}

/// A fresh P-256 key.
pub fn ec_p256() -> TestKey {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pkcs8 = pair.to_pkcs8v1().unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 65, "uncompressed point");
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        public: json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }),
    }
}

/// A fresh Ed25519 key.
pub fn ed25519() -> TestKey {
    let pair = Ed25519KeyPair::generate().unwrap();
    let pkcs8 = pair.to_pkcs8().unwrap();
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public: json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) }),
    }
}

impl TestKey {
    /// The public JWK with this kid and alg, `use: sig`.
    pub fn jwk(&self, kid: &str, alg: &str) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg);
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public JWK with this kid and no alg.
    pub fn jwk_without_alg(&self, kid: &str) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// A token under `alg` naming `kid`.
    pub fn sign(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        self.sign_with(alg, claims, |h| h.kid = Some(kid.to_owned()))
    }

    /// A token under `alg` with a header of the caller's choosing.
    pub fn sign_with(
        &self,
        alg: Algorithm,
        claims: &Value,
        edit: impl FnOnce(&mut Header),
    ) -> String {
        let mut header = Header::new(alg);
        edit(&mut header);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> u64 {
    unix_secs(SystemTime::now())
}

/// A fresh token id.
pub fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Claims as the identity provider would issue them, to be altered.
pub fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": "ext-user-1", "aud": AUDIENCE,
        "exp": now + 600, "iat": now, "jti": jti(), "azp": "coffer-spa",
        "realm_access": { "roles": ["wallet-user", "offline_access"] },
        "scope": "openid coffer.read", "amr": ["pwd", "otp"],
    })
}

/// The test issuer's configuration, fetching from `url`, with roles from
/// `realm_access.roles`.
pub fn config(url: &str) -> IssuerConfig {
    IssuerConfig {
        role_map: [
            ("wallet-user", vec!["user"]),
            ("wallet-admin", vec!["admin"]),
            ("wallet-auditor", vec!["admin", "user"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect(),
        ..IssuerConfig::new(
            ISSUER,
            AUDIENCE,
            JwksSource::Url(url.to_owned()),
            "realm_access.roles",
        )
    }
}

/// An in-memory revocation list, both as itself and as the port.
pub fn revocation() -> (Arc<InMemoryRevocationList>, Arc<dyn RevocationList>) {
    let list = Arc::new(InMemoryRevocationList::new());
    (list.clone(), list)
}

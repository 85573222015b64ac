//! One authenticated Vault client: logs in, renews its token before expiry, logs in again when
//! renewal fails or the token was revoked, and turns driver errors into [`CallError`]s.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::RwLock;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// How Coffer authenticates to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token given to the process (renewed when renewable; cannot be re-obtained).
    Token(SecretString),
    /// The userpass method: a login per process start and whenever the token
    /// expires or is revoked.
    Userpass {
        /// The auth mount, usually `userpass`.
        mount: String,
        /// The user.
        username: String,
        /// Its password.
        password: SecretString,
    },
    /// The AppRole method, for machines.
    AppRole {
        /// The auth mount, usually `approle`.
        mount: String,
        /// The role id (not secret).
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(***)"),
            Self::Userpass {
                mount, username, ..
            } => f
                .debug_struct("Userpass")
                .field("mount", mount)
                .field("username", username)
                .finish_non_exhaustive(),
            Self::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .finish_non_exhaustive(),
        }
    }
}

/// Where Vault is and how to talk to it.
#[derive(Debug, Clone)]
pub struct VaultConnection {
    /// `http(s)://host:port`.
    pub address: String,
    /// How to log in.
    pub auth: VaultAuth,
    /// Vault Enterprise / OpenBao namespace, if any.
    pub namespace: Option<String>,
    /// A PEM file of CA certificates to trust for an `https` address.
    pub ca_file: Option<PathBuf>,
    /// Every request's timeout (connect and answer).
    pub timeout: Duration,
}

impl VaultConnection {
    /// A connection with the default 5 s timeout and no namespace or CA file.
    #[must_use]
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            auth,
            namespace: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong with one call, before the provider names it in the key port's terms.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Vault answered with an error status. Its messages never carry secrets.
    Status { code: u16, errors: Vec<String> },
    /// No answer: connection refused, timeout, TLS failure.
    Unreachable(String),
    /// The configuration cannot work (bad address, unreadable CA file).
    Config(String),
    /// Anything else (an answer that does not parse). Never the answer's content.
    Other(String),
}

impl CallError {
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Status { code, errors } if errors.is_empty() => format!("HTTP {code}"),
            Self::Status { code, errors } => format!("HTTP {code}: {}", errors.join("; ")),
            Self::Unreachable(m) | Self::Config(m) | Self::Other(m) => m.clone(),
        }
    }

    fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::Status {
                code: 401 | 403,
                ..
            }
        )
    }
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        use rustify::errors::ClientError as Http;
        match e {
            ClientError::APIError { code, errors } => Self::Status { code, errors },
            ClientError::RestClientError { source } => match source {
                Http::ServerResponseError { code, content } => Self::Status {
                    code,
                    errors: content
                        .and_then(|c| serde_json::from_str::<ErrorBody>(&c).ok())
                        .map(|b| b.errors)
                        .unwrap_or_default(),
                },
                Http::RequestError { source, .. } | Http::ResponseError { source } => {
                    Self::Unreachable(format!("no answer: {}", chain(source.as_ref())))
                }
                // Parse errors carry the response body, which may hold key material: keep
                // only what kind of error it was.
                Http::ResponseParseError { .. } | Http::ResponseConversionError { .. } => {
                    Self::Other("Vault's answer does not parse".into())
                }
                other => Self::Other(format!("request failed: {other}")),
            },
            ClientError::FileReadError { path, .. } | ClientError::FileNotFoundError { path } => {
                Self::Config(format!("cannot read {path}"))
            }
            ClientError::ParseCertificateError { path, .. } => {
                Self::Config(format!("{path} holds no PEM certificate"))
            }
            ClientError::RestClientBuildError { source } => {
                Self::Config(format!("cannot build the HTTP client: {source}"))
            }
            ClientError::JsonParseError { .. } => {
                Self::Other("Vault's answer does not have the expected shape".into())
            }
            other => Self::Other(other.to_string()),
        }
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// An error and its causes on one line (reqwest's own message is only "error sending request").
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// When the current token should be renewed, and whether it can be.
#[derive(Debug, Clone, Copy)]
struct Lease {
    renew_at: Option<Instant>,
    renewable: bool,
    /// Bumped at every login, so concurrent callers that saw the same revoked token log in once.
    generation: u64,
}

/// An authenticated client. See the [module documentation](self).
pub(crate) struct Session {
    conn: VaultConnection,
    client: RwLock<VaultClient>,
    lease: Mutex<Lease>,
    login: tokio::sync::Mutex<()>,
}

coffer_macros::debug_non_exhaustive!(self => Session {
    address: self.conn.address, auth: self.conn.auth,
});

/// Runs `$body` (an expression awaiting a vaultrs call on `$c: &VaultClient`) with a fresh token,
/// logging in again and retrying once when Vault says the token is no longer good.
macro_rules! vault_call {
    ($session:expr, |$c:ident| $body:expr) => {{
        let session: &$crate::session::Session = $session;
        async {
            session.renew_if_due().await?;
            let generation = session.generation();
            let first = {
                let guard = session.client().await;
                let $c = &*guard;
                $body.await.map_err($crate::session::CallError::from)
            };
            match first {
                Err(e) if session.should_login_again(&e) => {
                    if session.token_is_dead(generation).await {
                        session.login_again(generation).await?;
                        let guard = session.client().await;
                        let $c = &*guard;
                        $body.await.map_err($crate::session::CallError::from)
                    } else {
                        Err(e) // the policy refuses it: a new token would not help
                    }
                }
                other => other,
            }
        }
        .await
    }};
}
pub(crate) use vault_call;

impl Session {
    /// Builds the client and logs in (or looks the given token up), so bad credentials and an
    /// unreachable server are reported at start; then renews the token in the background, so an
    /// idle process keeps a valid one.
    pub(crate) async fn connect(conn: VaultConnection) -> Result<Arc<Self>, CallError> {
        let client = build_client(&conn, "")?;
        let session = Self {
            conn,
            client: RwLock::new(client),
            lease: Mutex::new(Lease {
                renew_at: None,
                renewable: false,
                generation: 0,
            }),
            login: tokio::sync::Mutex::new(()),
        };
        session.login_again(0).await?;
        let session = Arc::new(session);
        tokio::spawn(renew_in_background(Arc::downgrade(&session)));
        Ok(session)
    }

    /// When the token is next due for renewal, if it ever is.
    fn renew_at(&self) -> Option<Instant> {
        self.lease_now().renew_at
    }

    /// After a 401/403 under `seen_generation`: whether the token itself is gone (revoked,
    /// expired), rather than the policy refusing the call. Somebody else's login since counts
    /// as gone (retry with the new token).
    pub(crate) async fn token_is_dead(&self, seen_generation: u64) -> bool {
        if self.generation() != seen_generation {
            return true;
        }
        match self.client.read().await.lookup().await {
            Ok(_) => false,
            Err(e) => CallError::from(e).is_auth_failure(),
        }
    }

    pub(crate) fn connection(&self) -> &VaultConnection {
        &self.conn
    }

    pub(crate) async fn client(&self) -> tokio::sync::RwLockReadGuard<'_, VaultClient> {
        self.client.read().await
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lease_now().generation
    }

    fn lease_now(&self) -> Lease {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_lease(&self, ttl_secs: u64, renewable: bool, new_login: bool) {
        let mut lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
        // Renew at two thirds of the lifetime; a token without expiry is never renewed.
        lease.renew_at = (ttl_secs > 0)
            .then(|| Instant::now() + Duration::from_secs(ttl_secs.saturating_mul(2) / 3));
        lease.renewable = renewable;
        if new_login {
            lease.generation += 1;
        }
    }

    pub(crate) fn should_login_again(&self, e: &CallError) -> bool {
        e.is_auth_failure() && !matches!(self.conn.auth, VaultAuth::Token(_))
    }

    /// Renews the token when two thirds of its lifetime have passed; logs in again when it
    /// cannot be renewed.
    pub(crate) async fn renew_if_due(&self) -> Result<(), CallError> {
        let due = |lease: Lease| lease.renew_at.is_some_and(|at| Instant::now() >= at);
        let lease = self.lease_now();
        if !due(lease) {
            return Ok(());
        }
        let _one_at_a_time = self.login.lock().await;
        let now = self.lease_now();
        if now.generation != lease.generation || !due(now) {
            return Ok(()); // somebody else renewed or logged in meanwhile
        }
        if lease.renewable {
            let renewed = self.client.read().await.renew(None).await;
            match renewed {
                // Renewed (near the max TTL, for less each time; when that runs out the
                // renewal fails and the method logs in again).
                Ok(auth) if auth.lease_duration > 0 => {
                    tracing::debug!(ttl = auth.lease_duration, "renewed the Vault token");
                    self.set_lease(auth.lease_duration, auth.renewable, false);
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => {
                    let e = CallError::from(e);
                    tracing::warn!(error = %e.message(), "Vault token renewal failed");
                    if matches!(self.conn.auth, VaultAuth::Token(_)) {
                        return Err(e);
                    }
                }
            }
        }
        self.login_locked().await
    }

    /// Logs in again unless somebody already did since `seen_generation`.
    pub(crate) async fn login_again(&self, seen_generation: u64) -> Result<(), CallError> {
        let _one_at_a_time = self.login.lock().await;
        if self.generation() != seen_generation {
            return Ok(());
        }
        self.login_locked().await
    }

    async fn login_locked(&self) -> Result<(), CallError> {
        match &self.conn.auth {
            VaultAuth::Token(token) => {
                let mut client = self.client.write().await;
                client.set_token(token.expose_secret());
                let me = vaultrs::token::lookup_self(&*client).await?;
                self.set_lease(me.ttl, me.renewable.unwrap_or(false), true);
            }
            VaultAuth::Userpass {
                mount,
                username,
                password,
            } => {
                // Log in with a token-less client: a stale token must not ride along.
                let anonymous = build_client(&self.conn, "")?;
                let auth = vaultrs::auth::userpass::login(
                    &anonymous,
                    mount,
                    username,
                    password.expose_secret(),
                )
                .await?;
                self.client.write().await.set_token(&auth.client_token);
                self.set_lease(auth.lease_duration, auth.renewable, true);
                tracing::info!(method = "userpass", user = %username, "logged in to Vault");
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let anonymous = build_client(&self.conn, "")?;
                let auth = vaultrs::auth::approle::login(
                    &anonymous,
                    mount,
                    role_id,
                    secret_id.expose_secret(),
                )
                .await?;
                self.client.write().await.set_token(&auth.client_token);
                self.set_lease(auth.lease_duration, auth.renewable, true);
                tracing::info!(method = "approle", "logged in to Vault");
            }
        }
        Ok(())
    }

    /// A raw JSON request for endpoints vaultrs does not cover (batch rewrap). Answers the
    /// status and the parsed body; a body that is not JSON is `Null`.
    pub(crate) async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), CallError> {
        self.renew_if_due().await?;
        let generation = self.generation();
        let first = self.raw_once(method.clone(), path, body).await?;
        if matches!(first.0, 401 | 403)
            && self.should_login_again(&CallError::Status {
                code: first.0,
                errors: Vec::new(),
            })
            && self.token_is_dead(generation).await
        {
            self.login_again(generation).await?;
            return self.raw_once(method, path, body).await;
        }
        Ok(first)
    }

    async fn raw_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), CallError> {
        let client = self.client.read().await;
        let url = format!(
            "{}/v1/{}",
            client.settings.address.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Other(e.to_string()))?;
        let mut request = client
            .http
            .http
            .request(method, url)
            .header("X-Vault-Token", client.settings.token.as_str())
            .header("Content-Type", "application/json")
            .body(bytes);
        if let Some(ns) = &client.settings.namespace {
            request = request.header("X-Vault-Namespace", ns.as_str());
        }
        drop(client);
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("no answer: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(format!("answer cut off: {}", chain(&e))))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }
}

/// Renews the session's token when due until the session is dropped.
async fn renew_in_background(session: Weak<Session>) {
    loop {
        let wait = {
            let Some(s) = session.upgrade() else { return };
            s.renew_at().map_or(Duration::from_secs(60), |at| {
                at.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(200), Duration::from_secs(300))
            })
        };
        tokio::time::sleep(wait).await;
        let Some(s) = session.upgrade() else { return };
        if let Err(e) = s.renew_if_due().await {
            tracing::warn!(error = %e.message(), "Vault token renewal failed; retrying");
        }
    }
}

/// A vaultrs client for `conn` carrying `token`. The address is checked here: vaultrs' own
/// setter panics on a bad URL.
fn build_client(conn: &VaultConnection, token: &str) -> Result<VaultClient, CallError> {
    let url = url::Url::parse(&conn.address).map_err(|e| {
        CallError::Config(format!(
            "the Vault address {:?} is not a URL ({e}); use http(s)://host:port",
            conn.address
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallError::Config(format!(
            "the Vault address {:?} must start with http:// or https://",
            conn.address
        )));
    }
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(url.as_str())
        .token(token)
        .timeout(Some(conn.timeout))
        // Set explicitly so VAULT_SKIP_VERIFY / VAULT_CACERT in the environment change nothing.
        .verify(true)
        .ca_certs(
            conn.ca_file
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        )
        .namespace(conn.namespace.clone());
    let settings = settings
        .build()
        .map_err(|e| CallError::Config(format!("bad Vault settings: {e}")))?;
    Ok(VaultClient::new(settings)?)
}

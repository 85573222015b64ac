//! The revocation list on Redis, shared by every API replica.
//!
//! - A revoked token id is a key that Redis expires at the moment the token would have expired
//!   anyway (`SET … EXAT`), so the denylist never outgrows one token lifetime of revocations.
//! - The per-user and global epochs are counters (`INCR`), atomic across replicas.
//! - A verification reads the token's key and both epochs in one `MGET`: one round trip. All
//!   keys of a list share one hash tag (`{prefix}`), so this also works on Redis Cluster.
//!
//! Connections go through redis's `ConnectionManager` with connect and response timeouts; any
//! Redis failure is [`RevocationError::Unavailable`], and the token check fails closed. A
//! `rediss://` URL connects over TLS (rustls), the server's certificate checked against the
//! configured authority ([`RedisRevocationConfig::tls_ca`]) or the system's roots, and its name; to a
//! Redis that asks for one, the client shows its certificate ([`RedisRevocationConfig::tls_client`]).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use coffer_auth::revocation::unix_secs;
use coffer_auth::{RevocationError, RevocationList, RevocationStatus};
use coffer_crypto::SecretBytes;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisRevocationConfig {
    /// Connecting.
    pub connect_timeout: Duration,
    /// Each command.
    pub response_timeout: Duration,
    /// For a `rediss://` URL: the certificate authority (PEM) the server's certificate must
    /// chain to; `None`, the system's roots.
    pub tls_ca: Option<Vec<u8>>,
    /// For a `rediss://` URL to a Redis that asks clients for a certificate
    /// (`tls-auth-clients yes`): this client's certificate chain and its private key, PEM.
    pub tls_client: Option<(Vec<u8>, SecretBytes)>,
}

impl Default for RedisRevocationConfig {
    /// Half a second to connect, a quarter to answer; the system's roots for TLS.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(250),
            tls_ca: None,
            tls_client: None,
        }
    }
}
/// The client for `url`: over TLS for `rediss://`, trusting `ca` (PEM) when given, else the
/// system's roots, and showing `identity` (certificate and key, PEM) when given.
fn client(
    url: &str,
    ca: Option<&[u8]>,
    identity: Option<&(Vec<u8>, SecretBytes)>,
) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        // rustls asks for a process-wide crypto provider: the first TLS client installs
        // aws-lc-rs, the one the rest of Coffer's TLS uses (a no-op when one is installed).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: identity.map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.expose_secret().to_vec(),
                }),
                root_cert: ca.map(<[u8]>::to_vec),
            },
        )
    } else {
        redis::Client::open(url)
    }
}

/// See the [crate documentation](crate).
#[derive(Clone)]
pub struct RedisRevocationList {
    conn: ConnectionManager,
    prefix: String,
}

// The URL may carry a password: not shown.
coffer_macros::debug_non_exhaustive!(self => RedisRevocationList { prefix });

fn unavailable(e: &redis::RedisError) -> RevocationError {
    RevocationError::Unavailable(format!("redis: {:?}", e.kind()).into())
}

fn check(what: &'static str, s: &str) -> Result<(), RevocationError> {
    if s.is_empty() || s.len() > 256 {
        Err(RevocationError::Invalid(what))
    } else {
        Ok(())
    }
}

impl RedisRevocationList {
    /// A list on the Redis at `url`, under `prefix`. Connects lazily, so a process can start
    /// while Redis is down.
    ///
    /// # Errors
    /// [`RevocationError::Unavailable`] for a malformed URL.
    pub fn new(
        url: &str,
        prefix: &str,
        config: RedisRevocationConfig,
    ) -> Result<Self, RevocationError> {
        let client =
            client(url, config.tls_ca.as_deref(), config.tls_client.as_ref()).map_err(|e| {
                RevocationError::Unavailable(
                    format!("bad Redis URL or TLS authority ({:?})", e.kind()).into(),
                )
            })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| unavailable(&e))?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    // Every key of a list carries the prefix as its hash tag (`{prefix}:…`), so a Redis
    // Cluster puts them in one slot and the one-round-trip `MGET` never fails with CROSSSLOT.
    // The price is that one list lives on one shard: it holds only live revocations and
    // counters, far below what one shard serves.
    fn jti_key(&self, jti: &str) -> String {
        format!("{{{}}}:jti:{jti}", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{{{}}}:uep:{user}", self.prefix)
    }

    fn global_key(&self) -> String {
        format!("{{{}}}:gep", self.prefix)
    }
}

#[async_trait]
impl RevocationList for RedisRevocationList {
    async fn revoke_token(&self, jti: &str, expires: SystemTime) -> Result<(), RevocationError> {
        check("jti", jti)?;
        let until = unix_secs(expires);
        if until <= unix_secs(SystemTime::now()) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.jti_key(jti))
            .arg(1)
            .arg("EXAT")
            .arg(until)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn revoke_user(&self, user: &str) -> Result<u64, RevocationError> {
        check("user", user)?;
        let mut conn = self.conn.clone();
        conn.incr(self.user_key(user), 1u64)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn revoke_everyone(&self) -> Result<u64, RevocationError> {
        let mut conn = self.conn.clone();
        conn.incr(self.global_key(), 1u64)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn epochs(&self, user: &str) -> Result<(u64, u64), RevocationError> {
        check("user", user)?;
        let mut conn = self.conn.clone();
        let (u, g): (Option<u64>, Option<u64>) = redis::cmd("MGET")
            .arg(self.user_key(user))
            .arg(self.global_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok((u.unwrap_or(0), g.unwrap_or(0)))
    }

    async fn status(&self, jti: &str, user: &str) -> Result<RevocationStatus, RevocationError> {
        check("jti", jti)?;
        check("user", user)?;
        let mut conn = self.conn.clone();
        let (denied, u, g): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("MGET")
            .arg(self.jti_key(jti))
            .arg(self.user_key(user))
            .arg(self.global_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(RevocationStatus {
            token_revoked: denied.is_some(),
            user_epoch: u.unwrap_or(0),
            global_epoch: g.unwrap_or(0),
        })
    }
}

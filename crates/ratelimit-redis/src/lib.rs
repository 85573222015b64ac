//! The shared rate limiter: GCRA in one atomic Lua script on Redis.
//!
//! The script reads Redis's clock (`TIME`), so every API replica decides on the same time, and
//! stores only the key's theoretical arrival time, with an expiry at the moment the key's budget
//! is whole again (so idle keys cost Redis nothing). Check and update are one script: atomic, one
//! round trip. Connections go through redis's `ConnectionManager` (reconnects on its own), with
//! connection and response timeouts always set; a timeout or refused connection is
//! [`LimitError::Unavailable`], which [`coffer_ratelimit::Failover`] turns into fail-open or
//! fail-closed. A `rediss://` URL connects over TLS (rustls), the server's certificate checked
//! against the configured authority ([`RedisLimiterConfig::tls_ca`]) or the system's roots, and
//! its name; to a Redis that asks for one, the client shows its certificate
//! ([`RedisLimiterConfig::tls_client`]).
//!
//! The connection is made lazily, so the API starts while Redis is down. The policy's rate is
//! part of the Redis key, so changing a policy starts fresh budgets.

use std::time::Duration;

use async_trait::async_trait;
use coffer_crypto::SecretBytes;
use coffer_ratelimit::{Decision, LimitError, Policy, RateLimiter};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local peek = ARGV[4] == '1'
local tau = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local function remaining_at(x) return math.floor((now + tau - x) / interval) end
local new_tat = tat + interval * cost
local allow_at = new_tat - tau
if allow_at > now then
  return {0, remaining_at(tat), allow_at - now, tat - now}
end
if peek then
  return {1, remaining_at(tat), 0, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, remaining_at(new_tat), 0, new_tat - now}
";

/// Timeouts of the Redis limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimiterConfig {
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

impl Default for RedisLimiterConfig {
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
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
}

// The URL may carry a password: not shown.
coffer_macros::debug_non_exhaustive!(self => RedisLimiter { prefix });

fn limit_error(e: &redis::RedisError) -> LimitError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        LimitError::Unavailable(e.to_string())
    } else {
        LimitError::Other(e.to_string())
    }
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (`redis://…` or `rediss://…`). Connects lazily, so a
    /// process can start while Redis is down; keys are stored under `prefix`.
    ///
    /// # Errors
    /// [`LimitError::Other`] for a malformed URL.
    pub fn new(url: &str, prefix: &str, config: RedisLimiterConfig) -> Result<Self, LimitError> {
        let client =
            client(url, config.tls_ca.as_deref(), config.tls_client.as_ref()).map_err(|e| {
                LimitError::Other(format!("bad Redis URL or TLS authority ({:?})", e.kind()))
            })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| limit_error(&e))?;
        Ok(Self {
            conn,
            script: Script::new(GCRA),
            prefix: prefix.to_owned(),
        })
    }

    async fn run(
        &self,
        key: &str,
        policy: &Policy,
        cost: u32,
        peek: bool,
    ) -> Result<Decision, LimitError> {
        if cost > policy.limit() {
            return Err(LimitError::CostExceedsLimit {
                policy: policy.name().to_owned(),
                cost,
                limit: policy.limit(),
            });
        }
        let interval = u64::try_from(policy.emission_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // The policy's rate is part of the key: changing a policy starts fresh budgets.
        let redis_key = format!(
            "{}:{}:{}:{}:{key}",
            self.prefix,
            policy.name(),
            policy.limit(),
            policy.period().as_millis()
        );
        let mut conn = self.conn.clone();
        let (allowed, remaining, retry_us, reset_us): (i64, i64, i64, i64) = self
            .script
            .key(redis_key)
            .arg(interval)
            .arg(policy.limit())
            .arg(cost.max(1))
            .arg(if peek { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| limit_error(&e))?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: policy.limit(),
            remaining: u32::try_from(remaining).unwrap_or(0).min(policy.limit()),
            retry_after: micros(retry_us),
            reset_after: micros(reset_us),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, policy: &Policy, cost: u32) -> Result<Decision, LimitError> {
        self.run(key, policy, cost, false).await
    }

    async fn peek(&self, key: &str, policy: &Policy) -> Result<Decision, LimitError> {
        self.run(key, policy, 1, true).await
    }
}

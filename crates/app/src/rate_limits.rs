//! The rate-limit layer as configured: the in-process limiter (alone, or as Redis's fallback),
//! the policies with their overrides, the trusted proxies; and the operators' network
//! allowlist, which reads client addresses through the same proxies.

use std::sync::Arc;
use std::time::Duration;

use coffer_clock::Clock;
use coffer_http::client_ip::TrustedProxies;
use coffer_http::ratelimit::{AdminAllowlist, RateLimits};
use coffer_ledger::error::context;
use coffer_ratelimit::audit::LimitedRequests;
use coffer_ratelimit::policy::Policies;
use coffer_ratelimit::{Failover, InProcessLimiter, RateLimiter, RedisDownMode};

use crate::AppError;
use crate::config::Config;

/// How often the in-process limiter forgets the clients whose budgets are full again.
pub(crate) const EVICT_EVERY: Duration = Duration::from_secs(60);

/// The layer's state and the in-process limiter in it (whose stale keys
/// [`App::spawn_background`](crate::App::spawn_background) evicts), when enabled.
pub(crate) fn rate_limits(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<Option<(RateLimits, Arc<InProcessLimiter>)>, AppError> {
    let c = &config.rate_limit;
    if !c.enabled {
        return Ok(None);
    }
    let local = Arc::new(InProcessLimiter::with_clock(clock.clone()));
    let in_process: Arc<dyn RateLimiter> = local.clone();
    let limiter: Arc<dyn RateLimiter> = match &c.redis_url {
        Some(url) => {
            let redis = coffer_ratelimit_redis::RedisLimiter::new(
                url,
                "coffer:ratelimit",
                coffer_ratelimit_redis::RedisLimiterConfig {
                    tls_ca: crate::config::read_redis_ca(
                        "rate_limit.redis_ca_file",
                        c.redis_ca_file.as_deref(),
                    )?,
                    tls_client: crate::config::read_redis_identity(
                        "rate_limit",
                        c.redis_client_cert_file.as_deref(),
                        c.redis_client_key_file.as_deref(),
                    )?,
                    ..coffer_ratelimit_redis::RedisLimiterConfig::default()
                },
            )
            .map_err(|e| AppError::Service(context("rate limiter", e)))?;
            let mode = if c.fail_open {
                RedisDownMode::FailOpen
            } else {
                RedisDownMode::FailClosed
            };
            Arc::new(Failover::new(Arc::new(redis), in_process, mode))
        }
        None => in_process,
    };
    let mut policies =
        Policies::defaults().map_err(|e| AppError::Service(context("rate limits", e)))?;
    for (name, setting) in &c.policies {
        let policy = coffer_ratelimit::Policy::new(
            name,
            setting.limit,
            Duration::from_secs(setting.period_secs),
        )
        .map_err(|e| AppError::Service(context(format!("rate_limit.policies.{name}"), e)))?;
        let slot = match name.as_str() {
            "per_ip" => &mut policies.per_ip,
            "per_user" => &mut policies.per_user,
            "per_api_key" => &mut policies.per_api_key,
            "login" => &mut policies.login,
            "register" => &mut policies.register,
            "refresh" => &mut policies.refresh,
            "money_out" => &mut policies.money_out,
            "open_wallet" => &mut policies.open_wallet,
            "write" => &mut policies.write,
            "read" => &mut policies.read,
            _ => &mut policies.admin,
        };
        *slot = policy;
    }
    let layer = RateLimits {
        limiter,
        policies: Arc::new(policies),
        proxies: trusted_proxies(config)?,
        limited: Arc::new(LimitedRequests::new()),
        classify: Arc::new(coffer_http::api::classify),
    };
    Ok(Some((layer, local)))
}

/// The networks allowed on the operators' routes (`rate_limit.admin_allowlist`); `None` when
/// the list is empty (everyone). Applies whether or not rate limiting is on.
pub(crate) fn admin_allowlist(config: &Config) -> Result<Option<AdminAllowlist>, AppError> {
    let list = &config.rate_limit.admin_allowlist;
    if list.is_empty() {
        return Ok(None);
    }
    Ok(Some(AdminAllowlist {
        nets: Arc::new(cidrs(list, "rate_limit.admin_allowlist")?),
        proxies: trusted_proxies(config)?,
    }))
}

fn trusted_proxies(config: &Config) -> Result<Arc<TrustedProxies>, AppError> {
    let nets = cidrs(
        &config.rate_limit.trusted_proxies,
        "rate_limit.trusted_proxies",
    )?;
    Ok(Arc::new(TrustedProxies::new(nets)))
}

fn cidrs(list: &[String], setting: &str) -> Result<Vec<ipnet::IpNet>, AppError> {
    let mut nets = Vec::new();
    for cidr in list {
        nets.extend(
            coffer_http::client_ip::parse_cidrs(cidr)
                .map_err(|e| AppError::Service(context(setting, e)))?,
        );
    }
    Ok(nets)
}

//! Which policies apply to a request, from configuration.
//!
//! Every request is checked against the per-client-IP policy, the per-user or per-API-key policy
//! when the caller is known, and its route class's policy (keyed by user when known, else by IP).
//! The defaults suit a public API: authentication and PIN-bearing money-out are strict (they are
//! what credential stuffing and PIN guessing go after), reads are loose.
//!
//! The route classes are login, register, refresh, PIN-bearing money-out, opening a wallet,
//! write, read and admin; the HTTP layer classifies each request. [`Policies::applicable`] gives the (key,
//! policy) pairs a request is checked against. IPv6 clients are keyed by their /64
//! ([`ip_key`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::{Policy, PolicyError};

/// What kind of route a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// POST /v1/auth/login and the second factor's enroll, confirm and disable.
    Login,
    /// POST /v1/auth/register.
    Register,
    /// POST /v1/auth/refresh.
    Refresh,
    /// Withdrawals, transfers, PIN changes: anything that takes a PIN.
    MoneyOut,
    /// POST /v1/wallets: each opening costs a data key from the key manager and a PIN hash.
    OpenWallet,
    /// Other writes.
    Write,
    /// Reads.
    Read,
    /// /v1/admin/…
    Admin,
}

impl RouteClass {
    /// Stable name, used in keys.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::Refresh => "refresh",
            Self::MoneyOut => "money_out",
            Self::OpenWallet => "open_wallet",
            Self::Write => "write",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// Who is calling, as far as the limiter is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// Not signed in.
    Anonymous,
    /// A user (token subject).
    User(String),
    /// An API key: its id (never the secret), and its own policy when it has one (else the
    /// configured `per_api_key`).
    ApiKey {
        /// The key's id.
        id: String,
        /// The key's own budget.
        policy: Option<Policy>,
    },
}

/// The configured policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    /// Every request, by client IP.
    pub per_ip: Policy,
    /// Every request of a signed-in user.
    pub per_user: Policy,
    /// Every request made with an API key.
    pub per_api_key: Policy,
    /// By route class.
    pub login: Policy,
    /// Registration.
    pub register: Policy,
    /// Token refresh.
    pub refresh: Policy,
    /// PIN-bearing money-out.
    pub money_out: Policy,
    /// Opening wallets.
    pub open_wallet: Policy,
    /// Other writes.
    pub write: Policy,
    /// Reads.
    pub read: Policy,
    /// Admin routes.
    pub admin: Policy,
}

fn per_minute(name: &str, limit: u32) -> Result<Policy, PolicyError> {
    Policy::new(name, limit, Duration::from_secs(60))
}

/// The rate-limit key of a client address: its network, an IPv6 client's /64
/// ([`coffer_ids::client_network`]).
#[must_use]
pub fn ip_key(ip: IpAddr) -> String {
    coffer_ids::client_network(ip)
}

impl Policies {
    /// The defaults.
    ///
    /// # Errors
    /// Never (the defaults are valid); the `Result` keeps one constructor path.
    pub fn defaults() -> Result<Self, PolicyError> {
        Ok(Self {
            per_ip: per_minute("ip", 600)?,
            per_user: per_minute("user", 1_200)?,
            per_api_key: per_minute("api_key", 3_000)?,
            login: per_minute("login", 10)?,
            register: Policy::new("register", 5, Duration::from_secs(3_600))?,
            refresh: per_minute("refresh", 30)?,
            money_out: per_minute("money_out", 20)?,
            open_wallet: per_minute("open_wallet", 30)?,
            write: per_minute("write", 120)?,
            read: per_minute("read", 600)?,
            admin: per_minute("admin", 120)?,
        })
    }

    fn class_policy(&self, class: RouteClass) -> &Policy {
        match class {
            RouteClass::Login => &self.login,
            RouteClass::Register => &self.register,
            RouteClass::Refresh => &self.refresh,
            RouteClass::MoneyOut => &self.money_out,
            RouteClass::OpenWallet => &self.open_wallet,
            RouteClass::Write => &self.write,
            RouteClass::Read => &self.read,
            RouteClass::Admin => &self.admin,
        }
    }

    /// The (key, policy) pairs a request is checked against, most general first.
    #[must_use]
    pub fn applicable<'a>(
        &'a self,
        ip: IpAddr,
        caller: &'a Requester,
        class: RouteClass,
    ) -> Vec<(String, &'a Policy)> {
        let ip_key = ip_key(ip);
        let mut out = vec![(ip_key.clone(), &self.per_ip)];
        let class_scope = match caller {
            Requester::Anonymous => ip_key,
            Requester::User(id) => {
                out.push((format!("user:{id}"), &self.per_user));
                format!("user:{id}")
            }
            Requester::ApiKey { id, policy } => {
                let own = policy.as_ref().unwrap_or(&self.per_api_key);
                out.push((format!("api_key:{id}"), own));
                format!("api_key:{id}")
            }
        };
        out.push((
            format!("{}:{class_scope}", class.as_str()),
            self.class_policy(class),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_login_is_keyed_by_ip_and_users_by_id() {
        let p = Policies::defaults().unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let keys: Vec<String> = p
            .applicable(ip, &Requester::Anonymous, RouteClass::Login)
            .into_iter()
            .map(|(k, p)| format!("{k}={}", p.name()))
            .collect();
        assert_eq!(keys, ["ip:203.0.113.9=ip", "login:ip:203.0.113.9=login"]);
        let keys: Vec<String> = p
            .applicable(ip, &Requester::User("u1".into()), RouteClass::MoneyOut)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["ip:203.0.113.9", "user:u1", "money_out:user:u1"]);
    }

    #[test]
    fn an_api_key_is_limited_by_its_own_policy_else_the_configured_one() {
        let p = Policies::defaults().unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let own = Policy::new("api_key", 7, Duration::from_secs(60)).unwrap();
        for (policy, limit) in [(Some(own), 7), (None, 3_000)] {
            let key = Requester::ApiKey {
                id: "k1".into(),
                policy,
            };
            let checks = p.applicable(ip, &key, RouteClass::Read);
            let keys: Vec<(&str, u32)> = checks
                .iter()
                .map(|(k, p)| (k.as_str(), p.limit()))
                .collect();
            assert_eq!(
                keys,
                [
                    ("ip:203.0.113.9", 600),
                    ("api_key:k1", limit),
                    ("read:api_key:k1", 600)
                ]
            );
        }
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), "ip64:2001:db8:1:2::");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(other));
        assert_eq!(ip_key("::ffff:192.0.2.1".parse().unwrap()), "ip:192.0.2.1");
        // Keys are audit tokens.
        assert!(coffer_audit::Code::parse(&ip_key(a)).is_ok());
    }

    #[test]
    fn two_addresses_of_one_64_share_every_per_address_budget() {
        let p = Policies::defaults().unwrap();
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for class in [
            RouteClass::Login,
            RouteClass::Register,
            RouteClass::Refresh,
            RouteClass::Read,
        ] {
            let keys = |ip| -> Vec<String> {
                p.applicable(ip, &Requester::Anonymous, class)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect()
            };
            assert_eq!(keys(a), keys(b), "{class:?}");
            assert_eq!(keys(a)[0], "ip64:2001:db8:1:2::");
        }
        // A signed-in user's per-address budget is the /64's too.
        let user = |ip| {
            p.applicable(ip, &Requester::User("u1".into()), RouteClass::Read)[0]
                .0
                .clone()
        };
        assert_eq!(user(a), user(b));
    }

    #[test]
    fn authentication_and_money_out_are_stricter_than_reads() {
        let p = Policies::defaults().unwrap();
        let rate = |p: &Policy| f64::from(p.limit()) / p.period().as_secs_f64();
        for strict in [&p.login, &p.register, &p.refresh, &p.money_out] {
            assert!(rate(strict) < rate(&p.read), "{strict:?}");
        }
    }
}

//! Alert rules over the audit stream (the security alerts operators expect: failed logins, wrong PINs, key failures, …), with configurable thresholds.
//!
//! | rule | default | keyed by |
//! |---|---|---|
//! | `failed_logins` | more than 5 in 5 minutes | user (or hashed email), and client IP |
//! | `large_transaction` | one transaction above 10,000.00 in its currency | — |
//! | `rate_limit_exceeded` | more than 100 in 1 minute | the limited key |
//! | `failed_transactions` | more than 10 in 1 hour | wallet |
//!
//! A window rule fires once when its count first exceeds the threshold, then stays quiet for that
//! key until the window has emptied. Time comes from the events, so replaying a log gives the same
//! alerts. State is per process: with several replicas each sees its own share of events (the
//! Prometheus rules that come with deploy/ see the sum).

use std::collections::{HashMap, VecDeque};

use crate::event::{Action, AuditEvent, Code, DetailValue, Outcome, Subject};

/// A count threshold over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    /// Fires when the count in the window exceeds this.
    pub more_than: u32,
    /// Window length in seconds.
    pub window_secs: u32,
}

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertConfig {
    /// Failed logins per user and per client IP.
    pub failed_logins: WindowRule,
    /// A single transaction above this many major units (10,000.00 → 10_000).
    pub large_transaction_major_units: i64,
    /// Rate-limited requests per limited key.
    pub rate_limit_exceeded: WindowRule,
    /// Failed transactions per wallet.
    pub failed_transactions: WindowRule,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            failed_logins: WindowRule {
                more_than: 5,
                window_secs: 300,
            },
            large_transaction_major_units: 10_000,
            rate_limit_exceeded: WindowRule {
                more_than: 100,
                window_secs: 60,
            },
            failed_transactions: WindowRule {
                more_than: 10,
                window_secs: 3_600,
            },
        }
    }
}

/// A triggered rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Stable rule name, also the log event name suffix (`coffer.alert.<rule>`).
    pub rule: &'static str,
    /// What it is keyed by (a user id, a hashed email, an IP token, a wallet id), if anything.
    pub key: Option<String>,
    /// The count that crossed the threshold (1 for single-event rules).
    pub count: u32,
    /// When, in microseconds since the Unix epoch (the triggering event's time).
    pub at_micros: i64,
}

impl Alert {
    /// The audit event recording this alert.
    #[must_use]
    pub fn to_event(&self, service: &crate::event::EntityId) -> AuditEvent {
        let mut e = AuditEvent::new(
            crate::event::Actor::Service(service.clone()),
            Action::SecurityAlert,
            Subject::System,
            Outcome::Success,
        )
        .at(self.at_micros);
        if let Ok(rule) = Code::parse(self.rule) {
            let _ = e.details.insert("rule", DetailValue::Code(rule));
        }
        let _ = e
            .details
            .insert("count", DetailValue::Int(i64::from(self.count)));
        if let Some(key) = self.key.as_deref().and_then(|k| Code::parse(k).ok()) {
            let _ = e.details.insert("key", DetailValue::Code(key));
        }
        e
    }
}

struct Window {
    times: VecDeque<i64>,
    fired: bool,
    window_micros: i64,
}

/// The rule engine. Feed it every appended event with [`AlertRules::observe`].
pub struct AlertRules {
    config: AlertConfig,
    windows: HashMap<(&'static str, String), Window>,
    observed: u64,
}

impl std::fmt::Debug for AlertRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertRules")
            .field("config", &self.config)
            .field("tracked_keys", &self.windows.len())
            .finish()
    }
}

fn detail_key(e: &AuditEvent, name: &str) -> Option<String> {
    match e.details.get(name)? {
        DetailValue::Code(c) => Some(c.as_str().to_owned()),
        DetailValue::Mac(m) => Some(String::from(m.clone())),
        DetailValue::Int(i) => Some(i.to_string()),
        DetailValue::Bool(_) => None,
    }
}

fn subject_key(e: &AuditEvent) -> Option<String> {
    e.subject.parts().1.map(|id| id.as_str().to_owned())
}

impl AlertRules {
    /// An engine with these thresholds.
    #[must_use]
    pub fn new(config: AlertConfig) -> Self {
        Self {
            config,
            windows: HashMap::new(),
            observed: 0,
        }
    }

    /// Keys currently tracked (memory stays bounded: idle keys are swept).
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.windows.len()
    }

    /// Observes one event; returns the alerts it triggers.
    pub fn observe(&mut self, e: &AuditEvent) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let c = self.config;
        match e.action {
            Action::UserLoginFailed => {
                let user = subject_key(e).or_else(|| detail_key(e, "email"));
                if let Some(user) = user {
                    self.count(
                        "failed_logins",
                        user,
                        c.failed_logins,
                        e.at_micros,
                        &mut alerts,
                    );
                }
                if let Some(ip) = detail_key(e, "client_ip") {
                    // Counted by the client's network: an IPv6 client by its /64.
                    let network = ip
                        .parse()
                        .map_or_else(|_| format!("ip:{ip}"), coffer_ids::client_network);
                    self.count(
                        "failed_logins",
                        network,
                        c.failed_logins,
                        e.at_micros,
                        &mut alerts,
                    );
                }
            }
            Action::SecurityRateLimited => {
                let n = match e.details.get("count") {
                    Some(DetailValue::Int(n)) => u32::try_from(*n).unwrap_or(u32::MAX).max(1),
                    _ => 1,
                };
                let key = detail_key(e, "key").unwrap_or_else(|| "unknown".to_owned());
                for _ in 0..n.min(c.rate_limit_exceeded.more_than.saturating_add(1)) {
                    self.count(
                        "rate_limit_exceeded",
                        key.clone(),
                        c.rate_limit_exceeded,
                        e.at_micros,
                        &mut alerts,
                    );
                }
            }
            Action::TransactionFailed => {
                let wallet = match &e.subject {
                    Subject::Wallet(id) => Some(id.as_str().to_owned()),
                    _ => detail_key(e, "wallet"),
                };
                if let Some(w) = wallet {
                    self.count(
                        "failed_transactions",
                        w,
                        c.failed_transactions,
                        e.at_micros,
                        &mut alerts,
                    );
                }
            }
            _ => {}
        }
        if matches!(
            e.action,
            Action::TransactionDeposit
                | Action::TransactionWithdrawal
                | Action::TransactionTransfer
                | Action::TransactionReversal
        ) && e.outcome == Outcome::Success
        {
            // The ledger never puts amounts in the audit log: it flags a large transaction
            // (`large: true`, by its own copy of the threshold). Events that do carry an amount
            // are judged here.
            let flagged = e.details.get("large") == Some(&DetailValue::Bool(true));
            let over = match (
                e.details.get("amount_minor"),
                e.details.get("currency_exponent"),
            ) {
                (Some(DetailValue::Int(amount)), Some(DetailValue::Int(exponent))) => {
                    u32::try_from(*exponent)
                        .ok()
                        .and_then(|x| 10i64.checked_pow(x))
                        .and_then(|scale| c.large_transaction_major_units.checked_mul(scale))
                        .is_some_and(|limit| *amount > limit)
                }
                _ => false,
            };
            if flagged || over {
                alerts.push(Alert {
                    rule: "large_transaction",
                    key: subject_key(e),
                    count: 1,
                    at_micros: e.at_micros,
                });
            }
        }
        self.observed += 1;
        if self.observed.is_multiple_of(1024) {
            self.sweep(e.at_micros);
        }
        for a in &alerts {
            tracing::warn!(
                event = %format!("coffer.alert.{}", a.rule),
                rule = a.rule,
                key = a.key.as_deref().unwrap_or("-"),
                count = a.count,
                "alert rule triggered"
            );
        }
        alerts
    }

    fn count(
        &mut self,
        rule: &'static str,
        key: String,
        r: WindowRule,
        now: i64,
        alerts: &mut Vec<Alert>,
    ) {
        let window_micros = i64::from(r.window_secs).saturating_mul(1_000_000);
        let w = self
            .windows
            .entry((rule, key.clone()))
            .or_insert_with(|| Window {
                times: VecDeque::new(),
                fired: false,
                window_micros,
            });
        while w
            .times
            .front()
            .is_some_and(|t| *t <= now.saturating_sub(window_micros))
        {
            w.times.pop_front();
        }
        if w.times.is_empty() {
            w.fired = false;
        }
        w.times.push_back(now);
        // Only what decides the rule is kept: the window never holds more than more_than + 1.
        if w.times.len() > r.more_than as usize + 1 {
            w.times.pop_front();
        }
        if w.times.len() > r.more_than as usize && !w.fired {
            w.fired = true;
            alerts.push(Alert {
                rule,
                key: Some(key),
                count: u32::try_from(w.times.len()).unwrap_or(u32::MAX),
                at_micros: now,
            });
        }
    }

    /// Drops keys whose newest event left their window.
    fn sweep(&mut self, now: i64) {
        self.windows.retain(|_, w| {
            w.times
                .back()
                .is_some_and(|t| *t > now.saturating_sub(w.window_micros))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, EntityId};

    fn id(s: &str) -> EntityId {
        EntityId::parse(s).unwrap()
    }

    fn failed_login(user: &str, ip: &str, at_secs: i64) -> AuditEvent {
        AuditEvent::new(
            Actor::Anonymous,
            Action::UserLoginFailed,
            Subject::User(id(user)),
            Outcome::Denied,
        )
        .at(at_secs * 1_000_000)
        .detail("client_ip", DetailValue::Code(Code::parse(ip).unwrap()))
        .unwrap()
    }

    #[test]
    fn failed_logins_from_one_ipv6_64_count_together() {
        let mut rules = AlertRules::new(AlertConfig::default());
        // Six users, six addresses, one /64: only the network's count reaches six.
        for i in 0..5 {
            let e = failed_login(&format!("u{i}"), &format!("2001:db8:1:2::{i}"), i);
            assert!(rules.observe(&e).is_empty());
        }
        let alerts = rules.observe(&failed_login("u9", "2001:db8:1:2:ffff::9", 5));
        let keys: Vec<_> = alerts.iter().map(|a| a.key.clone().unwrap()).collect();
        assert_eq!(keys, ["ip64:2001:db8:1:2::"]);
    }

    #[test]
    fn sixth_failed_login_in_five_minutes_fires_once_per_user_and_ip() {
        let mut rules = AlertRules::new(AlertConfig::default());
        for i in 0..5 {
            assert!(rules.observe(&failed_login("u1", "10.0.0.1", i)).is_empty());
        }
        let alerts = rules.observe(&failed_login("u1", "10.0.0.1", 5));
        let keys: Vec<_> = alerts.iter().map(|a| a.key.clone().unwrap()).collect();
        assert_eq!(keys, ["u1", "ip:10.0.0.1"]);
        assert!(
            alerts
                .iter()
                .all(|a| a.rule == "failed_logins" && a.count == 6)
        );
        // The seventh does not fire again.
        assert!(rules.observe(&failed_login("u1", "10.0.0.1", 6)).is_empty());
    }

    #[test]
    fn failed_logins_spread_beyond_the_window_do_not_fire() {
        let mut rules = AlertRules::new(AlertConfig::default());
        for i in 0..20 {
            // One every 61 s: never more than 5 inside 300 s.
            assert!(
                rules
                    .observe(&failed_login("u1", &format!("10.0.0.{i}"), i * 61))
                    .is_empty()
            );
        }
    }

    #[test]
    fn fires_again_after_the_window_empties() {
        let mut rules = AlertRules::new(AlertConfig::default());
        let fire = |rules: &mut AlertRules, start: i64| {
            (0..6)
                .map(|i| rules.observe(&failed_login("u2", "ip", start + i)).len())
                .sum::<usize>()
        };
        assert_eq!(fire(&mut rules, 0), 2);
        assert_eq!(fire(&mut rules, 10_000), 2);
    }

    fn transfer(amount_minor: i64, exponent: i64) -> AuditEvent {
        AuditEvent::new(
            Actor::User(id("u1")),
            Action::TransactionTransfer,
            Subject::Transaction(id("t1")),
            Outcome::Success,
        )
        .detail("amount_minor", DetailValue::Int(amount_minor))
        .unwrap()
        .detail("currency_exponent", DetailValue::Int(exponent))
        .unwrap()
    }

    #[test]
    fn large_transaction_respects_the_currency_exponent() {
        let mut rules = AlertRules::new(AlertConfig::default());
        assert!(
            rules.observe(&transfer(1_000_000, 2)).is_empty(),
            "exactly 10,000.00"
        );
        assert_eq!(
            rules.observe(&transfer(1_000_001, 2))[0].rule,
            "large_transaction"
        );
        assert!(rules.observe(&transfer(10_000, 0)).is_empty(), "10,000 JPY");
        assert_eq!(rules.observe(&transfer(10_001, 0)).len(), 1);
        assert!(
            rules.observe(&transfer(10_000_000, 3)).is_empty(),
            "10,000.000 KWD"
        );
    }

    #[test]
    fn rate_limit_and_failed_transaction_rules() {
        let mut rules = AlertRules::new(AlertConfig::default());
        let limited = |count: i64, at: i64| {
            AuditEvent::new(
                Actor::Anonymous,
                Action::SecurityRateLimited,
                Subject::System,
                Outcome::Denied,
            )
            .at(at * 1_000_000)
            .detail(
                "key",
                DetailValue::Code(Code::parse("ip:10.1.1.1").unwrap()),
            )
            .unwrap()
            .detail("count", DetailValue::Int(count))
            .unwrap()
        };
        assert!(rules.observe(&limited(60, 0)).is_empty());
        assert!(rules.observe(&limited(40, 30)).is_empty(), "exactly 100");
        assert_eq!(
            rules.observe(&limited(1, 31))[0].rule,
            "rate_limit_exceeded"
        );

        let failed = |at: i64| {
            AuditEvent::new(
                Actor::User(id("u1")),
                Action::TransactionFailed,
                Subject::Wallet(id("w1")),
                Outcome::Failed,
            )
            .at(at * 1_000_000)
        };
        let fired: usize = (0..11).map(|i| rules.observe(&failed(i * 60)).len()).sum();
        assert_eq!(fired, 1);
    }

    #[test]
    fn memory_stays_bounded_with_many_distinct_keys() {
        let mut rules = AlertRules::new(AlertConfig::default());
        for i in 0..200_000i64 {
            // Each user is seen once; time advances a second every 10 events.
            rules.observe(&failed_login(&format!("u{i}"), "ip", i / 10));
        }
        // Only users seen in the last 300 s window (3,000) may remain, plus at most one sweep
        // period's worth (1,024) and the shared IP key.
        assert!(
            rules.tracked_keys() <= 3_000 + 1_024 + 1,
            "{}",
            rules.tracked_keys()
        );
    }
}

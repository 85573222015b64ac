//! The outbox store's contract suite: `outbox_store_contract_tests!` expands to one test per
//! case, each on a fresh database from the adapter's factory. The cases drive the port directly
//! (sinks, leases) and through the [`Dispatcher`] over a real ledger on the same database, with
//! a [`Receiver`] standing in for the endpoints (it records every message and fails on
//! demand). One manual clock per test dates everything; a case that needs time to pass moves it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coffer_audit::{Actor, AlertConfig, AuditLog, AuditQuery, EntityId, ObservedAuditLog};
use coffer_clock::{Clock, ManualClock};
use coffer_keys::KeyProvider;
use coffer_ledger::domain::{EventData, EventKind};
use coffer_ledger::port::EventRecord;
use coffer_ledger::testkit::{Client, MoneyRequest};
use coffer_ledger::{Ledger, LedgerStore, UserId, WalletId};
use coffer_webhooks::RetrySchedule;

use crate::{
    DispatchConfig, Dispatcher, Message, Opened, OutboxStore, Outcome, Payloads, SendError, Sent,
    Settlement, Sink, SinkId, Target, Transport, WebhookUrl,
};

/// The stores of one test database.
#[derive(Debug)]
pub struct Stores {
    /// The port under test.
    pub outbox: Arc<dyn OutboxStore>,
    /// The ledger's store on the same database (its events are what is delivered).
    pub ledger: Arc<dyn LedgerStore>,
    /// The audit log on it.
    pub audit: Arc<dyn AuditLog>,
}

/// What an adapter gives the suite.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the stores on this test's database, as a new process would.
    async fn open(&self, keys: Arc<dyn KeyProvider>, clock: Arc<dyn Clock>) -> Stores;
    /// This test's master key provider.
    fn keys(&self) -> Arc<dyn KeyProvider>;
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! outbox_store_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |backend| $crate::testkit(&backend);
            sinks_are_stored_updated_listed_and_deleted,
            every_event_reaches_every_sink_once_in_each_wallets_order,
            a_failing_receiver_is_retried_in_order_then_given_up_on_and_disabled,
            leases_keep_workers_apart_and_lapse_when_a_worker_dies,
            concurrent_workers_deliver_every_event_once,
            an_erased_wallets_events_are_recorded_as_erased_and_skipped,
            pruning_keeps_what_a_sink_still_needs,
        );
    };
}

const PIN: &str = "493817";

/// One message as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The sink it was sent to.
    pub sink: SinkId,
    /// Its id (`webhook-id`).
    pub id: String,
    /// Its `type`.
    pub kind: String,
    /// Its `data`.
    pub data: serde_json::Value,
}

/// The endpoints: records every message, fails a sink's next messages on demand.
#[derive(Debug, Default)]
pub struct Receiver {
    got: Mutex<Vec<Received>>,
    failing: Mutex<HashMap<SinkId, u32>>,
}

impl Receiver {
    /// Fails the next `n` messages to `sink` with a 503.
    pub fn fail(&self, sink: SinkId, n: u32) {
        self.failing.lock().unwrap().insert(sink, n);
    }

    /// Every message delivered (answered 2xx), in order.
    pub fn delivered(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Per wallet, the numbers `sink` received, in order.
    pub fn numbers(&self, sink: SinkId) -> BTreeMap<String, Vec<i64>> {
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in self.delivered().into_iter().filter(|r| r.sink == sink) {
            let wallet = r.data["wallet_id"].as_str().unwrap().to_owned();
            out.entry(wallet)
                .or_default()
                .push(r.data["sequence"].as_i64().unwrap());
        }
        out
    }
}

#[async_trait]
impl Transport for Receiver {
    async fn send(&self, sink: &Sink, message: &Message) -> Sent {
        {
            let mut failing = self.failing.lock().unwrap();
            if let Some(n) = failing.get_mut(&sink.id).filter(|n| **n > 0) {
                *n -= 1;
                return Sent {
                    result: Err(SendError::Status(503)),
                    latency_ms: 1,
                };
            }
        }
        let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
        self.got.lock().unwrap().push(Received {
            sink: sink.id,
            id: message.id.to_string(),
            kind: body["type"].as_str().unwrap().to_owned(),
            data: body["data"].clone(),
        });
        Sent {
            result: Ok(204),
            latency_ms: 1,
        }
    }
}

/// Runs rounds of `d` until one finds nothing to do and the scan has read every event; returns
/// the attempts. (On Postgres the scan waits below the oldest transaction running on the
/// server, another test's among them: then a round finds nothing yet, and the next is tried a
/// moment later.)
///
/// # Panics
/// When a round fails, or 1,000 rounds do not settle it.
pub async fn drain(d: &Dispatcher) -> Vec<crate::Attempt> {
    let mut attempts = Vec::new();
    for _ in 0..1000 {
        let round = d.round().await.unwrap();
        assert_eq!(round.errors, 0);
        attempts.extend(round.attempts);
        if round.claimed == 0 && round.scanned == 0 {
            if d.backlog().await.unwrap().unscanned == 0 {
                return attempts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("delivery did not settle in 1000 rounds");
}

/// The ledger as the dispatcher opens payloads with.
struct Open(Arc<Client>);

#[async_trait]
impl Payloads for Open {
    async fn open(
        &self,
        wallet: WalletId,
        events: &[EventRecord],
    ) -> Result<Vec<EventData>, Opened> {
        Payloads::open(&**self.0, wallet, events).await
    }
}

/// One test's world: the stores, a ledger on them, the receiver, and the clock.
struct World {
    stores: Stores,
    ledger: Arc<Client>,
    receiver: Arc<Receiver>,
    clock: Arc<ManualClock>,
}

async fn world(backend: &dyn Backend) -> World {
    let keys = backend.keys();
    let clock = Arc::new(ManualClock::default());
    let stores = backend.open(keys.clone(), clock.clone()).await;
    let observed = Arc::new(ObservedAuditLog::new(
        stores.audit.clone(),
        AlertConfig::default(),
        EntityId::parse("outbox-tests").unwrap(),
    ));
    let ledger = Arc::new(Client::new(
        Ledger::new(
            stores.ledger.clone(),
            keys,
            observed,
            coffer_ledger::testkit::config(),
        )
        .with_clock(clock.clone()),
    ));
    World {
        stores,
        ledger,
        receiver: Arc::new(Receiver::default()),
        clock,
    }
}

fn config() -> DispatchConfig {
    DispatchConfig {
        scan_batch: 7,
        claim_batch: 5,
        events_per_claim: 3,
        lease: Duration::from_secs(60),
        concurrency: 4,
        disable_after: 5,
        schedule: RetrySchedule {
            first: Duration::from_secs(5),
            factor: 2,
            max_interval: Duration::from_secs(60),
            give_up_after: Duration::from_secs(120),
        },
    }
}

fn req(amount: i64, key: &str) -> MoneyRequest<'_> {
    MoneyRequest {
        amount_minor: amount,
        currency: "USD",
        memo: None,
        idempotency_key: key,
    }
}

impl World {
    fn dispatcher(&self, config: DispatchConfig) -> Dispatcher {
        Dispatcher::new(
            self.stores.outbox.clone(),
            Arc::new(Open(self.ledger.clone())),
            self.receiver.clone(),
            self.stores.audit.clone(),
            self.clock.clone(),
            config,
            EntityId::parse("worker-1").unwrap(),
        )
    }

    async fn sink(&self, kinds: Vec<EventKind>) -> Sink {
        let url = WebhookUrl::parse("https://hooks.example.com/in", false).unwrap();
        let sink = Sink::new(Target::Webhook(url), kinds, self.clock.unix_micros());
        self.stores.outbox.put_sink(&sink).await.unwrap();
        sink
    }

    async fn wallet(&self, owner: UserId, amount: i64) -> WalletId {
        let w = self.ledger.open_wallet(owner, "USD", PIN).await.unwrap().id;
        self.ledger
            .deposit(owner, w, &req(amount, &format!("fund-{w}")))
            .await
            .unwrap();
        w
    }

    async fn drain(&self, d: &Dispatcher) -> Vec<crate::Attempt> {
        drain(d).await
    }

    /// Every event of `wallet`, in order.
    async fn events(&self, wallet: WalletId) -> Vec<EventRecord> {
        self.stores.ledger.events_of(wallet).await.unwrap()
    }
}

/// Sinks round-trip through the store: registered, changed, listed oldest first, deleted.
pub async fn sinks_are_stored_updated_listed_and_deleted(backend: &dyn Backend) {
    let w = world(backend).await;
    let a = w.sink(vec![]).await;
    w.clock.advance(Duration::from_secs(1));
    let mut b = w
        .sink(vec![EventKind::TransactionPosted, EventKind::HoldCreated])
        .await;
    assert_eq!(w.stores.outbox.sink(a.id).await.unwrap(), Some(a.clone()));
    b.enabled = false;
    b.kinds = vec![EventKind::WalletClosed];
    b.failures = 3;
    b.secret_version = 2;
    b.previous_secret_until = Some(99);
    w.stores.outbox.put_sink(&b).await.unwrap();
    assert_eq!(
        w.stores.outbox.sinks().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(w.stores.outbox.disable_sink(a.id, 42).await.unwrap());
    assert!(
        !w.stores.outbox.disable_sink(a.id, 43).await.unwrap(),
        "already disabled"
    );
    let a2 = w.stores.outbox.sink(a.id).await.unwrap().unwrap();
    assert_eq!((a2.enabled, a2.disabled_at), (false, Some(42)));
    assert!(w.stores.outbox.delete_sink(a.id).await.unwrap());
    assert!(!w.stores.outbox.delete_sink(a.id).await.unwrap());
    assert_eq!(w.stores.outbox.sinks().await.unwrap(), vec![b]);
}

/// Each sink gets each event of the kinds it wants exactly once, every wallet's in its order,
/// and none from before it was registered.
pub async fn every_event_reaches_every_sink_once_in_each_wallets_order(backend: &dyn Backend) {
    let w = world(backend).await;
    let owner = UserId::new();
    let early = w.wallet(owner, 1_000).await;
    w.clock.advance(Duration::from_secs(1));
    let all = w.sink(vec![]).await;
    let posted = w.sink(vec![EventKind::TransactionPosted]).await;
    w.clock.advance(Duration::from_secs(1));
    let wallets = [
        early,
        w.wallet(owner, 500).await,
        w.wallet(owner, 700).await,
    ];
    for i in 0..6 {
        let (from, to) = (wallets[i % 3], wallets[(i + 1) % 3]);
        w.ledger
            .transfer(owner, from, to, PIN, &req(10, &format!("t{i}")))
            .await
            .unwrap();
    }
    let d = w.dispatcher(config());
    let attempts = w.drain(&d).await;
    assert!(attempts.iter().all(|a| a.outcome == Outcome::Delivered));
    assert_eq!(attempts.len(), w.receiver.delivered().len());

    let since = all.created_at;
    for wallet in wallets {
        let events = w.events(wallet).await;
        let expect: Vec<i64> = events
            .iter()
            .filter(|e| e.at >= since)
            .map(|e| e.seq)
            .collect();
        let got = w.receiver.numbers(all.id);
        assert_eq!(
            got[&wallet.to_string()],
            expect,
            "every event after registration, in order"
        );
        let expect_posted: Vec<i64> = events
            .iter()
            .filter(|e| e.at >= since && e.kind == EventKind::TransactionPosted)
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            w.receiver.numbers(posted.id)[&wallet.to_string()],
            expect_posted
        );
    }
    // The early wallet's opening and first deposit came before the sinks.
    assert_eq!(w.receiver.numbers(all.id)[&early.to_string()][0], 3);
    for r in w.receiver.delivered() {
        assert!(EventKind::parse(&r.kind).is_some());
        let events = w
            .events(WalletId::parse(r.data["wallet_id"].as_str().unwrap()).unwrap())
            .await;
        let seq = r.data["sequence"].as_i64().unwrap();
        let e = events.iter().find(|e| e.seq == seq).unwrap();
        assert_eq!(r.id, e.id.to_string(), "the message id is the event's");
    }

    // Caught up, nothing is due; a new event wakes only its wallet.
    assert_eq!(
        w.stores
            .outbox
            .backlog(w.clock.unix_micros())
            .await
            .unwrap()
            .pending,
        0
    );
    w.ledger
        .deposit(owner, wallets[1], &req(5, "late"))
        .await
        .unwrap();
    let before = w.receiver.delivered().len();
    w.drain(&d).await;
    let late = &w.receiver.delivered()[before..];
    assert_eq!(late.len(), 2, "one message per sink");
    assert!(
        late.iter()
            .all(|r| r.data["wallet_id"] == wallets[1].to_string())
    );
}

/// A receiver that fails holds back that wallet's later events for that sink only; a failed
/// event is retried on the schedule, then given up on, and the cursor goes on. A sink that
/// fails too often in a row is disabled, with an audit record, and its events wait for it.
pub async fn a_failing_receiver_is_retried_in_order_then_given_up_on_and_disabled(
    backend: &dyn Backend,
) {
    let w = world(backend).await;
    let (flaky, steady) = (w.sink(vec![]).await, w.sink(vec![]).await);
    let owner = UserId::new();
    let wallet = w.wallet(owner, 1_000).await;
    w.receiver.fail(flaky.id, 2);
    let d = w.dispatcher(config());
    w.drain(&d).await;
    assert_eq!(
        w.receiver.numbers(steady.id)[&wallet.to_string()],
        vec![1, 2]
    );
    assert!(
        w.receiver.numbers(flaky.id).is_empty(),
        "event 2 waits behind event 1"
    );
    let failed = w.stores.outbox.attempts(flaky.id, None, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0].outcome,
            failed[0].status,
            failed[0].seq,
            failed[0].error.as_deref()
        ),
        (Outcome::Failed, Some(503), 1, Some("status"))
    );
    // Not before the backoff (5 s, jittered to at least half of it).
    w.clock.advance(Duration::from_secs(2));
    w.drain(&d).await;
    assert!(w.receiver.numbers(flaky.id).is_empty());
    for _ in 0..3 {
        w.clock.advance(Duration::from_secs(10));
        w.drain(&d).await;
    }
    assert_eq!(
        w.receiver.numbers(flaky.id)[&wallet.to_string()],
        vec![1, 2]
    );
    let newest = &w.stores.outbox.attempts(flaky.id, None, 10).await.unwrap()[0];
    assert_eq!((newest.outcome, newest.seq), (Outcome::Delivered, 2));
    assert_eq!(
        w.stores
            .outbox
            .sink(flaky.id)
            .await
            .unwrap()
            .unwrap()
            .failures,
        0
    );

    // Failing past the schedule (120 s): given up on, and the next event goes.
    w.ledger
        .deposit(owner, wallet, &req(1, "d3"))
        .await
        .unwrap();
    w.ledger
        .deposit(owner, wallet, &req(1, "d4"))
        .await
        .unwrap();
    w.receiver.fail(flaky.id, 4);
    for _ in 0..8 {
        w.drain(&d).await;
        w.clock.advance(Duration::from_secs(61));
    }
    let got = &w.receiver.numbers(flaky.id)[&wallet.to_string()];
    assert_eq!(
        got,
        &vec![1, 2, 4],
        "event 3 was given up on, event 4 still came in order"
    );
    let attempts = w.stores.outbox.attempts(flaky.id, None, 50).await.unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a.seq == 3 && a.outcome == Outcome::GaveUp)
    );

    // Five failures in a row disable it; its events wait, then flow when it is enabled.
    w.receiver.fail(flaky.id, 100);
    for i in 0..3 {
        w.wallet(owner, 10 + i).await;
    }
    let mut rounds = 0;
    while w
        .stores
        .outbox
        .sink(flaky.id)
        .await
        .unwrap()
        .unwrap()
        .enabled
    {
        rounds += 1;
        assert!(
            rounds < 5,
            "still enabled after {rounds} rounds of failures"
        );
        w.clock.advance(Duration::from_secs(61));
        w.drain(&d).await;
    }
    let sink = w.stores.outbox.sink(flaky.id).await.unwrap().unwrap();
    assert!(!sink.enabled && sink.disabled_at.is_some(), "{sink:?}");
    let records = w
        .stores
        .audit
        .list(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.event.action == coffer_audit::Action::WebhookDisabled)
    );
    w.receiver.fail(flaky.id, 0);
    w.ledger
        .deposit(owner, wallet, &req(1, "d5"))
        .await
        .unwrap();
    w.drain(&d).await;
    assert_eq!(
        w.receiver.numbers(flaky.id)[&wallet.to_string()],
        vec![1, 2, 4],
        "disabled"
    );
    let mut enabled = sink.clone();
    enabled.enabled = true;
    enabled.disabled_at = None;
    enabled.failures = 0;
    w.stores.outbox.put_sink(&enabled).await.unwrap();
    w.drain(&d).await;
    assert_eq!(
        w.receiver.numbers(flaky.id).len(),
        1,
        "the new wallets wait for their retry"
    );
    // Woken: what waited for a retry goes now.
    w.stores
        .outbox
        .wake_sink(flaky.id, w.clock.unix_micros())
        .await
        .unwrap();
    w.drain(&d).await;
    assert_eq!(
        w.receiver.numbers(flaky.id)[&wallet.to_string()],
        vec![1, 2, 4, 5]
    );
    assert_eq!(
        w.receiver.numbers(flaky.id).len(),
        4,
        "and the three new wallets' events"
    );
}

/// Two claims at once never take the same cursor; a claim not settled in time lapses, another
/// worker takes the cursor, and the first worker's late settlement changes nothing.
pub async fn leases_keep_workers_apart_and_lapse_when_a_worker_dies(backend: &dyn Backend) {
    let w = world(backend).await;
    let sink = w.sink(vec![]).await;
    let owner = UserId::new();
    for i in 0..6 {
        w.wallet(owner, 10 + i).await;
    }
    let store = &w.stores.outbox;
    let now = w.clock.unix_micros();
    while store.scan(100, now).await.unwrap() > 0 {}
    let until = now + 60_000_000;
    let (a, b) = tokio::join!(store.claim(now, until, 4), store.claim(now, until, 4));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 6);
    let mut wallets: Vec<WalletId> = a.iter().chain(&b).map(|c| c.wallet).collect();
    wallets.sort();
    wallets.dedup();
    assert_eq!(wallets.len(), 6, "no cursor claimed twice");
    assert!(
        a.iter()
            .chain(&b)
            .all(|c| c.sink == sink.id && c.next_seq == 1 && c.last_seen == 2)
    );
    assert!(
        store.claim(now, until, 10).await.unwrap().is_empty(),
        "all leased"
    );

    // The lease lapses: another worker takes the cursor with a new token.
    let later = until + 1;
    let again = store.claim(later, later + 60_000_000, 10).await.unwrap();
    assert_eq!(again.len(), 6);
    let stale = &a[0];
    let to = Settlement {
        next_seq: 3,
        failures: 0,
        first_failed_at: None,
        retry_at: None,
    };
    let settled = store.settle(stale, &to, &[], later).await.unwrap();
    assert!(!settled.ours, "a lapsed lease settles nothing");
    let fresh = again.iter().find(|c| c.wallet == stale.wallet).unwrap();
    assert!(store.settle(fresh, &to, &[], later).await.unwrap().ours);
    // Caught up (next 3 > last seen 2): idle, not claimed again.
    let rest = store
        .claim(later + 120_000_000, later + 180_000_000, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|c| c.wallet != stale.wallet));
}

/// Three workers running rounds at once while money moves deliver every event exactly once
/// (no lease lapses), each wallet's in order.
pub async fn concurrent_workers_deliver_every_event_once(backend: &dyn Backend) {
    let w = world(backend).await;
    let sink = w.sink(vec![]).await;
    let owner = UserId::new();
    let mut wallets = Vec::new();
    for i in 0..4 {
        wallets.push(w.wallet(owner, 1_000 + i).await);
    }
    let workers: Vec<Dispatcher> = (0..3).map(|_| w.dispatcher(config())).collect();
    let moving = async {
        for i in 0..24 {
            let (from, to) = (wallets[i % 4], wallets[(i + 1) % 4]);
            w.ledger
                .transfer(owner, from, to, PIN, &req(1, &format!("c{i}")))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
    };
    let delivering = futures_util::future::join_all(workers.iter().map(|d| async move {
        for _ in 0..30 {
            d.round().await.unwrap();
            tokio::task::yield_now().await;
        }
    }));
    tokio::join!(moving, delivering);
    for d in &workers {
        w.drain(d).await;
    }
    let got = w.receiver.numbers(sink.id);
    for wallet in wallets {
        let expect: Vec<i64> = w.events(wallet).await.iter().map(|e| e.seq).collect();
        assert_eq!(got[&wallet.to_string()], expect);
    }
}

/// An erased wallet's events no longer open: each is recorded as `erased` and skipped, and the
/// cursor goes on; nothing about it is sent.
pub async fn an_erased_wallets_events_are_recorded_as_erased_and_skipped(backend: &dyn Backend) {
    let w = world(backend).await;
    let sink = w.sink(vec![]).await;
    let (alice, carol) = (UserId::new(), UserId::new());
    let a = w.wallet(alice, 100).await;
    let c = w.ledger.open_wallet(carol, "USD", PIN).await.unwrap().id;
    let by = Actor::Admin(EntityId::from_uuid(UserId::new().as_uuid()));
    w.ledger.erase_wallets(&by, carol).await.unwrap();
    let d = w.dispatcher(config());
    w.drain(&d).await;
    assert!(!w.receiver.numbers(sink.id).contains_key(&c.to_string()));
    assert_eq!(w.receiver.numbers(sink.id)[&a.to_string()], vec![1, 2]);
    let erased: Vec<i64> = w
        .stores
        .outbox
        .attempts(sink.id, None, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.wallet == c)
        .map(|x| {
            assert_eq!(x.outcome, Outcome::Erased);
            x.seq
        })
        .collect();
    assert_eq!(erased.len(), w.events(c).await.len());
    assert_eq!(
        w.stores
            .outbox
            .backlog(w.clock.unix_micros())
            .await
            .unwrap()
            .pending,
        0
    );
}

/// Pruning deletes events every sink has had and that are older than the retention, keeps
/// those a (disabled) sink still waits for until they expire, and delivery goes on after it.
pub async fn pruning_keeps_what_a_sink_still_needs(backend: &dyn Backend) {
    let w = world(backend).await;
    let live = w.sink(vec![]).await;
    let mut off = w.sink(vec![]).await;
    off.enabled = false;
    w.stores.outbox.put_sink(&off).await.unwrap();
    let owner = UserId::new();
    let a = w.wallet(owner, 100).await;
    let d = w.dispatcher(config());
    w.drain(&d).await;
    assert_eq!(w.receiver.numbers(live.id)[&a.to_string()], vec![1, 2]);
    w.clock.advance(Duration::from_secs(3600));
    let now = w.clock.unix_micros();
    let store = &w.stores.outbox;
    assert_eq!(
        store.prune(now, 0, 100).await.unwrap(),
        0,
        "the disabled sink waits for both"
    );
    assert_eq!(w.events(a).await.len(), 2);
    store.delete_sink(off.id).await.unwrap();
    assert_eq!(store.prune(now, 0, 100).await.unwrap(), 2);
    assert!(w.events(a).await.is_empty());
    // Numbering and delivery go on.
    w.ledger.deposit(owner, a, &req(1, "after")).await.unwrap();
    w.drain(&d).await;
    assert_eq!(w.receiver.numbers(live.id)[&a.to_string()], vec![1, 2, 3]);
    // Past the hard retention, even what a sink waits for goes, and the sink skips the gap.
    w.receiver.fail(live.id, 1);
    w.ledger.deposit(owner, a, &req(1, "lost")).await.unwrap();
    w.drain(&d).await;
    w.clock.advance(Duration::from_secs(3600));
    let now = w.clock.unix_micros();
    assert_eq!(store.prune(now, now, 100).await.unwrap(), 2);
    w.ledger.deposit(owner, a, &req(1, "next")).await.unwrap();
    w.drain(&d).await;
    assert_eq!(
        w.receiver.numbers(live.id)[&a.to_string()],
        vec![1, 2, 3, 5]
    );
}

//! `kill -9` during delivery: the real `coffer-worker run` delivers the outbox's events to a
//! webhook receiver that verifies every request with the Standard Webhooks reference library
//! (`standardwebhooks` from PyPI, `fixtures/webhook_receiver.py`) and refuses some first
//! attempts on purpose, and publishes them to a NATS JetStream stream, while money moves in
//! this process; the worker is killed at random points and restarted. Afterwards every event
//! reached the receiver at least once, every request verified, a repeat carries the same
//! `webhook-id`, and each wallet's events were first accepted in their order; and the stream,
//! read with the NATS client, holds every event exactly once (JetStream dropped the repeats by
//! `Nats-Msg-Id`), each wallet's in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer_outbox::{SigningSecrets, Sink, Target, WebhookUrl};
use common::{Database, Fixture, money, pin};
use rand::RngExt as _;
use serde_json::Value;

/// The venv's Python that `cargo xtask test` installs `standardwebhooks` into.
fn python() -> PathBuf {
    std::env::var_os("COFFER_SERVICES_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/services-venv/bin/python"),
        PathBuf::from,
    )
}

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &Path, secret: &str) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhook_receiver.py");
        let (port_file, log) = (dir.join("receiver.port"), dir.join("receiver.log"));
        let mut child = Command::new(python())
            .arg(&script)
            .args([secret, port_file.to_str().unwrap(), log.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (run `cargo xtask test`, which installs standardwebhooks): {e}",
                    python().display()
                )
            });
        let started = Instant::now();
        while !port_file.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("the receiver exited ({status}); is standardwebhooks installed? {err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .parse()
            .unwrap();
        Self { child, log, port }
    }

    fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn accepted(&self) -> usize {
        self.entries()
            .iter()
            .filter(|e| e["accepted"] == true)
            .count()
    }
}

fn nats_url() -> String {
    std::env::var("COFFER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// This test's stream: a name and subject prefix of its own.
struct Stream {
    name: String,
    prefix: String,
}

/// The worker's `run`, delivering quickly, with short leases and retries, to the webhook and
/// to `stream`.
fn worker(f: &Fixture, stream: &Stream, n: usize) -> Child {
    let log = std::fs::File::create(f.dir.path().join(format!("worker-{n}.log"))).unwrap();
    f.worker(&["run"])
        .env("COFFER_WORKER__POLL_SECS", "3600")
        .env("COFFER_EVENTS__ALLOW_PRIVATE_ADDRESSES", "true")
        .env("COFFER_EVENTS__ALLOW_HTTP", "true")
        .env("COFFER_EVENTS__POLL_MILLIS", "20")
        .env("COFFER_EVENTS__TIMEOUT_SECS", "1")
        .env("COFFER_EVENTS__LEASE_SECS", "3")
        .env("COFFER_EVENTS__EVENTS_PER_CLAIM", "4")
        .env("COFFER_EVENTS__CLAIM_BATCH", "8")
        .env("COFFER_EVENTS__RETRY_FIRST_SECS", "1")
        .env("COFFER_EVENTS__RETRY_MAX_INTERVAL_SECS", "1")
        .env(
            "COFFER_EVENTS__NATS",
            format!(
                "{{ url = \"{}\", stream = \"{}\", subject_prefix = \"{}\" }}",
                nats_url(),
                stream.name,
                stream.prefix
            ),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn killed_during_delivery(db: Database) {
    let f = Fixture::new(db).await;
    let url = WebhookUrl::parse("http://127.0.0.1:1/placeholder", true).unwrap();
    let mut sink = Sink::new(Target::Webhook(url), vec![], 0);
    let secret = SigningSecrets::new(f.app.secrets.clone())
        .create(&mut sink)
        .await
        .unwrap();
    let receiver = Receiver::start(f.dir.path(), &secret.expose_text());
    let url = format!("http://127.0.0.1:{}/hook", receiver.port);
    sink.target = Target::Webhook(WebhookUrl::parse(&url, true).unwrap());
    f.app.outbox_store.put_sink(&sink).await.unwrap();
    // The stream's sink, as the worker makes it, registered before any event is written.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = Stream {
        name: format!("COFFER_KILL_{tag}"),
        prefix: format!("coffer-kill.{tag}"),
    };
    let prefix = coffer_outbox::SubjectPrefix::parse(&stream.prefix).unwrap();
    f.app
        .outbox_store
        .put_sink(&Sink::stream(&stream.name, prefix, 0))
        .await
        .unwrap();

    let (owner, wallets) = f.wallets(6).await;
    let ledger = f.app.state.ledger.clone();
    let pairs: Vec<_> = {
        let mut rng = rand::rng();
        (0..120)
            .map(|_| {
                let pick =
                    |rng: &mut rand::rngs::ThreadRng| wallets[rng.random_range(0..wallets.len())];
                (pick(&mut rng), pick(&mut rng))
            })
            .collect()
    };
    let moving = tokio::spawn(async move {
        for (i, (from, to)) in pairs.into_iter().enumerate() {
            let request = money(1, None, &format!("t{i}"));
            let _ = if from == to {
                ledger.deposit(owner, from, &request).await.map(|_| ())
            } else {
                ledger
                    .transfer(owner, from, to, &pin(), &request, Default::default())
                    .await
                    .map(|_| ())
            };
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });

    // Killed at random points: after a random number of further deliveries, or a random
    // moment from its start (start-up, its first round).
    let mut rng = rand::rng();
    for n in 0..6 {
        let mut child = worker(&f, &stream, n);
        let started = Instant::now();
        let (from, further) = (receiver.accepted(), rng.random_range(1..25));
        let after = Duration::from_millis(rng.random_range(100..1500));
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the worker exited by itself"
            );
            let done = if n % 2 == 0 {
                receiver.accepted() >= from + further || started.elapsed() >= Duration::from_secs(5)
            } else {
                started.elapsed() >= after
            };
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    moving.await.unwrap();

    // The last run delivers the rest (the leases the killed ones held lapse first).
    let mut expected: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    let written = f
        .app
        .state
        .ledger
        .store()
        .events_after(None, 100_000)
        .await
        .unwrap();
    for e in written {
        expected
            .entry(e.wallet.to_string())
            .or_default()
            .push((e.seq, e.id.to_string()));
    }
    let total: usize = expected.values().map(Vec::len).sum();
    let mut last = worker(&f, &stream, 99);
    let started = Instant::now();
    loop {
        let mut got: Vec<(String, i64)> = receiver
            .entries()
            .iter()
            .filter(|e| e["accepted"] == true)
            .map(|e| {
                (
                    e["wallet"].as_str().unwrap().to_owned(),
                    e["sequence"].as_i64().unwrap(),
                )
            })
            .collect();
        got.sort();
        got.dedup();
        if got.len() >= total && stored(&stream).await >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {total} events delivered",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();

    let entries = receiver.entries();
    let bad: Vec<&Value> = entries.iter().filter(|e| e.get("bad").is_some()).collect();
    assert!(bad.is_empty(), "requests that did not verify: {bad:?}");
    let refused = entries.iter().filter(|e| e["accepted"] == false).count();
    assert!(refused > 0, "the receiver refused some first attempts");
    // Per wallet: every event, the same webhook-id on every repeat, first accepted in order.
    for (wallet, events) in &expected {
        let mine: Vec<&Value> = entries
            .iter()
            .filter(|e| e["wallet"].as_str() == Some(wallet.as_str()))
            .collect();
        let mut first_accepted: Vec<i64> = Vec::new();
        for e in &mine {
            let seq = e["sequence"].as_i64().unwrap();
            let (_, id) = events.iter().find(|(s, _)| *s == seq).unwrap();
            assert_eq!(
                e["id"].as_str(),
                Some(id.as_str()),
                "webhook-id is the event's"
            );
            assert_eq!(e["event_id"].as_str(), Some(id.as_str()));
            if e["accepted"] == true && !first_accepted.contains(&seq) {
                first_accepted.push(seq);
            }
        }
        let numbers: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            first_accepted, numbers,
            "wallet {wallet}: each event, in order"
        );
    }

    // The stream, read back: every event once, each wallet's in order.
    let js = jetstream().await;
    let s = js.get_stream(&stream.name).await.unwrap();
    let mut in_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for seq in 1..=u64::try_from(total).unwrap() {
        let m = s.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
        assert!(ids.insert(id.clone()), "{id} twice in the stream");
        let wallet = m.subject.as_str().rsplit('.').next().unwrap().to_owned();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["data"]["event_id"].as_str(), Some(id.as_str()));
        in_stream.entry(wallet).or_default().push(id);
    }
    assert_eq!(stored(&stream).await, total, "nothing beyond the events");
    for (wallet, events) in &expected {
        let ids: Vec<String> = events.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(
            in_stream.get(wallet),
            Some(&ids),
            "wallet {wallet} in the stream"
        );
    }
    js.delete_stream(&stream.name).await.unwrap();
}

async fn jetstream() -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap())
}

/// Messages in `stream` (0 while the worker has not created it).
async fn stored(stream: &Stream) -> usize {
    match jetstream().await.get_stream(&stream.name).await {
        Ok(mut s) => usize::try_from(s.info().await.unwrap().state.messages).unwrap(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_survives_kill_9_on_postgres() {
    killed_during_delivery(Database::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_survives_kill_9_on_sqlite() {
    killed_during_delivery(Database::Sqlite).await;
}

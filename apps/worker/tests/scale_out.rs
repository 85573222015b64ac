//! The production shape on one machine: two `coffer-api` replicas and a `coffer-worker` on
//! Postgres, Redis (shared revocation list and rate limits) and OpenBao Transit, behind nginx as
//! the load balancer. A bank workload runs through nginx (clients transferring among each
//! other's wallets with idempotency keys, retrying the same key on any error) while one replica
//! is killed with SIGKILL and restarted. Afterwards: money is conserved, no balance is negative,
//! every acknowledged transfer is in the ledger exactly once, a rate limit holds across both
//! replicas, a revoked token is refused by both, and `ledger verify` and `audit verify` pass.
//!
//! Needs nginx (`cargo xtask test` installs Debian's package when missing), the OpenBao of
//! `COFFER_TEST_VAULT_ADDR`/`_TOKEN` (started by `cargo xtask test`), Postgres and Redis.
//! `cargo xtask scale-out` runs it alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffer_keys_vault::provision::Admin;
use coffer_keys_vault::{VaultAuth, VaultConnection};
use rand::RngExt as _;
use serde_json::{Value, json};

const PIN: &str = "582914";
const PASSWORD: &str = "correct plum tart at noon";
const CLIENTS: usize = 6;
const DEPOSIT: i64 = 1_000_000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `cargo xtask test` or `cargo xtask scale-out`, which start OpenBao")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `coffer-api` binary, built next to this package's `coffer-worker` by a workspace build.
fn api_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_coffer-worker")).with_file_name("coffer-api");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// The environment every Coffer process of this deployment shares.
struct Deployment {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Deployment {
    fn command(&self, program: &Path, args: &[&str], log: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("COFFER_")) {
            c.env_remove(k);
        }
        let log = std::fs::File::create(self.dir.path().join(log)).unwrap();
        c.current_dir(self.dir.path())
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        c
    }

    fn replica(&self, port: u16, n: usize) -> Child {
        self.command(&api_binary(), &[], &format!("api-{n}.log"))
            .env("COFFER_LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap()
    }

    fn worker(&self, args: &[&str]) -> std::process::Output {
        self.command(
            Path::new(env!("CARGO_BIN_EXE_coffer-worker")),
            args,
            "worker-cli.log",
        )
        .stdout(Stdio::piped())
        .output()
        .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

fn nginx_conf(dir: &Path, port: u16, upstreams: &[u16]) -> String {
    let servers: String = upstreams
        .iter()
        .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=1s; "))
        .collect();
    let d = dir.display();
    format!(
        "worker_processes 1; error_log {d}/nginx-error.log; pid {d}/nginx.pid; \
         events {{ worker_connections 512; }} \
         http {{ access_log off; \
           client_body_temp_path {d}/nginx-tmp; proxy_temp_path {d}/nginx-tmp; \
           fastcgi_temp_path {d}/nginx-tmp; uwsgi_temp_path {d}/nginx-tmp; scgi_temp_path {d}/nginx-tmp; \
           upstream coffer {{ {servers} keepalive 32; }} \
           server {{ listen 127.0.0.1:{port}; \
             location / {{ proxy_pass http://coffer; proxy_http_version 1.1; \
               proxy_set_header Connection \"\"; \
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; \
               proxy_connect_timeout 1s; proxy_next_upstream error timeout; \
               proxy_next_upstream_tries 2; }} }} }}"
    )
}

/// The processes this test started, killed however it ends (a failed assertion included), so
/// none keeps its database connections.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One client: its token, its wallets, the address it appears to come from.
struct Client {
    token: String,
    wallets: Vec<String>,
    ip: String,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    ip: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = http
        .request(method, url)
        .header("x-forwarded-for", ip)
        .timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Retries the same request (same idempotency key) on transport errors and 5xx until it is
/// answered otherwise.
async fn until_answered(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    ip: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call(http, method.clone(), url, token, ip, key, body.clone()).await {
            Ok((s, b)) if s < 500 => return (s, b),
            other => {
                assert!(Instant::now() < deadline, "{url} kept failing: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_nginx_survive_a_killed_replica() {
    let nginx = Path::new("/usr/sbin/nginx");
    assert!(
        nginx.exists(),
        "nginx is not installed: cargo xtask test installs Debian's nginx package"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nginx-tmp")).unwrap();
    let url = coffer_store::testing::pg_schema_url().await;
    let (vault, token) = (
        env("COFFER_TEST_VAULT_ADDR"),
        env("COFFER_TEST_VAULT_TOKEN"),
    );
    let admin = Admin::connect(VaultConnection::new(
        vault.clone(),
        VaultAuth::Token(secrecy::SecretString::from(token.clone())),
    ))
    .await
    .unwrap();
    admin
        .enable_secrets("transit", "transit", json!({}))
        .await
        .unwrap();
    let key = format!("scale-out-{}", uuid::Uuid::new_v4().simple());
    let redis = std::env::var("COFFER_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let high = "{ limit = 100000, period_secs = 60 }";
    let deployment = Deployment {
        dir,
        vars: vec![
            ("COFFER_DATABASE_URL".into(), url),
            ("COFFER_DATABASE__MIGRATE".into(), "false".into()),
            ("COFFER_REDIS_URL".into(), redis),
            ("COFFER_KEYS__PROVIDER".into(), "vault-transit".into()),
            ("COFFER_KEYS__KEY_ID".into(), key),
            ("COFFER_VAULT__ADDRESS".into(), vault),
            ("COFFER_VAULT__AUTH".into(), "token".into()),
            ("COFFER_VAULT__TOKEN".into(), token),
            ("COFFER_VAULT__CREATE_KEY".into(), "true".into()),
            ("COFFER_LEDGER__KDF_ITERATIONS".into(), "10000".into()),
            ("COFFER_AUTH__ARGON2_MEMORY_KIB".into(), "1024".into()),
            ("COFFER_AUTH__ARGON2_ITERATIONS".into(), "1".into()),
            (
                "COFFER_RATE_LIMIT__TRUSTED_PROXIES".into(),
                "[\"127.0.0.1/32\"]".into(),
            ),
            (
                "COFFER_RATE_LIMIT__POLICIES".into(),
                format!(
                    "{{ login = {{ limit = 5, period_secs = 60 }}, per_ip = {high}, per_user = {high}, money_out = {high}, write = {high}, read = {high}, register = {high} }}"
                ),
            ),
            ("COFFER_WORKER__POLL_SECS".into(), "1".into()),
        ],
    };
    // Migrations once, as an operator would, before the replicas start.
    let migrated = deployment
        .command(&api_binary(), &["migrate"], "migrate.log")
        .status()
        .unwrap();
    assert!(migrated.success(), "{}", deployment.log("migrate.log"));

    let http = reqwest::Client::new();
    let ports = [free_port(), free_port()];
    let mut procs = Processes(vec![deployment.replica(ports[0], 1)]);
    wait_healthy(&http, &format!("http://127.0.0.1:{}", ports[0])).await;
    procs.0.push(deployment.replica(ports[1], 2));
    wait_healthy(&http, &format!("http://127.0.0.1:{}", ports[1])).await;
    procs.0.push(
        deployment
            .command(
                Path::new(env!("CARGO_BIN_EXE_coffer-worker")),
                &[],
                "worker.log",
            )
            .spawn()
            .unwrap(),
    );
    let lb_port = free_port();
    std::fs::write(
        deployment.dir.path().join("nginx.conf"),
        nginx_conf(deployment.dir.path(), lb_port, &ports),
    )
    .unwrap();
    let lb = Command::new(nginx)
        .args(["-p", &deployment.dir.path().display().to_string()])
        .args([
            "-c",
            &deployment
                .dir
                .path()
                .join("nginx.conf")
                .display()
                .to_string(),
        ])
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(lb);
    let base = format!("http://127.0.0.1:{lb_port}");
    wait_healthy(&http, &base).await;

    // Clients, each from an address of its own (of this run's), with two funded wallets.
    let run: u16 = rand::rng().random_range(1..u16::MAX);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let ip = format!("2001:db8:{run:x}:{c}::1");
        let email = format!("client{c}@example.com");
        let (s, b) = until_answered(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/auth/register"),
            None,
            &ip,
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = until_answered(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/auth/login"),
            None,
            &ip,
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let token = b["access_token"].as_str().unwrap().to_owned();
        let mut wallets = Vec::new();
        for w in 0..2 {
            let (s, b) = until_answered(
                &http,
                reqwest::Method::POST,
                &format!("{base}/v1/wallets"),
                Some(&token),
                &ip,
                None,
                Some(json!({ "currency": "USD", "pin": PIN })),
            )
            .await;
            assert_eq!(s, 201, "{b}");
            let id = b["id"].as_str().unwrap().to_owned();
            let (s, b) = until_answered(
                &http,
                reqwest::Method::POST,
                &format!("{base}/v1/wallets/{id}/deposits"),
                Some(&token),
                &ip,
                Some(&format!("seed-{c}-{w}")),
                Some(json!({ "amount": DEPOSIT, "currency": "USD" })),
            )
            .await;
            assert_eq!(s, 201, "{b}");
            wallets.push(id);
        }
        clients.push(Client { token, wallets, ip });
    }
    let everyone: Vec<String> = clients.iter().flat_map(|c| c.wallets.clone()).collect();
    let clients = Arc::new(clients);

    // The workload: random transfers among everyone's wallets, each retried under its key
    // until it is answered; acknowledged ones are recorded with their transaction ids.
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (clients, everyone, running, http, base) = (
            clients.clone(),
            everyone.clone(),
            running.clone(),
            http.clone(),
            base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let me = &clients[c];
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while running.load(Ordering::Relaxed) {
                i += 1;
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    let from = me.wallets[rng.random_range(0..me.wallets.len())].clone();
                    let mut to = everyone[rng.random_range(0..everyone.len())].clone();
                    while to == from {
                        to = everyone[rng.random_range(0..everyone.len())].clone();
                    }
                    (from, to, rng.random_range(1..1_000i64))
                };
                let key = format!("load-{c}-{i}");
                let (s, b) = until_answered(
                    &http,
                    reqwest::Method::POST,
                    &format!("{base}/v1/wallets/{from}/transfers"),
                    Some(&me.token),
                    &me.ip,
                    Some(&key),
                    Some(json!({ "to_wallet_id": to, "amount": amount, "currency": "USD", "pin": PIN })),
                )
                .await;
                assert_eq!(s, 201, "transfer {key}: {b}");
                acknowledged.push((key, b["id"].as_str().unwrap().to_owned()));
            }
            acknowledged
        }));
    }

    // Kill one replica mid-run, restart it a second later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    procs.0[0].kill().unwrap(); // SIGKILL
    procs.0[0].wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    procs.0[0] = deployment.replica(ports[0], 3);
    wait_healthy(&http, &format!("http://127.0.0.1:{}", ports[0])).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 50,
        "the workload ran: {} transfers",
        acknowledged.len()
    );

    // Money is conserved and no balance is negative.
    let mut total = 0i64;
    for c in clients.iter() {
        let (s, b) = until_answered(
            &http,
            reqwest::Method::GET,
            &format!("{base}/v1/wallets"),
            Some(&c.token),
            &c.ip,
            None,
            None,
        )
        .await;
        assert_eq!(s, 200, "{b}");
        for w in b["items"].as_array().unwrap() {
            let balance = w["balance"].as_i64().unwrap();
            assert!(balance >= 0, "{w}");
            total += balance;
        }
    }
    assert_eq!(total, DEPOSIT * i64::try_from(everyone.len()).unwrap());
    // Every acknowledged transfer is in the ledger exactly once.
    let ids: std::collections::BTreeSet<&str> =
        acknowledged.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        acknowledged.len(),
        "no two keys share a transaction"
    );
    let pool = sqlx::PgPool::connect(&deployment.vars[0].1).await.unwrap();
    let in_ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE kind = 'transfer'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        usize::try_from(in_ledger).unwrap(),
        acknowledged.len(),
        "the ledger holds exactly the acknowledged transfers"
    );
    let keyed: BTreeMap<String, String> = sqlx::query_as::<_, (String, uuid::Uuid)>(
        "SELECT idempotency_key, id FROM transactions WHERE kind = 'transfer'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(k, id)| (k, id.to_string()))
    .collect();
    for (key, id) in &acknowledged {
        assert_eq!(keyed.get(key), Some(id), "{key}");
    }

    // A rate limit holds across both replicas: nginx spreads the logins of one address over
    // them, and only five per minute get through.
    // An address of this run's own (budgets in Redis outlive a run).
    let probe = format!(
        "2001:db8:{:x}:ffff::1",
        rand::rng().random_range(1..u16::MAX)
    );
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (s, _) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/auth/login"),
            None,
            &probe,
            None,
            Some(json!({ "email": "client0@example.com", "password": "not the password at all" })),
        )
        .await
        .unwrap();
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "five logins per minute from one address, whichever replica answers: {statuses:?}"
    );

    // A token revoked through one replica is refused by both.
    let c = &clients[1];
    let (s, _) = call(
        &http,
        reqwest::Method::POST,
        &format!("http://127.0.0.1:{}/v1/auth/logout", ports[1]),
        Some(&c.token),
        &c.ip,
        None,
        Some(json!({})),
    )
    .await
    .unwrap();
    assert!(s == 204 || s == 200, "logout answered {s}");
    for port in ports {
        let (s, _) = call(
            &http,
            reqwest::Method::GET,
            &format!("http://127.0.0.1:{port}/v1/me"),
            Some(&c.token),
            &c.ip,
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(s, 401, "replica on {port} refuses the revoked token");
    }

    // The books and the audit trail verify.
    let out = deployment.worker(&["ledger", "verify"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        deployment.log("worker-cli.log")
    );
    let out = deployment.worker(&["audit", "verify"]);
    assert!(out.status.success(), "{}", deployment.log("worker-cli.log"));

    drop(procs);
}

//! Starts the real server (the same `coffer_app` composition and router the binary serves) on a
//! random port, against SQLite in a temporary directory or a fresh Postgres schema, and drives it
//! over HTTP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::SocketAddr;

use coffer_app::{App, Config};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct plum tart at noon";
pub const PIN: &str = "493817";

/// A running server.
pub struct Server {
    pub base: String,
    pub client: Client,
    pub app_state: coffer_http::api::ApiState,
    /// The outbox's delivery, as the worker runs it (tests run its rounds).
    pub outbox: std::sync::Arc<coffer_outbox::Dispatcher>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    config: Config,
    _dir: tempfile::TempDir,
}

/// Which database.
#[derive(Debug, Clone, Copy)]
pub enum Database {
    Sqlite,
    Postgres,
}

fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.database.url = format!("sqlite://{}", dir.join("coffer.db").display());
    c.keys.key_file = dir.join("master.json");
    // Cheap KDF and Argon2 for tests; the defaults are the production costs.
    c.ledger.kdf_iterations = coffer_crypto::pin::MIN_ITERATIONS;
    c.auth.argon2_memory_kib = 1024;
    c.auth.argon2_iterations = 1;
    c.server.body_limit_bytes = 16 * 1024;
    // Tests register and log in many users from one address; the rate-limit test turns it on.
    c.rate_limit.enabled = false;
    c
}

impl Server {
    pub async fn start(db: Database) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Database, edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        if let Database::Postgres = db {
            config.database.url = coffer_store::testing::pg_schema_url().await;
        }
        edit(&mut config);
        Self::serve(config, dir).await
    }

    /// Another replica on this server's database and master key, as a second process is.
    pub async fn replica(&self) -> Self {
        self.replica_with(|_| {}).await
    }

    /// Another replica, its configuration edited (settings that may differ between processes).
    pub async fn replica_with(&self, edit: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        edit(&mut config);
        Self::serve(config, tempfile::tempdir().unwrap()).await
    }

    async fn serve(config: Config, dir: tempfile::TempDir) -> Self {
        let app = App::build(config.clone(), "coffer-api")
            .await
            .expect("the app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = app.router();
        let app_state = app.state.clone();
        let outbox = app.outbox.clone();
        let task = tokio::spawn(async move {
            coffer_app::serve(router, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
            app.shutdown().await;
        });
        Self {
            base: format!("http://{addr}"),
            client: Client::new(),
            app_state,
            outbox,
            shutdown: Some(tx),
            task: Some(task),
            config,
            _dir: dir,
        }
    }

    /// Stops the server the way SIGTERM does: requests in flight finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// A request; returns the status and the JSON body (`Value::Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let problem = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
        assert!(
            resp.headers().contains_key("x-request-id"),
            "every response has a request id"
        );
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        assert!(
            !status.is_server_error(),
            "{path} answered {status}: {value}"
        );
        if status.is_client_error() {
            assert!(problem, "{path}: a {status} is a problem document: {value}");
            assert!(
                value["code"].is_string(),
                "{path}: problems carry a code: {value}"
            );
        }
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body), &[]).await
    }

    /// A money POST with an Idempotency-Key.
    pub async fn money(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            path,
            Some(token),
            Some(body),
            &[("idempotency-key", key)],
        )
        .await
    }

    /// Registers and logs in; returns (user id, access token, refresh token).
    pub async fn user(&self, email: &str) -> (String, String, String) {
        let (s, b) = self
            .post(
                "/v1/auth/register",
                None,
                json!({ "email": email, "password": PASSWORD, "phone": "+442079460958", "tax_id": "DE123456789" }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["user_id"].as_str().unwrap().to_owned();
        let (access, refresh) = self.login(email).await;
        (id, access, refresh)
    }

    pub async fn login(&self, email: &str) -> (String, String) {
        let (s, b) = self
            .post(
                "/v1/auth/login",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["token_type"], "Bearer");
        (
            b["access_token"].as_str().unwrap().to_owned(),
            b["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// An administrator (roles set through the service, as `coffer-api admin create` does).
    pub async fn admin(&self, email: &str) -> String {
        self.with_role(email, "admin").await
    }

    /// A new user holding only `role` (set through the service), signed in: its access token.
    pub async fn with_role(&self, email: &str, role: &str) -> String {
        let (id, _, _) = self.user(email).await;
        let id = coffer_auth::user::UserId::parse(&id).unwrap();
        self.app_state
            .accounts
            .set_roles(
                coffer_auth::user::UserId::from_uuid(uuid::Uuid::nil()),
                id,
                &[role.to_owned()],
                &coffer_auth::accounts::RequestContext::default(),
            )
            .await
            .unwrap();
        self.login(email).await.0
    }

    /// Opens a wallet; returns its id.
    pub async fn wallet(&self, token: &str, currency: &str) -> String {
        let (s, b) = self
            .post(
                "/v1/wallets",
                Some(token),
                json!({ "currency": currency, "pin": PIN }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

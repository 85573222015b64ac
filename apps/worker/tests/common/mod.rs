//! A database (SQLite in a temporary directory, or a fresh Postgres schema) with a key file,
//! opened in-process as the API would (to make users, wallets and money), and the real
//! `coffer-worker` binary pointed at the same database and key file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use coffer_app::{App, Config};
use coffer_auth::accounts::{Credentials, Registration, RequestContext};
use coffer_auth::user::UserId as AuthUserId;
use coffer_ledger::{Currency, MoneyRequest, Pin, UserId, WalletId, parse_pin};

pub const PIN: &str = "493817";
pub const PASSWORD: &str = "correct plum tart at noon";

/// [`PIN`], parsed as a client's request is.
pub fn pin() -> Pin {
    parse_pin(PIN).unwrap()
}

/// A request for `amount_minor` US cents, parsed as a client's is.
pub fn money(amount_minor: i64, memo: Option<&str>, key: &str) -> MoneyRequest {
    MoneyRequest::parse(amount_minor, "USD", memo, key, i64::MAX).unwrap()
}

/// Which database.
#[derive(Debug, Clone, Copy)]
pub enum Database {
    Sqlite,
    Postgres,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub key_file: PathBuf,
    pub app: App,
}

pub fn config(url: &str, key_file: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.database.url = url.to_owned();
    c.keys.key_file = key_file.to_path_buf();
    // The cheapest PIN KDF and Argon2 the services accept; production uses the defaults.
    c.ledger.kdf_iterations = coffer_crypto::pin::MIN_ITERATIONS;
    c.auth.argon2_memory_kib = 1024;
    c.auth.argon2_iterations = 1;
    c.rate_limit.enabled = false;
    c.worker.retire_grace_secs = 0;
    // `wallets(n)` opens all of them for one owner.
    c.ledger.max_wallets_per_user = 1_000;
    c
}

impl Fixture {
    pub async fn new(db: Database) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match db {
            Database::Sqlite => format!("sqlite://{}", dir.path().join("coffer.db").display()),
            Database::Postgres => coffer_store::testing::pg_schema_url().await,
        };
        let key_file = dir.path().join("master.json");
        let app = App::build(config(&url, &key_file), "coffer-worker")
            .await
            .expect("the app builds");
        Self {
            dir,
            url,
            key_file,
            app,
        }
    }

    /// The worker binary on this database and key file, nothing of the machine's
    /// configuration let in.
    pub fn worker(&self, args: &[&str]) -> Command {
        let mut c = self.command(env!("CARGO_BIN_EXE_coffer-worker"));
        c.args(args);
        c
    }

    /// The worker command `words` on a pseudo-terminal (`script`), as an operator types it:
    /// what the terminal shows is its standard output.
    pub fn on_terminal(&self, words: &str) -> Command {
        let line = format!("{} {words}", env!("CARGO_BIN_EXE_coffer-worker"));
        let mut c = self.command("script");
        c.args(["-qec", &line, "/dev/null"]);
        c
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("COFFER_")) {
            c.env_remove(k);
        }
        c.current_dir(self.dir.path())
            .env("COFFER_DATABASE_URL", &self.url)
            .env("COFFER_KEY_FILE", &self.key_file)
            .env("COFFER_WORKER__RETIRE_GRACE_SECS", "0")
            .env("COFFER_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs a worker command to its end.
    pub fn run(&self, args: &[&str]) -> Ran {
        let out = self.worker(args).output().unwrap();
        Ran(out)
    }

    /// `n` wallets of one owner, each with a deposit.
    pub async fn wallets(&self, n: usize) -> (UserId, Vec<WalletId>) {
        let ledger = &self.app.state.ledger;
        let owner = UserId::new();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let w = ledger
                .open_wallet(owner, Currency::parse("USD").unwrap(), &pin())
                .await
                .unwrap()
                .id;
            ledger
                .deposit(owner, w, &money(10_000, None, &format!("fund-{i}")))
                .await
                .unwrap();
            out.push(w);
        }
        (owner, out)
    }

    /// Registers a user and logs in: their id and access token.
    pub async fn user(&self, email: &str) -> (AuthUserId, String) {
        let accounts = &self.app.state.accounts;
        let ctx = RequestContext::default();
        let id = accounts
            .register(
                Registration {
                    email,
                    password: PASSWORD,
                    phone: None,
                    tax_id: None,
                },
                &ctx,
            )
            .await
            .unwrap();
        let session = accounts
            .login(
                Credentials {
                    email,
                    password: PASSWORD,
                    totp: None,
                    client_id: "tests",
                },
                &ctx,
            )
            .await
            .unwrap();
        (id, session.access_token.to_string())
    }

    /// Data keys per master key version, all tables.
    pub async fn keys_by_version(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        for set in self.app.rotation.overview().await.unwrap().keys {
            for (v, n) in set.by_kek_version {
                *out.entry(v).or_default() += n;
            }
        }
        out
    }
}

/// A finished command.
pub struct Ran(pub Output);

impl Ran {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

//! `cargo xtask schemathesis` (also the last step of `cargo xtask test`): the API fuzzed against
//! its own OpenAPI document.
//!
//! The debug `coffer-api` is started on a free loopback port with the embedded defaults (SQLite
//! and a key file) in a fresh temporary data directory, its rate limits raised so the fuzzer
//! meets the handlers rather than 429s (429 stays documented). An administrator is created with
//! `coffer-api admin create`, a user registered, and both signed in; the user opens two wallets
//! and deposits into one. Those ids (wallets, the deposit, the user), a currency, a PIN and a few
//! amounts go into schemathesis's dictionaries, which it uses for most generated values, so the
//! requests also reach the handlers' success paths rather than only their refusals. Then
//! schemathesis (pinned, from target/services-venv) runs `/openapi.json` with the checks
//! [`CHECKS`] for each token:
//! every operation but the ones that end the token's sessions (or, for the administrator,
//! change their own roles) for [`MAIN_SECONDS`], then those operations alone for
//! [`SESSION_SECONDS`], last, since after them the token answers only 401. Any failure fails the
//! step; the server and the data directory go when it ends.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::services;

/// The checks: no 5xx, and every status, content type and body as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// Operations that end the caller's sessions or change its roles: fuzzed last.
const SESSION_ENDING: &[&str] = &[
    "logout",
    "revoke_all",
    "change_password",
    "set_roles",
    "revoke_user_sessions",
];

/// Seconds of fuzzing per token over the other operations.
const MAIN_SECONDS: u32 = 50;
/// Seconds per token over [`SESSION_ENDING`].
const SESSION_SECONDS: u32 = 10;

const USER_EMAIL: &str = "fuzz-user@example.com";
const USER_PASSWORD: &str = "a long user password for fuzzing";
const ADMIN_EMAIL: &str = "fuzz-admin@example.com";
const ADMIN_PASSWORD: &str = "a long admin password for fuzzing";
const PIN: &str = "493817";

/// schemathesis's configuration: dictionaries of real ids and valid values, each used for 70%
/// of the generated values of the members they are bound to.
fn schemathesis_config(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("{id:?}")).collect();
    let mut config = format!(
        "[dictionaries.ids]\nvalues = [{}]\n\
         [dictionaries.currencies]\nvalues = [\"USD\", \"EUR\"]\n\
         [dictionaries.pins]\nvalues = [\"{PIN}\", \"123456\"]\n\
         [dictionaries.amounts]\nvalues = [1, 250, 2500]\n\
         [parameters]\n",
        quoted.join(", ")
    );
    for (member, dictionary) in [
        ("path.id", "ids"),
        ("body.to_wallet_id", "ids"),
        ("body.currency", "currencies"),
        ("body.pin", "pins"),
        ("body.old_pin", "pins"),
        ("body.new_pin", "pins"),
        ("body.amount", "amounts"),
    ] {
        config.push_str(&format!(
            "\"{member}\" = {{ dictionary = \"{dictionary}\", probability = 0.7 }}\n"
        ));
    }
    config
}

/// Every policy at a million requests a minute: rate limiting stays on (its headers and its
/// 429 are documented) without refusing the fuzzer.
fn config() -> String {
    let policies = [
        "per_ip",
        "per_user",
        "per_api_key",
        "login",
        "register",
        "refresh",
        "money_out",
        "write",
        "read",
        "admin",
    ];
    policies
        .iter()
        .map(|p| format!("[rate_limit.policies.{p}]\nlimit = 1000000\nperiod_secs = 60\n"))
        .collect()
}

/// A directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("coffer-schemathesis-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One HTTP/1.1 POST with a JSON body and `headers`; the status and the body.
fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<(u16, String)> {
    let body = body.to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("POST {path}: not an HTTP answer: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// POSTs and takes the member `field` of the answer, which must have status `expect`.
fn post_for(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    expect: u16,
    field: &str,
) -> Result<String> {
    let (status, answer) = post_json(addr, path, headers, body)?;
    if status != expect {
        bail!("POST {path} answered {status}: {answer}");
    }
    let answer: serde_json::Value = serde_json::from_str(&answer)
        .with_context(|| format!("POST {path}: not JSON: {answer:?}"))?;
    answer[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("POST {path}: no {field} in {answer}"))
}

/// Signs in; the access token.
fn login(addr: SocketAddr, email: &str, password: &str) -> Result<String> {
    let credentials = serde_json::json!({ "email": email, "password": password });
    post_for(
        addr,
        "/v1/auth/login",
        &[],
        &credentials,
        200,
        "access_token",
    )
}

/// One schemathesis run with `token`; fails when it reports any failure.
fn fuzz(
    bin: &Path,
    config: &Path,
    cwd: &Path,
    url: &str,
    who: &str,
    token: &str,
    session_ending: bool,
) -> Result<()> {
    let seconds = if session_ending {
        SESSION_SECONDS
    } else {
        MAIN_SECONDS
    };
    let mut cmd = Command::new(bin.join("schemathesis"));
    cmd.current_dir(cwd)
        .arg("--config-file")
        .arg(config)
        .args(["run", url, "--checks", CHECKS])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args([
            "--generation-with-security-parameters",
            "false",
            "--generation-database",
            "none",
            "--workers",
            "2",
            "--max-examples",
            "50",
            "--no-color",
        ])
        .arg("--max-time")
        .arg(seconds.to_string());
    let filter = if session_ending {
        "--include-operation-id"
    } else {
        "--exclude-operation-id"
    };
    for op in SESSION_ENDING {
        cmd.args([filter, op]);
    }
    let which = if session_ending {
        "the session-ending operations"
    } else {
        "every other operation"
    };
    crate::step(&format!("schemathesis: {who}'s token, {which}"), &mut cmd)
}

/// The step: see the [module documentation](self).
pub fn run() -> Result<()> {
    // The binary the test step builds (the same command, so after it this is a no-op): a plain
    // `cargo build -p coffer-api` resolves other features and rebuilds most of the tree.
    crate::step(
        "build coffer-api",
        crate::cargo().args([
            "test",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--no-run",
        ]),
    )?;
    // Where cargo put it: CARGO_TARGET_DIR when set (CI keeps its build cache outside the
    // clone), else the project's target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map_or_else(
            || crate::project_root().join("target"),
            |dir| crate::project_root().join(dir),
        );
    let api = target.join("debug/coffer-api");
    // Absolute: schemathesis runs in the data directory (where it keeps its own files).
    let venv = std::fs::canonicalize(services::services_venv()?)?;
    let data = TempDir::new()?;
    let config_file = data.0.join("coffer.toml");
    std::fs::write(&config_file, config())?;
    let port = services::free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let coffer_api = || {
        let mut cmd = Command::new(&api);
        cmd.arg("--config")
            .arg(&config_file)
            .env("COFFER_DATA_DIR", &data.0)
            .env("COFFER_LISTEN", addr.to_string())
            .env("COFFER_LOG_FORMAT", "json");
        cmd
    };

    let mut admin = coffer_api()
        .args([
            "admin",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot run coffer-api admin create")?;
    admin
        .stdin
        .take()
        .context("no stdin for coffer-api admin create")?
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())?;
    let status = admin.wait()?;
    if !status.success() {
        bail!("coffer-api admin create failed: {status}");
    }

    let server = services::spawn_server("coffer-api-schemathesis", coffer_api(), addr, "/healthz")?;
    eprintln!(
        "coffer-api: listening at {addr}, data in {}",
        data.0.display()
    );
    let user_id = post_for(
        addr,
        "/v1/auth/register",
        &[],
        &serde_json::json!({ "email": USER_EMAIL, "password": USER_PASSWORD }),
        201,
        "user_id",
    )?;
    let user = login(addr, USER_EMAIL, USER_PASSWORD)?;
    let admin = login(addr, ADMIN_EMAIL, ADMIN_PASSWORD)?;
    let bearer = format!("Bearer {user}");
    let auth = [("Authorization", bearer.as_str())];
    let wallet = serde_json::json!({ "currency": "USD", "pin": PIN });
    let a = post_for(addr, "/v1/wallets", &auth, &wallet, 201, "id")?;
    let b = post_for(addr, "/v1/wallets", &auth, &wallet, 201, "id")?;
    let deposit = post_for(
        addr,
        &format!("/v1/wallets/{a}/deposits"),
        &[auth[0], ("Idempotency-Key", "schemathesis-seed")],
        &serde_json::json!({ "amount": 1_000_000, "currency": "USD" }),
        201,
        "id",
    )?;
    let st_config = data.0.join("schemathesis.toml");
    std::fs::write(&st_config, schemathesis_config(&[a, b, deposit, user_id]))?;

    let url = format!("http://{addr}/openapi.json");
    let mut failed = Vec::new();
    for (who, token) in [("the user", &user), ("the admin", &admin)] {
        for session_ending in [false, true] {
            if let Err(e) = fuzz(&venv, &st_config, &data.0, &url, who, token, session_ending) {
                failed.push(format!("{e:#}"));
            }
        }
    }
    drop(server);
    if !failed.is_empty() {
        bail!(
            "schemathesis found failures (the server's log: target/services/coffer-api-schemathesis.log):\n  {}",
            failed.join("\n  ")
        );
    }
    Ok(())
}

//! Coffer's dev tasks: `cargo xtask <command>`. See `cargo xtask help`.
//!
//! Like rust-analyzer's xtask: plain Rust, a small flag parser, and shelling out to the tools
//! (cargo, cargo-fuzz) rather than linking them.
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

mod flags;
mod schemathesis;
mod services;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <command> [flags]

commands:
  test [--no-fuzz] [--fuzz-seconds N]
        everything CI checks: rustfmt, tidy, clippy -D warnings, every test of the workspace
        (unit, integration, contract suites, doc tests, benches in test mode), and a short run of
        each fuzz target (installs cargo-fuzz when missing). Makes sure the Postgres and Redis
        the tests use answer (COFFER_TEST_DATABASE_URL, default 127.0.0.1:5432;
        COFFER_TEST_REDIS_URL, default 127.0.0.1:6379), starting them if installed but down (and stopping what it started when done);
        runs the key-provider suites against OpenBao and moto (COFFER_TEST_VAULT_ADDR and
        _TOKEN, COFFER_TEST_KMS_URL and _AUTH_URL; otherwise it starts them on free ports,
        installing them with pip into target/services-venv when missing); checks and unit-tests
        the Prometheus alerting rules in deploy/prometheus with promtool (installing Debian's
        prometheus package when missing); last, the schemathesis step (below)
  schemathesis
        the API fuzzed against its own OpenAPI document (also part of `test`): the debug
        coffer-api on a free loopback port with the embedded defaults in a temporary data
        directory (rate limits raised), an administrator and a user signed in (the user with two
        wallets and a deposit, whose ids schemathesis reuses), then schemathesis
        (pinned, installed with pip into target/services-venv when missing) with the checks
        not_a_server_error, status_code_conformance, content_type_conformance and
        response_schema_conformance, once per token (about two minutes); any failure fails it
  tidy  the architecture's rules, checked (also part of `test`): every crate declares its layer
        ([package.metadata.coffer] layer = domain | adapter | root); domain crates depend on no
        I/O library (sqlx, redis, reqwest, axum, hyper, vaultrs, aws-*) and no adapter, features
        included; no adapter depends on another; every contract case of a testkit is in its
        macro's case list; no source file (tests included) is over 800 lines
  bench [crypto|keys|auth|audit|ledger|api|ratelimit|key-providers|rotation]...
        benchmarks (all when none named); figures go to docs/BENCHMARKS.md. `audit`, `ledger`
        and `api` need Postgres (`ledger` and `api` also its pgbench), `ratelimit` Redis, like
        the tests; `key-providers` starts OpenBao and moto as `test` does; `rotation` needs
        Postgres and starts OpenBao (1,000,000 wallets: a few minutes)
  scale-out
        two coffer-api replicas and a coffer-worker on Postgres, Redis and OpenBao behind nginx
        (installed from Debian's package when missing); a bank workload through nginx while one
        replica is killed and restarted; then money conserved, every acknowledged transfer
        once, rate limits and revocations across replicas, ledger and audit verify (also part
        of `test`)
  restore-drill
        back up a Postgres deployment (pg_dump, the key file), wipe it, restore it and run
        ledger verify, keys validate and audit verify (also part of `test`)
  fuzz [TARGET] [--seconds N]
        run a fuzz target (default: all targets, 60 s each) with cargo-fuzz on the stable
        toolchain (RUSTC_BOOTSTRAP=1)
  keygen [--out PATH] [--key-id ID]
        print a fresh master key in base64 (for COFFER_MASTER_KEY), or create a key file with
        mode 0600 at PATH (never overwrites)
  vault-setup [--key NAME]
        set a fresh Vault/OpenBao up for Coffer with an operator token (VAULT_ADDR, default
        http://127.0.0.1:8200, and VAULT_TOKEN): the transit/ and kv/ mounts, the derived Transit
        key and the KV master key NAME (default coffer-master), the policies of deploy/vault/
        (coffer-api, coffer-worker) and userpass users of those names, whose passwords come from
        COFFER_VAULT_API_PASSWORD / COFFER_VAULT_WORKER_PASSWORD or are generated and printed once.
        Repeatable: what exists is kept (passwords and policies are written again)
  help  this text
";

const FUZZ_TARGETS: &[&str] = &["envelope", "wrapped_key"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = flags::Args::from_env();
    let command = args.subcommand().unwrap_or_else(|| "help".to_owned());
    let root = project_root();
    std::env::set_current_dir(&root).context("cannot enter the project root")?;
    match command.as_str() {
        "test" => {
            let no_fuzz = args.flag("--no-fuzz");
            let fuzz_seconds = args.value("--fuzz-seconds")?.unwrap_or(20);
            args.finish()?;
            test(no_fuzz, fuzz_seconds)
        }
        "tidy" => {
            args.finish()?;
            tidy::run(&root)
        }
        "schemathesis" => {
            args.finish()?;
            schemathesis::run()
        }
        "bench" => {
            let names = args.rest()?;
            bench(&names)
        }
        "scale-out" => {
            args.finish()?;
            scale_out()
        }
        "restore-drill" => {
            args.finish()?;
            restore_drill()
        }
        "fuzz" => {
            let seconds = args.value("--seconds")?.unwrap_or(60);
            let targets = args.rest()?;
            fuzz(&targets, seconds)
        }
        "keygen" => {
            let out: Option<PathBuf> = args.value("--out")?;
            let key_id: Option<String> = args.value("--key-id")?;
            args.finish()?;
            keygen(out.as_deref(), key_id.as_deref())
        }
        "vault-setup" => {
            let key: Option<String> = args.value("--key")?;
            args.finish()?;
            vault_setup(key.as_deref().unwrap_or(coffer_keys_local::DEFAULT_KEY_ID))
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command, echoing it, failing with its name when it fails.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {name}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("{name}: cannot start {:?}", cmd.get_program()))?;
    eprintln!("<== {name}: {status} in {:.1?}", started.elapsed());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn test(no_fuzz: bool, fuzz_seconds: u64) -> Result<()> {
    let started = Instant::now();
    step("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("\n==> tidy");
    tidy::run(&project_root())?;
    // Stopped again when this function returns, if this run started them.
    let _postgres = services::ensure_postgres()?;
    let _redis = services::ensure_redis()?;
    let _nats = services::ensure_nats()?;
    // The key-provider suites run against real servers: OpenBao for Vault, moto for KMS.
    let key_servers = services::ensure_key_servers()?;
    // The scale-out test puts nginx in front of two API replicas.
    services::ensure_nginx()?;
    services::ensure_walkthrough_tools()?;
    // The docs page is rendered by a real browser.
    services::ensure_chromium()?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The webhook tests' receiver runs on the venv's Python (with `standardwebhooks`).
    let python = std::path::absolute(services::services_venv()?.join("python"))?;
    step(
        "tests",
        cargo()
            .args(["test", "--workspace", "--all-targets", "--all-features"])
            .envs(key_servers.vars.iter().map(|(k, v)| (k, v)))
            .env("COFFER_SERVICES_PYTHON", python),
    )?;
    step(
        "doc tests",
        cargo().args(["test", "--workspace", "--doc", "--all-features"]),
    )?;
    // The Kubernetes manifests against the API's schemas, offline (the schemas ship with
    // kubernetes-validate).
    let manifests: Vec<PathBuf> = std::fs::read_dir(project_root().join("deploy/k8s"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    step(
        "kubernetes-validate deploy/k8s",
        Command::new(services::services_venv()?.join("kubernetes-validate"))
            .args(["-k", "1.30.0", "--strict", "--quiet"])
            .args(&manifests),
    )?;
    services::ensure_promtool()?;
    step(
        "promtool check rules",
        Command::new("promtool")
            .current_dir(project_root().join("deploy/prometheus"))
            .args(["check", "rules", "coffer-alerts.yml"]),
    )?;
    step(
        "promtool test rules",
        Command::new("promtool")
            .current_dir(project_root().join("deploy/prometheus"))
            .args(["test", "rules", "coffer-alerts.test.yml"]),
    )?;
    if no_fuzz {
        eprintln!("\n(fuzz targets skipped: --no-fuzz)");
    } else {
        fuzz(&[], fuzz_seconds)?;
    }
    // The API against its own OpenAPI document, after everything it is built from passed.
    schemathesis::run()?;
    eprintln!(
        "\nxtask test: everything passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

fn bench(names: &[String]) -> Result<()> {
    const GROUPS: &[(&str, &[&str])] = &[
        ("crypto", &["bench", "-p", "coffer-crypto"]),
        ("keys", &["bench", "-p", "coffer-keys"]),
        ("auth", &["bench", "-p", "coffer-auth"]),
        (
            "audit",
            &["bench", "-p", "coffer-store", "--bench", "audit"],
        ),
        (
            "ledger",
            &["bench", "-p", "coffer-store", "--bench", "ledger"],
        ),
        ("api", &["bench", "-p", "coffer-api", "--bench", "api"]),
        (
            "key-providers",
            &["bench", "-p", "coffer-app", "--bench", "key_providers"],
        ),
        (
            "rotation",
            &["bench", "-p", "coffer-app", "--bench", "rotation"],
        ),
        (
            "ratelimit",
            &[
                "bench",
                "-p",
                "coffer-ratelimit",
                "-p",
                "coffer-ratelimit-redis",
            ],
        ),
    ];
    for name in names {
        if !GROUPS.iter().any(|(g, _)| g == name) {
            let known: Vec<&str> = GROUPS.iter().map(|(g, _)| *g).collect();
            bail!("unknown benchmark group {name:?} (known: {known:?})");
        }
    }
    for (group, args) in GROUPS {
        if names.is_empty() || names.iter().any(|n| n == group) {
            let _service = match *group {
                "audit" | "ledger" | "api" | "rotation" => services::ensure_postgres()?,
                "ratelimit" => services::ensure_redis()?,
                _ => None,
            };
            let key_servers = if matches!(*group, "key-providers" | "rotation") {
                services::ensure_key_servers()?
            } else {
                services::KeyServers::default()
            };
            step(
                &format!("bench {group}"),
                cargo()
                    .args(*args)
                    .envs(key_servers.vars.iter().map(|(k, v)| (k, v))),
            )?;
        }
    }
    Ok(())
}

/// The scale-out test alone: two API replicas and a worker behind nginx, one replica killed
/// and restarted under a bank workload (apps/worker/tests/scale_out.rs).
fn scale_out() -> Result<()> {
    let _postgres = services::ensure_postgres()?;
    let _redis = services::ensure_redis()?;
    let key_servers = services::ensure_key_servers()?;
    services::ensure_nginx()?;
    // The test starts coffer-api from the same target directory.
    step(
        "build",
        cargo().args(["build", "-p", "coffer-api", "-p", "coffer-worker"]),
    )?;
    step(
        "scale-out test",
        cargo()
            .args([
                "test",
                "-p",
                "coffer-worker",
                "--test",
                "scale_out",
                "--",
                "--nocapture",
            ])
            .envs(key_servers.vars.iter().map(|(k, v)| (k, v))),
    )
}

/// The restore drill alone: back up a Postgres deployment (pg_dump and the key file), wipe
/// it, restore it, verify the ledger, the keys and the audit log
/// (apps/worker/tests/restore_drill.rs).
fn restore_drill() -> Result<()> {
    let _postgres = services::ensure_postgres()?;
    step(
        "restore drill",
        cargo().args([
            "test",
            "-p",
            "coffer-worker",
            "--test",
            "restore_drill",
            "--",
            "--nocapture",
        ]),
    )
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        step(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    Ok(())
}

fn fuzz(targets: &[String], seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let targets: Vec<String> = if targets.is_empty() {
        FUZZ_TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        targets.to_vec()
    };
    for t in &targets {
        if !FUZZ_TARGETS.contains(&t.as_str()) {
            bail!("unknown fuzz target {t:?} (known: {FUZZ_TARGETS:?})");
        }
        // cargo-fuzz needs nightly-only flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable
        // toolchain, the only one on our machines, accept them.
        step(
            &format!("fuzz {t} for {seconds} s"),
            cargo()
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", t, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048"),
        )?;
    }
    Ok(())
}

fn vault_setup(key: &str) -> Result<()> {
    use coffer_keys_vault::provision::{
        API_POLICY, Admin, Plan, UserSpec, WORKER_POLICY, policy_for_key, setup,
    };
    use coffer_keys_vault::{KvSettings, TransitSettings, VaultAuth, VaultConnection};

    let addr = std::env::var("VAULT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into());
    let token = std::env::var("VAULT_TOKEN")
        .context("set VAULT_TOKEN to an operator token (one that may write sys/ and auth/)")?;
    let mut plan = Plan {
        transit: TransitSettings::new(key),
        kv: KvSettings::new(key),
        policies: vec![
            ("coffer-api".into(), policy_for_key(API_POLICY, key)),
            ("coffer-worker".into(), policy_for_key(WORKER_POLICY, key)),
        ],
        users: Vec::new(),
    };
    let mut generated = Vec::new();
    let runtime = tokio::runtime::Runtime::new()?;
    let done = runtime.block_on(async {
        let admin = Admin::connect(VaultConnection::new(
            addr.clone(),
            VaultAuth::Token(token.into()),
        ))
        .await?;
        admin.enable_auth("userpass", "userpass").await?;
        for (name, var) in [
            ("coffer-api", "COFFER_VAULT_API_PASSWORD"),
            ("coffer-worker", "COFFER_VAULT_WORKER_PASSWORD"),
        ] {
            // A given password is set; an existing user keeps theirs (running services log in
            // with it); a new user gets a generated one, shown once.
            let password = match std::env::var(var) {
                Ok(p) => Some(p),
                Err(_) if admin.user_exists("userpass", name).await? => None,
                Err(_) => {
                    let p = coffer_keys_local::generate_inline_key().to_string();
                    generated.push(format!("{name}: {p}"));
                    Some(p)
                }
            };
            plan.users.push(UserSpec {
                name: name.into(),
                password: password.map(Into::into),
                policies: vec![name.into()],
            });
        }
        anyhow::Ok(setup(&admin, &plan).await?)
    })?;
    for line in done {
        eprintln!("vault-setup: {line}");
    }
    if !generated.is_empty() {
        println!("# generated passwords, shown once: store them in your secret manager");
        for line in generated {
            println!("{line}");
        }
    }
    eprintln!(
        "vault-setup: done. Point Coffer at it with [keys] provider = \"vault-transit\" (or \"vault-kv\"), key_id = {key:?}, and [vault] address = {addr:?}, auth = \"userpass\", username = \"coffer-api\" plus COFFER_VAULT__PASSWORD"
    );
    Ok(())
}

fn keygen(out: Option<&Path>, key_id: Option<&str>) -> Result<()> {
    let key_id = key_id.unwrap_or(coffer_keys_local::DEFAULT_KEY_ID);
    match out {
        None => {
            let key = coffer_keys_local::generate_inline_key();
            println!("{}", key.as_str());
            eprintln!(
                "A fresh 256-bit master key (base64). Use it as COFFER_MASTER_KEY and store it in \
                 your secret manager: without it no wallet data can be decrypted."
            );
            Ok(())
        }
        Some(path) => {
            coffer_keys_local::create_key_file(path, key_id)
                .with_context(|| format!("cannot create {}", path.display()))?;
            eprintln!(
                "Created master key file {} (mode 0600, key id {key_id}). Back it up now, apart \
                 from database backups.",
                path.display()
            );
            Ok(())
        }
    }
}

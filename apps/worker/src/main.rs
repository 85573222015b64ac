//! `coffer-worker`: the background process and the operator's commands. Thin: arguments,
//! logging, progress display; the work is `coffer-app` (`worker`, `cli`) and the services.
//!
//! ```text
//! coffer-worker [--config FILE] [run]            the schedule (rotations requested through the
//!                                                API, key and signing-key age, checkpoints,
//!                                                cleanup), /metrics on worker.metrics_listen
//! coffer-worker keys status                      versions, ages, keys per version, rotations
//! coffer-worker keys validate                    every wrapped key unwraps, every wallet opens
//! coffer-worker keys rotate [--retire] [--emergency]
//!                                                rotate the master key and re-wrap every key now
//! coffer-worker keys rotate-data-keys [--older-than-days N]
//!                                                a new data key for every wallet and user (whose
//!                                                current one is older than N days)
//! coffer-worker keys rotate-signing-key          a new token signing key now (the old one keeps
//!                                                verifying until its tokens expire)
//! coffer-worker keys resume                      continue a rotation that stopped (never starts one)
//! coffer-worker keys retire                      retire the versions below the active one (once no
//!                                                key is under them)
//! coffer-worker keys history [--limit N]         past rotations
//! coffer-worker ledger verify [--wallets-after ID | --transactions-after ID]
//! coffer-worker ledger backfill-memos [--after ID]
//!                                                give transfers written before receivers got a
//!                                                copy of the memo theirs (resumable)
//! coffer-worker audit verify
//! coffer-worker users erase USER_ID --reason R [--idempotency-key K]
//!                                                crypto-shred a user whose wallets are empty:
//!                                                their wallets closed, their and their wallets'
//!                                                data keys destroyed (the same key again answers
//!                                                the first erasure; default `cli:<user id>`)
//! coffer-worker sessions revoke-all
//! coffer-worker secrets list [--tag K=V] | status | rotate NAME (value on stdin) | …
//! ```
//!
//! Exit codes: 0 done; 1 could not run (configuration, a dependency down: the message says
//! which); 2 usage; 3 the check ran and found problems (validation, verification, keys that
//! would not re-wrap).

mod progress;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use coffer_app::worker::Worker;
use coffer_app::{App, Config};
use coffer_rotation::{RotateRequest, RotationError, RotationJob};
use progress::Progress;

const USAGE: &str = "usage: coffer-worker [--config FILE] [run | keys status | keys validate | keys rotate [--retire] [--emergency] | keys resume | keys retire | keys rotate-data-keys [--older-than-days N] | keys rotate-signing-key | keys history [--limit N] | ledger verify [--wallets-after ID | --transactions-after ID] | ledger backfill-memos [--after ID] | audit verify | users erase USER_ID --reason R [--idempotency-key K] | sessions revoke-all | secrets …]";

/// Exit codes.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_PROBLEMS: u8 = 3;

/// The check ran and found problems (exit 3).
#[derive(Debug)]
struct Problems(String);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Problems {}

/// A usage error (exit 2).
#[derive(Debug)]
struct Usage;

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(USAGE)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.is::<Usage>() {
                EXIT_USAGE
            } else if e.is::<Problems>() {
                EXIT_PROBLEMS
            } else {
                EXIT_FAILED
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (file, words) = coffer_app::cli::config_and_words(std::env::args().skip(1))?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let config = Config::load(file.as_deref())?;
    coffer_app::cli::init_logging(&config, coffer_app::cli::LogTo::Stderr)?;
    if matches!(words.as_slice(), [] | ["run"]) {
        // The long-running worker says what `coffer-api serve` says of its connections.
        for warning in config.transport_warnings() {
            tracing::warn!("{warning}");
        }
    }
    let app = App::build(config, "coffer-worker").await?;
    let outcome = command(&app, &words).await;
    app.flush_key_use().await;
    app.db.close().await;
    outcome
}

#[allow(clippy::print_stdout)]
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn command(app: &App, words: &[&str]) -> anyhow::Result<()> {
    match words {
        [] | ["run"] => serve(app).await,
        ["keys", "status"] => print_json(&app.rotation.overview().await?),
        ["keys", "validate"] => validate(app).await,
        ["keys", "rotate", flags @ ..] => {
            let mut request = RotateRequest {
                requested_by: cli_actor(),
                emergency: false,
                retire: false,
            };
            for flag in flags {
                match *flag {
                    "--emergency" => request.emergency = true,
                    "--retire" => request.retire = true,
                    _ => return Err(Usage.into()),
                }
            }
            rotate(app, request).await
        }
        ["keys", "resume"] => resume(app).await,
        ["keys", "rotate-data-keys"] => rotate_data_keys(app, 0).await,
        ["keys", "rotate-data-keys", "--older-than-days", n] => {
            rotate_data_keys(app, n.parse().map_err(|_| Usage)?).await
        }
        ["keys", "rotate-signing-key"] => {
            let kid = app.state.accounts.rotate_signing_key().await?;
            print_json(&serde_json::json!({ "signing_kid": kid }))
        }
        ["keys", "retire"] => {
            let below = app.rotation.retire_old_versions().await?;
            eprintln!("master key versions below {below} retired");
            Ok(())
        }
        ["keys", "history"] => print_json(&app.rotation.history(20).await?),
        ["keys", "history", "--limit", n] => {
            let n: u32 = n.parse().map_err(|_| Usage)?;
            print_json(&app.rotation.history(n).await?)
        }
        ["ledger", "verify", rest @ ..] => ledger_verify(app, rest).await,
        ["ledger", "backfill-memos", rest @ ..] => ledger_backfill_memos(app, rest).await,
        ["audit", "verify"] => audit_verify(app).await,
        ["users", "erase", user, flags @ ..] => users_erase(app, user, flags).await,
        ["sessions", "revoke-all"] => {
            let actor = app.actor().clone();
            let ended = app
                .state
                .accounts
                .revoke_everyone(actor, &coffer_auth::accounts::RequestContext::default())
                .await?;
            eprintln!("every session and access token revoked ({ended} sessions ended)");
            Ok(())
        }
        ["secrets", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|w| (*w).to_owned()).collect();
            Ok(coffer_app::cli::secrets(&app.secrets, &rest).await?)
        }
        _ => Err(Usage.into()),
    }
}

/// `cli:<login name>`: who ran the command, as far as the machine says.
fn cli_actor() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .unwrap_or_else(|| "operator".to_owned());
    format!("cli:{user}")
}

async fn serve(app: &App) -> anyhow::Result<()> {
    let worker = Arc::new(Worker::new(app));
    let mut tasks = app.spawn_background();
    if let Some(addr) = app.config.worker.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (worker.metrics_listen)"))?;
        tracing::info!(address = %listener.local_addr()?, "worker metrics listening");
        let metrics = worker.metrics();
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                coffer_app::worker::serve_metrics(metrics, listener, std::future::pending::<()>())
                    .await
            {
                tracing::error!(error = %e, "worker metrics listener stopped");
            }
        }));
    }
    tracing::info!(
        poll_secs = app.config.worker.poll_secs,
        provider = %app.config.keys.provider,
        "coffer-worker running"
    );
    worker.run(coffer_app::shutdown_signal()).await;
    for task in tasks {
        task.abort();
    }
    app.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn rotate(app: &App, request: RotateRequest) -> anyhow::Result<()> {
    let (job, created) = app.rotation.request(request).await?;
    if created {
        eprintln!("rotation {} requested", job.id);
    } else {
        eprintln!(
            "rotation {} was already {}: continuing it",
            job.id,
            job.state.as_str()
        );
    }
    follow(app, job).await
}

/// `keys resume`: continues the rotation requested or running, never starts one.
async fn resume(app: &App) -> anyhow::Result<()> {
    match app.rotation.overview().await?.open_job {
        Some(job) => {
            eprintln!("continuing rotation {} ({})", job.id, job.state.as_str());
            follow(app, job).await
        }
        None => {
            eprintln!("no rotation is requested or running");
            Ok(())
        }
    }
}

/// Runs `job` here, or follows it while another worker holds the lock, to its end.
async fn follow(app: &App, job: RotationJob) -> anyhow::Result<()> {
    let bar = Progress::new("re-wrapping data keys");
    let show = |j: &RotationJob| bar.set(j.rewrapped + j.failed, Some(j.total));
    let finished = loop {
        match app.rotation.run_pending(&show).await {
            Ok(Some(done)) => break done,
            Ok(None) => {
                // Another worker holds the lock: follow its progress.
                let open = app.rotation.overview().await?.open_job;
                match open {
                    Some(j) if j.id == job.id => {
                        show(&j);
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    _ => match app
                        .rotation
                        .history(20)
                        .await?
                        .into_iter()
                        .find(|j| j.id == job.id)
                    {
                        Some(j) => break j,
                        None => bail!("rotation {} disappeared", job.id),
                    },
                }
            }
            Err(e @ RotationError::KeysFailed { .. }) => {
                bar.finish();
                return Err(Problems(e.to_string()).into());
            }
            Err(e) => {
                bar.finish();
                return Err(e)
                    .context("the rotation stopped; run the command again to continue it");
            }
        }
    };
    bar.finish();
    print_json(&finished)?;
    match finished.state {
        coffer_rotation::JobState::Done => Ok(()),
        _ => Err(Problems(
            finished
                .error
                .unwrap_or_else(|| format!("rotation ended {}", finished.state.as_str())),
        )
        .into()),
    }
}

/// Every wallet's and user's data key older than `days` (0: all of them) rotated now.
async fn rotate_data_keys(app: &App, days: u64) -> anyhow::Result<()> {
    let worker = Worker::new(app);
    let bar = Progress::new("rotating data keys");
    let (wallets, users) = worker
        .rotate_data_keys(
            std::time::Duration::from_secs(days.saturating_mul(86_400)),
            None,
            &|n| bar.set(n, None),
        )
        .await?;
    bar.finish();
    print_json(&serde_json::json!({ "wallets": wallets, "users": users }))
}

async fn validate(app: &App) -> anyhow::Result<()> {
    let overview = app.rotation.overview().await?;
    let total: u64 = overview
        .keys
        .iter()
        .flat_map(|s| s.by_kek_version.values())
        .sum();
    let bar = Progress::new("validating data keys");
    let report = app
        .rotation
        .validate(&|r: &coffer_rotation::ValidationReport| bar.set(r.total(), Some(total)))
        .await?;
    bar.finish();
    print_json(&report)?;
    if report.ok() {
        Ok(())
    } else {
        Err(Problems(format!(
            "{} of {} keys failed validation",
            report.failed,
            report.total()
        ))
        .into())
    }
}

async fn ledger_verify(app: &App, flags: &[&str]) -> anyhow::Result<()> {
    use coffer_ledger::verify::{Phase, VerifyOptions, VerifyProgress};
    let mut options = VerifyOptions::default();
    match flags {
        [] => {}
        ["--wallets-after", id] => {
            options.wallets_after = Some(coffer_ledger::WalletId::parse(id).map_err(|_| Usage)?);
        }
        ["--transactions-after", id] => {
            options.skip_wallets = true;
            options.transactions_after =
                Some(coffer_ledger::TransactionId::parse(id).map_err(|_| Usage)?);
        }
        _ => return Err(Usage.into()),
    }
    let bar = Progress::new("verifying the ledger");
    let report = app
        .state
        .ledger
        .verify(options, &|p: &VerifyProgress| {
            let (phase, resume) = match p.phase {
                Phase::Wallets => (
                    "wallets",
                    p.resume
                        .wallets_after
                        .map(|w| format!("--wallets-after {w}")),
                ),
                Phase::Transactions => (
                    "transactions",
                    p.resume
                        .transactions_after
                        .map(|t| format!("--transactions-after {t}")),
                ),
                Phase::Audit => ("audit records", None),
            };
            bar.note(phase, resume.as_deref());
            bar.set(p.done, None);
        })
        .await?;
    bar.finish();
    let summary = serde_json::json!({
        "ok": report.ok(),
        "complete": report.complete,
        "wallets": report.wallets,
        "transactions": report.transactions,
        "signatures": report.signatures,
        "erased_wallets": report.erased_wallets,
        "erased_postings": report.erased_postings,
        "audit_ok": report.audit.ok,
        "audit_records": report.audit.checked,
        "findings": report.findings.iter().take(20).map(|f| serde_json::json!({
            "wallet": f.wallet.map(|w| w.to_string()),
            "transaction": f.transaction.map(|t| t.to_string()),
            "problem": format!("{:?}", f.problem),
        })).collect::<Vec<_>>(),
        "findings_total": report.findings.len(),
    });
    print_json(&summary)?;
    if report.ok() {
        Ok(())
    } else {
        Err(Problems(format!(
            "the ledger does not verify: {} findings, audit {}",
            report.findings.len(),
            if report.audit.ok { "ok" } else { "failed" }
        ))
        .into())
    }
}

/// Transactions read per batch of the memo backfill.
const BACKFILL_BATCH: u32 = 500;

async fn ledger_backfill_memos(app: &App, flags: &[&str]) -> anyhow::Result<()> {
    let mut after = match flags {
        [] => None,
        ["--after", id] => Some(coffer_ledger::TransactionId::parse(id).map_err(|_| Usage)?),
        _ => return Err(Usage.into()),
    };
    let bar = Progress::new("copying memos to their receivers");
    let mut total = coffer_ledger::MemoBackfill::default();
    loop {
        let batch = app
            .state
            .ledger
            .backfill_receiver_memos(after, BACKFILL_BATCH)
            .await?;
        let Some(last) = batch.last else { break };
        after = Some(last);
        total.scanned += batch.scanned;
        total.copied += batch.copied;
        total.unreadable += batch.unreadable;
        bar.note("transactions", Some(&format!("--after {last}")));
        bar.set(total.scanned, None);
    }
    bar.finish();
    print_json(&serde_json::json!({
        "scanned": total.scanned,
        "copied": total.copied,
        "unreadable": total.unreadable,
    }))
}

async fn users_erase(app: &App, user: &str, flags: &[&str]) -> anyhow::Result<()> {
    let user = coffer_auth::user::UserId::parse(user).map_err(|_| Usage)?;
    let (reason, key) = match flags {
        ["--reason", r] => (*r, format!("cli:{user}")),
        ["--reason", r, "--idempotency-key", k] | ["--idempotency-key", k, "--reason", r] => {
            (*r, (*k).to_owned())
        }
        _ => return Err(Usage.into()),
    };
    let reason = coffer_ledger::Reason::parse(reason)?;
    let key = coffer_ledger::IdempotencyKey::parse(&key)?;
    let by = coffer_audit::Actor::Service(coffer_audit::EntityId::parse(&cli_actor())?);
    let erased = app
        .state
        .admin
        .erase(
            by,
            user,
            &reason,
            &key,
            &coffer_auth::accounts::RequestContext::default(),
        )
        .await?;
    print_json(&serde_json::json!({
        "user_id": user.to_string(),
        "erased_at_micros": erased.erased_at,
        "reason": erased.reason,
        "wallets": erased.wallets.iter().map(|w| w.id.to_string()).collect::<Vec<_>>(),
    }))
}

async fn audit_verify(app: &App) -> anyhow::Result<()> {
    let bar = Progress::new("verifying the audit log");
    let report = coffer_audit::AuditLog::verify(
        app.audit.as_ref(),
        None,
        &|p: coffer_audit::VerifyProgress| bar.set(p.checked, Some(p.total)),
    )
    .await?;
    bar.finish();
    print_json(&serde_json::json!({
        "ok": report.ok,
        "checked": report.checked,
        "streams": report.streams,
        "checkpoints": report.checkpoints,
        "bad_streams": report.bad_streams,
        "unanchored": report.unanchored,
        "first_bad": report.first_bad.map(|f| serde_json::json!({
            "stream": f.stream, "seq": f.seq, "id": f.id, "kind": format!("{:?}", f.kind),
        })),
    }))?;
    if report.ok {
        Ok(())
    } else {
        Err(Problems("the audit log does not verify".into()).into())
    }
}

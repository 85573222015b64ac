//! Command-line pieces both binaries share: the `secrets` commands (metadata as JSON on stdout,
//! values only ever on stdin) and reading a value from stdin.

use std::path::PathBuf;

use coffer_secrets::{RotationPolicy, SecretName, SecretsManager, SetOptions};
use zeroize::Zeroizing;

/// The command line without its program name, split into the `--config FILE` (or
/// `--config=FILE`) it names and the other words.
///
/// # Errors
/// `--config` without a file.
pub fn config_and_words(
    mut args: impl Iterator<Item = String>,
) -> Result<(Option<PathBuf>, Vec<String>), CliError> {
    let mut config = None;
    let mut words = Vec::new();
    while let Some(a) = args.next() {
        if a == "--config" {
            let file = args
                .next()
                .ok_or_else(|| CliError("--config needs a file".into()))?;
            config = Some(PathBuf::from(file));
        } else if let Some(path) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(path));
        } else {
            words.push(a);
        }
    }
    Ok((config, words))
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// Standard output (the server).
    Stdout,
    /// Standard error (commands whose results go to standard output).
    Stderr,
}

/// The `tracing` target of the audit records' log lines.
const AUDIT_TARGET: &str = "coffer::audit";

/// Installs the `tracing` subscriber the configuration asks for (`RUST_LOG` overrides the
/// filter). A command's lines (`LogTo::Stderr`) go to `log.file` when it is set; otherwise to
/// standard error, and when that is a terminal without the audit records' lines, which would
/// drown the command's progress and result.
///
/// # Errors
/// `log.file` cannot be opened for appending.
pub fn init_logging(config: &crate::Config, to: LogTo) -> Result<(), CliError> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;

    use crate::LogFormat;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let writer = match (to, &config.log.file) {
        (LogTo::Stdout, _) => BoxMakeWriter::new(std::io::stdout),
        (LogTo::Stderr, Some(path)) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| cli(&format!("open log.file {}", path.display()))(&e))?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        (LogTo::Stderr, None) => {
            if std::io::stderr().is_terminal()
                && let Ok(quiet) = format!("{AUDIT_TARGET}=off").parse()
            {
                filter = filter.add_directive(quiet);
            }
            BoxMakeWriter::new(std::io::stderr)
        }
    };
    let to_file = to == LogTo::Stderr && config.log.file.is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(!to_file);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
    Ok(())
}

/// A command that could not be carried out: the message says why (never a secret value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn cli(context: &str) -> impl Fn(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError(format!("{context}: {e}"))
}

/// The `secrets` commands' usage.
pub const SECRETS_USAGE: &str = "secrets list [--tag K=V] | secrets status | secrets set NAME [--expires-in-days N] [--rotate-every-days N] [--tag K=V]... | secrets rotate NAME | secrets backup FILE | secrets restore FILE";

/// A value from stdin, without its final line break.
///
/// # Errors
/// Reading fails, or the value is empty.
pub fn value_from_stdin() -> Result<Zeroizing<Vec<u8>>, CliError> {
    let mut value = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut value)
        .map_err(|e| cli("read the value from stdin")(&e))?;
    // One final line break (`\n` or `\r\n`) is the terminal's, not the value's.
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(CliError("no value on stdin".into()));
    }
    Ok(value)
}

fn tag(word: &str) -> Result<(String, String), CliError> {
    word.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| CliError(format!("--tag takes KEY=VALUE, not {word:?}")))
}

fn json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| cli("encode")(&e))
}

/// The `secrets` commands (`words` after `secrets`): metadata and status as JSON on stdout.
///
/// # Errors
/// Usage errors and the manager's errors.
#[allow(clippy::print_stdout)]
pub async fn secrets(manager: &SecretsManager, words: &[String]) -> Result<(), CliError> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let name =
        |n: &str| SecretName::parse(n).map_err(|e| CliError(format!("secret name {n:?}: {e}")));
    let failed = |e: coffer_secrets::SecretError| CliError(e.to_string());
    let usage = || CliError(format!("usage: {SECRETS_USAGE}"));
    match words.as_slice() {
        ["list"] | ["list", "--tag", _] => {
            let filter = words.get(2).map(|w| tag(w)).transpose()?;
            let listed = manager
                .list(filter.as_ref().map(|(k, v)| (k.as_str(), v.as_str())))
                .await
                .map_err(failed)?;
            println!("{}", json(&listed)?);
        }
        ["status"] => println!("{}", json(&manager.status().await.map_err(failed)?)?),
        ["set", n, options @ ..] => {
            let mut set = SetOptions::default();
            let mut rest = options.iter();
            while let Some(flag) = rest.next() {
                let value = rest
                    .next()
                    .ok_or_else(|| CliError(format!("{flag} needs a value")))?;
                let number = |what: &str| -> Result<u64, CliError> {
                    value
                        .parse()
                        .map_err(|_| CliError(format!("{what} takes a number")))
                };
                match *flag {
                    "--expires-in-days" => {
                        let secs = number(flag)?
                            .checked_mul(86_400)
                            .ok_or_else(|| CliError("--expires-in-days is too large".into()))?;
                        set.expires_in = Some(std::time::Duration::from_secs(secs));
                    }
                    "--rotate-every-days" => {
                        let days = u32::try_from(number(flag)?)
                            .map_err(|_| CliError("--rotate-every-days is too large".into()))?;
                        set.rotation = RotationPolicy::EveryDays(days);
                    }
                    "--tag" => {
                        let (k, v) = tag(value)?;
                        set.tags.insert(k, v);
                    }
                    _ => return Err(usage()),
                }
            }
            let meta = manager
                .set(&name(n)?, &value_from_stdin()?, &set)
                .await
                .map_err(failed)?;
            println!("{}", json(&meta)?);
        }
        ["rotate", n] => {
            let meta = manager
                .rotate(&name(n)?, &value_from_stdin()?)
                .await
                .map_err(failed)?;
            println!("{}", json(&meta)?);
        }
        ["backup", file] => {
            let bundle = manager.backup().await.map_err(failed)?;
            std::fs::write(PathBuf::from(file), bundle)
                .map_err(|e| cli(&format!("write {file}"))(&e))?;
            eprintln!("backup written to {file}: it opens only with this master key");
        }
        ["restore", file] => {
            let bundle = std::fs::read(file).map_err(|e| cli(&format!("read {file}"))(&e))?;
            let report = manager.restore(&bundle).await.map_err(failed)?;
            println!("{}", json(&report)?);
        }
        _ => return Err(usage()),
    }
    Ok(())
}

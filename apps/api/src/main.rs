//! `coffer-api`: the API server. Thin: configuration, logging and the command line; everything
//! else is `coffer-app`.
//!
//! ```text
//! coffer-api [--config FILE]                       serve (the default)
//! coffer-api [--config FILE] migrate               apply the migrations and the coffer_app
//!                                                  grants (as the schema owner), then exit
//! coffer-api [--config FILE] config check          print the effective configuration, masked
//! coffer-api [--config FILE] admin create --email E --password-stdin
//!                                                  create an administrator (password on stdin)
//! coffer-api [--config FILE] secrets list [--tag K=V] | status
//!                                                  the secrets manager's metadata (never values)
//! coffer-api [--config FILE] secrets set NAME [--expires-in-days N] [--rotate-every-days N]
//!            [--tag K=V]...                        store a new secret (value on stdin)
//! coffer-api [--config FILE] secrets rotate NAME   its next version (value on stdin)
//! coffer-api [--config FILE] secrets backup FILE | restore FILE
//!                                                  an encrypted bundle of every version
//! ```

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use coffer_app::cli::LogTo;
use coffer_app::{App, Config};
use coffer_auth::accounts::{Registration, RequestContext};
use coffer_auth::user::UserId;
use zeroize::Zeroizing;

enum Command {
    Serve,
    Migrate,
    ConfigCheck,
    AdminCreate { email: String },
    Secrets(Vec<String>),
}

const USAGE: &str = "usage: coffer-api [--config FILE] [serve | migrate | config check | admin create --email EMAIL --password-stdin | secrets …] (secrets: list [--tag K=V] | status | set NAME [--expires-in-days N] [--rotate-every-days N] [--tag K=V]... | rotate NAME | backup FILE | restore FILE)";

fn parse_args() -> anyhow::Result<(Option<PathBuf>, Command)> {
    let (config, words) = coffer_app::cli::config_and_words(std::env::args().skip(1))?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words.as_slice() {
        [] | ["serve"] => Command::Serve,
        ["migrate"] => Command::Migrate,
        ["config", "check"] => Command::ConfigCheck,
        ["admin", "create", "--email", email]
        | ["admin", "create", "--email", email, "--password-stdin"]
        | ["admin", "create", "--password-stdin", "--email", email] => Command::AdminCreate {
            email: (*email).to_owned(),
        },
        ["secrets", rest @ ..] => Command::Secrets(rest.iter().map(|w| (*w).to_owned()).collect()),
        _ => bail!("{USAGE}"),
    };
    Ok((config, command))
}

/// The server logs to standard output; the commands (`migrate`, `admin create`, `secrets`) as
/// operator commands do, to `log.file` or standard error, keeping stdout for their result.
fn init_logging(config: &Config, to: LogTo) -> anyhow::Result<()> {
    Ok(coffer_app::cli::init_logging(config, to)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (file, command) = parse_args()?;
    let config = Config::load(file.as_deref())?;
    match command {
        Command::ConfigCheck => {
            #[allow(clippy::print_stdout)]
            {
                println!("# configuration is valid");
                for warning in config.transport_warnings() {
                    println!("# warning: {warning}");
                }
                println!("{}", config.masked_toml());
            }
            Ok(())
        }
        Command::Migrate => {
            init_logging(&config, LogTo::Stderr)?;
            coffer_app::migrate(&config).await?;
            tracing::info!(
                database = %coffer_app::config::mask_url(&config.database.url),
                "migrations and grants applied"
            );
            Ok(())
        }
        Command::AdminCreate { email } => {
            init_logging(&config, LogTo::Stderr)?;
            let mut password = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("read the password from stdin")?;
            let app = App::build(config, "coffer-api").await?;
            let accounts = &app.state.accounts;
            let ctx = RequestContext::default();
            let id = accounts
                .register(
                    Registration {
                        email: &email,
                        password: password.trim_end_matches(['\r', '\n']),
                        phone: None,
                        tax_id: None,
                    },
                    &ctx,
                )
                .await?;
            // The command line acts as the nil user in the audit record.
            accounts
                .set_roles(
                    UserId::from_uuid(uuid::Uuid::nil()),
                    id,
                    &["admin".to_owned()],
                    &ctx,
                )
                .await?;
            tracing::info!(user_id = %id, "administrator created");
            app.db.close().await;
            Ok(())
        }
        Command::Secrets(words) => {
            init_logging(&config, LogTo::Stderr)?;
            let app = App::build(config, "coffer-api").await?;
            let outcome = coffer_app::cli::secrets(&app.secrets, &words).await;
            app.flush_key_use().await;
            app.db.close().await;
            Ok(outcome?)
        }
        Command::Serve => {
            init_logging(&config, LogTo::Stdout)?;
            for warning in config.transport_warnings() {
                tracing::warn!("{warning}");
            }
            let app = App::build(config, "coffer-api").await?;
            let listen = app.config.server.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen} (server.listen / COFFER_LISTEN)"))?;
            tracing::info!(
                address = %listener.local_addr()?,
                database = %coffer_app::config::mask_url(&app.config.database.url),
                key_file = %app.config.keys.key_file.display(),
                "coffer-api listening"
            );
            let background = app.spawn_background();
            let router = app.router();
            match (
                &app.config.server.tls_cert_file,
                &app.config.server.tls_key_file,
            ) {
                (Some(cert), Some(key)) => {
                    let tls = coffer_app::tls::server_config(cert, key)?;
                    let listener = coffer_app::tls::TlsListener::new(listener, tls)?;
                    tracing::info!("TLS 1.3 on");
                    coffer_app::serve_tls(router, listener, coffer_app::shutdown_signal()).await?;
                }
                _ => coffer_app::serve(router, listener, coffer_app::shutdown_signal()).await?,
            }
            for task in background {
                task.abort();
            }
            app.shutdown().await;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

//! The services tests need: make sure they answer, starting them when installed but down.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Host and port of the test Postgres, from `COFFER_TEST_DATABASE_URL`.
fn pg_addr() -> Result<SocketAddr> {
    let url = std::env::var("COFFER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/coffer_test".to_owned());
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("COFFER_TEST_DATABASE_URL is not a URL")?;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split(['/', '?']).next().unwrap_or(host_port);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {with_port}"))?
        .next()
        .context("no address for the test database")
}

fn answers(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok()
}

/// Makes sure Postgres answers; starts the machine's clusters (Debian's `pg_ctlcluster`) if not.
pub fn ensure_postgres() -> Result<()> {
    let addr = pg_addr()?;
    if answers(&addr) {
        eprintln!("postgres: answering at {addr}");
        return Ok(());
    }
    eprintln!("postgres: nothing answers at {addr}; trying to start the installed clusters");
    let versions = std::fs::read_dir("/etc/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if versions.is_empty() || !Path::new("/usr/bin/pg_ctlcluster").exists() {
        bail!(
            "Postgres is not answering at {addr} and no Debian cluster is installed to start. \
             Install and start PostgreSQL (trust auth for 127.0.0.1), or point \
             COFFER_TEST_DATABASE_URL at one"
        );
    }
    for v in &versions {
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", v, "main", "start"])
            .status();
        eprintln!("postgres: pg_ctlcluster {v} main start: {status:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers(&addr) {
            eprintln!("postgres: started, answering at {addr}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("started Postgres clusters {versions:?}, but nothing answers at {addr} after 30 s")
}

//! The services tests need: make sure they answer, starting them when installed but down.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The socket address in a `scheme://[user[:password]@]host[:port][/…]` URL.
fn addr_of(url: &str, default_port: u16) -> Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split(['/', '?']).next().unwrap_or(host_port);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {with_port}"))?
        .next()
        .with_context(|| format!("no address for {with_port}"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn answers(addr: &SocketAddr) -> bool {
    TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok()
}

/// A service this run started; stopped again when dropped (at the end of `cargo xtask test`,
/// whether it passed or not), so the machine is left as it was found.
#[must_use = "dropping it stops the service"]
pub struct Started {
    name: &'static str,
    stop: Command,
}

impl Drop for Started {
    fn drop(&mut self) {
        let status = self.stop.status();
        eprintln!("{}: stopped what this run started: {status:?}", self.name);
    }
}

/// Makes sure Postgres answers; starts the machine's clusters (Debian's `pg_ctlcluster`) if not.
pub fn ensure_postgres() -> Result<Option<Started>> {
    let addr = addr_of(
        &env_or(
            "COFFER_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/coffer_test",
        ),
        5432,
    )?;
    if answers(&addr) {
        eprintln!("postgres: answering at {addr}");
        return Ok(None);
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
            let mut stop = Command::new("sh");
            stop.arg("-c").arg(format!(
                "for v in {}; do pg_ctlcluster --skip-systemctl-redirect $v main stop; done",
                versions.join(" ")
            ));
            return Ok(Some(Started {
                name: "postgres",
                stop,
            }));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("started Postgres clusters {versions:?}, but nothing answers at {addr} after 30 s")
}

/// Makes sure Redis answers (`COFFER_TEST_REDIS_URL`, default 127.0.0.1:6379); starts the
/// machine's `redis-server` on that port if it is installed but down.
pub fn ensure_redis() -> Result<Option<Started>> {
    let addr = addr_of(
        &env_or("COFFER_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        6379,
    )?;
    if answers(&addr) {
        eprintln!("redis: answering at {addr}");
        return Ok(None);
    }
    if !Path::new("/usr/bin/redis-server").exists() {
        bail!(
            "Redis is not answering at {addr} and redis-server is not installed: install it \
             (apt-get install redis-server) or point COFFER_TEST_REDIS_URL at one"
        );
    }
    eprintln!("redis: nothing answers at {addr}; starting redis-server");
    let status = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            &addr.ip().to_string(),
            "--port",
        ])
        .arg(addr.port().to_string())
        .args(["--save", "", "--appendonly", "no"])
        .status()
        .context("cannot run redis-server")?;
    eprintln!("redis: redis-server: {status}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if answers(&addr) {
            let mut stop = Command::new("redis-cli");
            stop.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
                .args(["shutdown", "nosave"]);
            return Ok(Some(Started {
                name: "redis",
                stop,
            }));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("started redis-server, but nothing answers at {addr} after 15 s")
}

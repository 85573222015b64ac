//! A Postgres that takes nothing but TLS connections showing a client certificate of the test's
//! authority: a cluster made by `initdb` and run as the `postgres` system user (the server
//! refuses root), its certificate for `localhost`, the client's for the `postgres` user.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Pki, free_port, run, spawn_until_exit, wait_for};

/// The running server and what a client needs.
#[derive(Debug)]
pub struct TlsPostgres {
    /// Its port on localhost.
    pub port: u16,
    /// The certificates (the client's is for the user `postgres`).
    pub pki: Pki,
    _dir: tempfile::TempDir,
    _server: Child,
}

impl TlsPostgres {
    /// A connection URL to the `postgres` database on `host`: verify-full against the
    /// authority, with the client certificate.
    #[must_use]
    pub fn url(&self, host: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            self.port,
            self.pki.ca.display(),
            self.pki.client_cert.display(),
            self.pki.client_key.display()
        )
    }
}

/// The newest installed Postgres' programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed under /usr/lib/postgresql (Debian's postgresql package)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres server binary")
}

/// The server, started on first use.
pub fn server() -> &'static TlsPostgres {
    static SERVER: OnceLock<TlsPostgres> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> TlsPostgres {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The server reads its files through the test's directory.
    run(Command::new("chmod").arg("755").arg(root));
    let pki = Pki::new(root, &["localhost"], "postgres");
    let server_dir = root.join("server");
    std::fs::create_dir(&server_dir).unwrap();
    for (from, to) in [
        (&pki.server_cert, "server.pem"),
        (&pki.server_key, "server.key"),
        (&pki.ca, "ca.pem"),
    ] {
        std::fs::copy(from, server_dir.join(to)).unwrap();
    }
    run(Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&server_dir));
    let data = server_dir.join("data");
    let bin = bin_dir();
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data));
    let port = free_port();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    writeln!(
        conf,
        "port = {port}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{dir}'\n\
         fsync = off\nmax_connections = 200\nssl = on\n\
         ssl_cert_file = '{dir}/server.pem'\nssl_key_file = '{dir}/server.key'\n\
         ssl_ca_file = '{dir}/ca.pem'",
        dir = server_dir.display()
    )
    .unwrap();
    // TLS with a certificate of the authority, or nothing.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 cert\n\
         hostssl all all ::1/128 cert\n",
    )
    .unwrap();
    let log = root.join("postgres.log");
    let server = spawn_until_exit(
        Some("postgres"),
        &format!("{} -D \"$0\"", bin.join("postgres").display()),
        &data,
        "INT",
        &log,
    );
    wait_for(port, "the TLS Postgres", &log);
    // The port opens before the server takes sessions ("the database system is starting up"):
    // wait for its own word that it is ready.
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready to accept connections")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the TLS Postgres did not get ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsPostgres {
        port,
        pki,
        _dir: dir,
        _server: server,
    }
}

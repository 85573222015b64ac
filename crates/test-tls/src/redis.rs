//! A Redis that speaks only TLS (no plaintext port), its certificate for `localhost` signed by
//! the test's authority; it asks every client for a certificate of that authority.

use std::process::Child;
use std::sync::OnceLock;

use crate::{Pki, free_port, spawn_until_exit, wait_for};

/// The running server and what a client needs.
#[derive(Debug)]
pub struct TlsRedis {
    /// Its TLS port on localhost.
    pub port: u16,
    /// The certificates.
    pub pki: Pki,
    _dir: tempfile::TempDir,
    _server: Child,
}

impl TlsRedis {
    /// Its URL on `host`.
    #[must_use]
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }

    /// The client certificate it accepts and its key, PEM.
    #[must_use]
    pub fn client_identity(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.pki.client_cert).unwrap(),
            std::fs::read(&self.pki.client_key).unwrap(),
        )
    }
}

/// The server, started on first use.
pub fn server() -> &'static TlsRedis {
    static SERVER: OnceLock<TlsRedis> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> TlsRedis {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pki = Pki::new(root, &["localhost"], "coffer");
    let port = free_port();
    let log = root.join("redis.log");
    let server = spawn_until_exit(
        None,
        &format!(
            "redis-server --port 0 --tls-port {port} --bind 127.0.0.1 ::1 \
             --tls-cert-file {} --tls-key-file {} --tls-ca-cert-file {} \
             --tls-auth-clients yes --save '' --appendonly no --dir \"$0\"",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        ),
        root,
        "TERM",
        &log,
    );
    wait_for(port, "the TLS Redis", &log);
    TlsRedis {
        port,
        pki,
        _dir: dir,
        _server: server,
    }
}

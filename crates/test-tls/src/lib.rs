//! Test support: a certificate authority of the test's own ([`Pki`], rcgen) and servers that
//! take only TLS with its certificates, started by the tests that need them: a Postgres
//! ([`postgres`]) and a Redis ([`redis`]). Each is started once per test process, on first use,
//! on a free port, and stops when the process ends: a shell beside it waits on a pipe the
//! process holds and stops the server when the pipe closes ([`spawn_until_exit`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};

pub mod postgres;
pub mod redis;

/// The files of a test's certificate authority, in one directory: the authority, a server
/// certificate, a client certificate, and another authority that signed nothing of these.
#[derive(Debug)]
pub struct Pki {
    /// The authority's certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate (PEM), for the names it was made for.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The client's certificate (PEM), its common name the client's user name.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// Another authority's certificate.
    pub other_ca: PathBuf,
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` (the common name is the first) signed by `ca`: PEM cert and key.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes an owner-only file.
fn write(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Pki {
    /// A new authority in `dir`, with a server certificate for `server_names` and a client
    /// certificate for `client`.
    pub fn new(dir: &Path, server_names: &[&str], client: &str) -> Self {
        let ca = authority("coffer test CA");
        let (server_cert, server_key) = leaf(&ca, server_names);
        let (client_cert, client_key) = leaf(&ca, &[client]);
        let pki = Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        };
        write(&pki.ca, &ca.pem());
        write(&pki.server_cert, &server_cert);
        write(&pki.server_key, &server_key);
        write(&pki.client_cert, &client_cert);
        write(&pki.client_key, &client_key);
        write(&pki.other_ca, &authority("another CA").pem());
        pki
    }
}

/// Runs `cmd`, panicking with its error output when it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free port on localhost.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `server` (a shell command line; `$0` is `arg`) as `user` (or this process's user),
/// output to `log`, beside a shell that stops it with `signal` when this process ends. Keep the
/// returned child for as long as the server is to run.
pub fn spawn_until_exit(
    user: Option<&str>,
    server: &str,
    arg: &Path,
    signal: &str,
    log: &Path,
) -> Child {
    let script = format!("{server} & pid=$!; read _; kill -{signal} $pid; wait $pid");
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "sh", "-c"]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        }
    };
    let out = std::fs::File::create(log).unwrap();
    cmd.arg(script)
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Waits until something listens on `port`, at most 30 s; panics with `log` otherwise.
pub fn wait_for(port: u16, what: &str, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

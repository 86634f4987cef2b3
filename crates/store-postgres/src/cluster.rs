//! A three-member Patroni cluster with one etcd on loopback ports, for the failover test: the
//! PostgreSQL members come from the same wheel as [`crate::harness`], Patroni from a venv of
//! the system Python and etcd from Debian's `etcd-server` (`.ci/run` installs both). Under
//! root every member runs as the unprivileged user the harness makes.
//!
//! Replication is synchronous and strict (`synchronous_mode`, `synchronous_mode_strict`): a
//! commit returns once a standby has it, so killing the leader loses nothing acknowledged.
//! The members run with `fsync` off: the failover test kills processes, not machines, and
//! must not wait on a disk the other tests keep busy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Owner, as_owner, free_port, postgres_bin, runs_as};

/// Where `.ci/run` makes the venv Patroni is installed in.
pub const DEFAULT_PATRONI: &str = "/opt/aimp-patroni/bin/patroni";

/// How many times a cluster is started afresh before the test gives up.
const ATTEMPTS: usize = 3;

/// One member: its Patroni process (which runs its PostgreSQL) and its ports.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub port: u16,
    pub api_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The etcd and the three members, stopped (and their folder removed) when dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    etcd: Child,
    pub members: Vec<Member>,
}

/// A cluster, started and with a leader; `None` (the reason printed) where it cannot start
/// here and `AIMP_REQUIRE_POSTGRES` is not `1`.
pub fn cluster() -> Option<Cluster> {
    // A bootstrap that stalls is given up on and started afresh (new folder, new ports), so
    // that a slow start on a loaded machine costs a minute rather than the run.
    let mut started = Cluster::start();
    for attempt in 2..=ATTEMPTS {
        match &started {
            Ok(_) => break,
            Err(reason) => {
                eprintln!(
                    "the Patroni cluster did not start (attempt {attempt} of {ATTEMPTS} next): {reason}"
                );
                started = Cluster::start();
            }
        }
    }
    match started {
        Ok(cluster) => Some(cluster),
        Err(reason) if std::env::var("AIMP_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("AIMP_REQUIRE_POSTGRES=1 but the Patroni cluster cannot start: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "SKIPPED: no Patroni cluster for this test ({reason}); .ci/run installs etcd-server \
                 and Patroni (AIMP_PATRONI, AIMP_ETCD name other ones)"
            );
            None
        }
    }
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = postgres_bin()?;
        let patroni = std::env::var_os("AIMP_PATRONI")
            .map_or_else(|| PathBuf::from(DEFAULT_PATRONI), PathBuf::from);
        if !patroni.is_file() {
            return Err(format!("no patroni at {}", patroni.display()));
        }
        let etcd_bin = std::env::var("AIMP_ETCD").unwrap_or_else(|_| "etcd".into());
        let owner = runs_as()?;
        let dir = tempfile::Builder::new()
            .prefix("aimp-patroni-")
            .tempdir()
            .map_err(|e| format!("a temporary folder: {e}"))?
            .keep();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("giving {} away: {e}", dir.display()))?;
        }
        let (client, peer) = (free_port()?, free_port()?);
        let mut etcd = Command::new("setsid");
        etcd.current_dir(&dir)
            .arg(&etcd_bin)
            .args(["--name", "e0", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=e0=http://127.0.0.1:{peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_owner(&mut etcd, owner);
        let etcd = etcd.spawn().map_err(|e| format!("starting etcd: {e}"))?;
        let mut cluster = Cluster {
            dir: dir.clone(),
            etcd,
            members: Vec::new(),
        };
        for i in 0..3 {
            let member = Member {
                name: format!("pg{i}"),
                port: free_port()?,
                api_port: free_port()?,
                dir: dir.join(format!("pg{i}")),
                child: None,
            };
            std::fs::create_dir_all(&member.dir).map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&member.dir, Some(uid), Some(gid))
                    .map_err(|e| e.to_string())?;
            }
            let config = member.config(&bin, client);
            let path = member.dir.join("patroni.yml");
            std::fs::write(&path, config).map_err(|e| e.to_string())?;
            cluster.members.push(member);
        }
        for member in &mut cluster.members {
            member.start(&patroni, owner)?;
            // The first bootstraps the cluster; the others copy it once it leads.
            if member.name == "pg0" {
                wait(Duration::from_secs(60), || {
                    http_status(member.api_port, "/primary") == Some(200)
                })
                .map_err(|_| format!("the first member never led:\n{}", member.log_tail()))?;
            }
        }
        let replicas = || {
            cluster
                .members
                .iter()
                .filter(|m| http_status(m.api_port, "/replica") == Some(200))
                .count()
        };
        wait(Duration::from_secs(120), || replicas() == 2).map_err(|_| {
            let logs: Vec<String> = cluster.members.iter().map(Member::log_tail).collect();
            format!("the replicas never caught up:\n{}", logs.join("\n"))
        })?;
        let sync = || {
            cluster
                .members
                .iter()
                .any(|m| http_status(m.api_port, "/synchronous") == Some(200))
        };
        wait(Duration::from_secs(60), sync).map_err(|_| "no synchronous standby".to_string())?;
        Ok(cluster)
    }

    /// The URL that reaches whichever member leads: every host, `read-write`.
    pub fn url(&self, database: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!(
            "postgres://postgres@{}/{database}?target_session_attrs=read-write&connect_timeout=2",
            hosts.join(",")
        )
    }

    /// Makes `name` on the leader (replicated to the others).
    pub fn create_database(&self, name: &str) {
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the leader");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the database");
    }

    /// The member that leads now.
    pub fn leader(&self) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| http_status(m.api_port, "/primary") == Some(200))
    }

    /// Kills the leader's Patroni and PostgreSQL at once (`kill -9`), as a lost machine;
    /// returns its name.
    pub fn kill_leader(&mut self) -> String {
        let name = self.leader().expect("a leader").name.clone();
        let member = self
            .members
            .iter_mut()
            .find(|m| m.name == name)
            .expect("the leader");
        member.kill();
        name
    }
}

impl Member {
    fn config(&self, bin: &Path, etcd: u16) -> String {
        let data = self.dir.join("data");
        format!(
            r#"scope: aimp
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: false
      parameters:
        synchronous_commit: "on"
        # The test kills processes, not machines: what a member wrote survives in the
        # operating system's cache, and the cluster does not wait on a disk other tests
        # are busy with.
        fsync: "off"
        max_connections: 200
        wal_level: replica
        hot_standby: "on"
  initdb:
    - encoding: UTF8
    - auth: trust
    - no-sync
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
  parameters:
    unix_socket_directories: '{socket}'
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
"#,
            name = self.name,
            api = self.api_port,
            port = self.port,
            data = data.display(),
            bin = bin.display(),
            pgpass = self.dir.join("pgpass").display(),
            socket = self.dir.display(),
        )
    }

    fn start(&mut self, patroni: &Path, owner: Owner) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("patroni.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(self.dir.join("patroni.log"), Some(uid), Some(gid));
        }
        // A session of its own (`setsid`): no controlling terminal that could stop it. Run
        // from its own folder: Patroni starts PostgreSQL through a spawned Python that enters
        // its parent's working folder, and the test's (the checkout, under root's 0700
        // temporary folder in CI) is closed to the member's user; the spawned child then
        // dies and Patroni waits for it forever: the bootstrap that froze in every clean
        // clone's run.
        let mut command = Command::new("setsid");
        command
            .current_dir(&self.dir)
            .arg(patroni)
            .arg(self.dir.join("patroni.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log));
        as_owner(&mut command, owner);
        self.child = Some(command.spawn().map_err(|e| format!("patroni: {e}"))?);
        Ok(())
    }

    /// The end of this member's Patroni log, for a failure's message.
    fn log_tail(&self) -> String {
        let tail = |path: &Path, n: usize| {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut out = format!(
            "--- {} (patroni.log) ---\n{}",
            self.name,
            tail(&self.dir.join("patroni.log"), 25)
        );
        // PostgreSQL's own log, where it keeps one, and what of this member runs.
        if let Ok(entries) = std::fs::read_dir(self.dir.join("data").join("log")) {
            for entry in entries.flatten() {
                out.push_str(&format!(
                    "\n--- {} ---\n{}",
                    entry.path().display(),
                    tail(&entry.path(), 15)
                ));
            }
        }
        if let Ok(ps) = Command::new("pgrep")
            .args(["-a", "-f"])
            .arg(&self.dir)
            .output()
        {
            out.push_str(&format!(
                "\n--- running ---\n{}",
                String::from_utf8_lossy(&ps.stdout)
            ));
        }
        out
    }

    /// `kill -9` of every process of this member: Patroni and its PostgreSQL.
    fn kill(&mut self) {
        let _ = Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.dir.to_string_lossy().as_ref())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The status of `GET path` on a member's REST API.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn wait(within: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

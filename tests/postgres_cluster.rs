//! A throwaway PostgreSQL cluster for the tests: `initdb` in a temporary directory, the server
//! on a free loopback port (no Unix socket), password authentication, stopped on drop.
//!
//! The server binaries are found with `pg_config --bindir`, in Debian's
//! `/usr/lib/postgresql/<version>/bin`, or on `PATH`; `MITTARI_PG_BIN` names the directory
//! explicitly. PostgreSQL refuses to run as root, so under root the cluster runs as `nobody`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The role the tests connect as, and its password.
pub const USER: &str = "mittari";
pub const PASSWORD: &str = "pg-test-secret-7Qx";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running cluster, stopped (fast shutdown) and deleted on drop.
#[derive(Debug)]
pub struct PostgresCluster {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PostgresCluster {
    /// Starts a cluster; fails the calling test when PostgreSQL is not installed (such tests are
    /// `#[ignore]`d; `.ci/run` installs PostgreSQL and runs them).
    pub fn start() -> PostgresCluster {
        let Some(bin) = server_binaries() else {
            panic!(
                "PostgreSQL's initdb and postgres are not installed: .ci/run installs them from the distribution's packages (postgresql); or set MITTARI_PG_BIN to their directory"
            );
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create data dir");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).expect("write password file");
        let run_as = unprivileged_user();
        if let Some((uid, gid)) = run_as {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open temp dir");
            for path in [&data, &password_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
            }
        }
        let command = |program: &str| {
            let mut command = Command::new(bin.join(program));
            if let Some((uid, gid)) = run_as {
                use std::os::unix::process::CommandExt as _;
                command.uid(uid).gid(gid);
            }
            command.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
            command
        };
        let initdb = command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "--pwfile"])
            .arg(&password_file)
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path().join("server.log"), Some(uid), Some(gid))
                .expect("chown log");
        }
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k", ""])
            // A throwaway cluster: durability costs time and buys nothing.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut cluster = PostgresCluster { child, port, dir };
        cluster.wait_until_ready();
        cluster
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll postgres") {
                panic!("postgres exited with {status}: {}", self.log());
            }
            if self.config().connect(postgres::NoTls).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {START_TIMEOUT:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of the `postgres` database, without the password (the tests pass it in
    /// `PGPASSWORD`, as a user should).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// A client for loading data.
    pub fn client(&self) -> postgres::Client {
        self.config()
            .connect(postgres::NoTls)
            .expect("connect to the test cluster")
    }

    fn config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname("postgres");
        config
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // SIGINT: fast shutdown, which ends sessions and removes the postmaster's files.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory holding `initdb` and `postgres`.
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("MITTARI_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_both(&dir),
            "MITTARI_PG_BIN={} has no initdb and postgres",
            dir.display()
        );
        return Some(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // Debian installs the server outside PATH, one directory per major version.
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(debian.into_iter().rev())
        .chain(on_path)
        .find(|dir| has_both(dir))
}

/// `nobody`'s uid and gid when this process is root (PostgreSQL refuses root), else `None`.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = c"nobody";
    // SAFETY: a NUL-terminated name; the returned record is read at once, before any other
    // call that could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "running as root and there is no user nobody to run PostgreSQL as"
    );
    // SAFETY: non-null, as checked.
    let entry = unsafe { &*entry };
    Some((entry.pw_uid, entry.pw_gid))
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

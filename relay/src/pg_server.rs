//! A real PostgreSQL server for tests: Debian's `initdb`, `pg_ctl` and
//! `postgres` run in a temporary directory, listening on a free loopback
//! port with trust authentication, never the system's cluster.
//!
//! This module is compiled for tests only (`cfg(test)` or the
//! `test-utils` feature, which the tests crate turns on); the relay never
//! ships it. It must never touch anything outside its temporary
//! directory, and never leave a server running: [`PgServer`]'s drop stops
//! the server and removes the directory, and every server also has a
//! *guardian*, a small shell process that waits on a pipe from the test
//! process and does the same when that pipe closes, which the kernel does
//! when the test process ends in any way (normal exit, panic, `kill -9`).
//! That is how [`PgServer::shared`], which is never dropped, is stopped.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI), the
//! server's programs run as `nobody` (through `setpriv`) in a directory
//! chowned to it.
//!
//! The server is tuned for tests, not durability: `fsync=off` (a crash of
//! the server, as [`PgServer::stop_immediately`] makes, loses nothing,
//! since the files stay in the page cache; a crash of the machine would).
//!
//! The schema the store creates on PostgreSQL, `store/pg_schema.sql`, is
//! checked here against the SQLite migrations (see the tests).

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The database superuser the servers are made with (trust auth: no
/// password).
pub const SUPERUSER: &str = "deskside";

/// Overrides where the server's programs are looked for (a directory with
/// `initdb`, `pg_ctl` and `postgres`).
pub const BINDIR_ENV: &str = "DESKSIDE_PG_BINDIR";

/// Where Debian installs each major version's server programs.
const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// How many free ports are tried before giving up (another process may
/// take a port between our probe and the server's bind).
const PORT_ATTEMPTS: usize = 5;

/// How long `pg_ctl` waits for the server to start or stop, in seconds
/// (generous: the test machines are shared and loaded).
const PG_CTL_WAIT_S: &str = "120";

/// How long [`PgServer::stop_immediately`] waits for the postmaster to
/// exit after `pg_ctl` said it stopped.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// What the guardian runs: wait until the test process's end of the pipe
/// closes (its `read` then sees end of file), then stop the server (the
/// remaining arguments are the stop command) and remove the directory
/// (`$1`). Interrupts are ignored so that a Ctrl-C, which ends the test
/// process, leaves the guardian to clean up after it.
const GUARDIAN_SCRIPT: &str = r#"trap '' INT TERM HUP
read -r line
dir=$1
shift
"$@" >/dev/null 2>&1
rm -rf -- "$dir"
"#;

/// Why a test PostgreSQL server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    /// The server's programs are not installed.
    #[error(
        "PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found \
         ({searched}): install Debian's `postgresql` package \
         (`apt-get install postgresql`; `./run-tests` installs it when run as root), \
         or set {BINDIR_ENV} to their directory, and run the tests again"
    )]
    NotInstalled {
        /// Where they were looked for.
        searched: String,
    },
    /// Running as root, but there is no unprivileged user to run the
    /// server as.
    #[error(
        "the tests run as root and PostgreSQL refuses to: no `nobody` user to run it as \
         ({detail}); create one (`useradd --system nobody`) or run the tests as another user"
    )]
    NoUnprivilegedUser {
        /// What the lookup said.
        detail: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}; check that the temporary directory is writable and has space")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// One of PostgreSQL's programs failed.
    #[error("{what} failed ({status}): {output}\nthe server's log is {log}")]
    Command {
        /// What was run.
        what: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed (its end).
        output: String,
        /// The server's log file.
        log: String,
    },
    /// No free port could be bound after several tries.
    #[error(
        "the PostgreSQL server could not bind a loopback port in {PORT_ATTEMPTS} tries \
         (last log lines: {log_tail}); free some ports or run fewer tests at once"
    )]
    NoPort {
        /// The end of the server's log.
        log_tail: String,
    },
    /// A SQL command on the server failed.
    #[error("{what} on the test PostgreSQL server failed: {source}")]
    Sql {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
}

/// A running PostgreSQL server in a temporary directory (see the module
/// documentation).
#[derive(Debug)]
pub struct PgServer {
    /// Server programs (`initdb`, `pg_ctl`, `postgres`).
    bindir: PathBuf,
    /// The temporary directory: `data/`, the log and the Unix socket.
    dir: PathBuf,
    port: u16,
    /// `(uid, gid)` the programs run as when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// Numbers the databases [`PgServer::create_database`] makes.
    next_database: AtomicU64,
    /// How long `initdb` and the first start took.
    started_in: Duration,
    /// The guardian (see the module documentation); its stdin is the pipe.
    guardian: Mutex<Option<Child>>,
}

/// The server [`PgServer::shared`] started, leaked so that it lives as long
/// as the process (its guardian stops it when the process ends).
static SHARED: Mutex<Option<&'static PgServer>> = Mutex::new(None);

/// Numbers the temporary directories of this process.
static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl PgServer {
    /// Makes a new cluster in a temporary directory (`initdb`) and starts
    /// it on a free 127.0.0.1 port (`pg_ctl start`), retrying on a port
    /// someone else took meanwhile.
    pub fn start() -> Result<PgServer, PgServerError> {
        let begun = Instant::now();
        let bindir = find_bindir()?;
        let run_as = unprivileged_user()?;
        let dir = make_temp_dir(run_as)?;
        let guardian = spawn_guardian(&dir, &bindir, run_as)?;
        // From here on, dropping `server` (on an error too) stops whatever
        // was started and removes the directory.
        let server = PgServer {
            bindir,
            dir,
            port: 0,
            run_as,
            next_database: AtomicU64::new(1),
            started_in: Duration::ZERO,
            guardian: Mutex::new(Some(guardian)),
        };
        server.init_cluster()?;
        server.start_on_free_port(begun)
    }

    /// The one server of this test process, started on first use. It is
    /// stopped and its directory removed when the process ends.
    pub fn shared() -> Result<&'static PgServer, PgServerError> {
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(server) = *shared {
            return Ok(server);
        }
        let server: &'static PgServer = Box::leak(Box::new(PgServer::start()?));
        *shared = Some(server);
        Ok(server)
    }

    /// [`PgServer::shared`] for a test that needs PostgreSQL: `None` (after
    /// printing why `test` is skipped) when PostgreSQL is not installed and
    /// `CI` is not `true`; panics when it is missing under `CI=true` (CI
    /// must run these tests) or when the server fails to start.
    pub fn shared_or_skip(test: &str) -> Option<&'static PgServer> {
        match PgServer::shared() {
            Ok(server) => Some(server),
            Err(error @ PgServerError::NotInstalled { .. }) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{test}: {error} (CI=true: the PostgreSQL tests must run)"
                );
                eprintln!("SKIPPED {test}: {error}");
                None
            }
            Err(error) => panic!("{test}: could not start the test PostgreSQL server: {error}"),
        }
    }

    /// Creates a new empty database with a name unique on this server and
    /// returns its URL.
    pub fn create_database(&self) -> Result<String, PgServerError> {
        let name = format!(
            "deskside_test_{}",
            self.next_database.fetch_add(1, Ordering::Relaxed)
        );
        self.execute_on("postgres", &format!("CREATE DATABASE {name}"))
            .map_err(|source| PgServerError::Sql {
                what: format!("creating database {name}"),
                source,
            })?;
        Ok(self.url(&name))
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server the way a crash would (`pg_ctl stop -m immediate`:
    /// no checkpoint, clients cut off), for tests of what survives one.
    /// [`PgServer::start_again`] restarts it on the same port.
    /// Returns once the postmaster process is gone.
    pub fn stop_immediately(&self) {
        let postmaster = self.postmaster_pid();
        let mut stop = self.pg_ctl();
        stop.args(["-m", "immediate", "-t", PG_CTL_WAIT_S, "-w", "stop"]);
        if let Err(error) = self.run(stop, "pg_ctl stop -m immediate") {
            // Nothing to stop is not a problem; anything else is worth a
            // line in the test's output.
            if !self.data_dir().join("postmaster.pid").exists() {
                return;
            }
            eprintln!("test PostgreSQL server: {error}");
        }
        // `pg_ctl -w` returns when the pid file is gone, which the
        // postmaster removes just before it exits.
        if let Some(pid) = postmaster {
            let begun = Instant::now();
            while process_alive(pid) && begun.elapsed() < STOP_LIMIT {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the server again after [`PgServer::stop_immediately`], on
    /// the same port (its URLs stay valid), recovering from its log as
    /// after a crash.
    pub fn start_again(&self) -> Result<(), PgServerError> {
        self.pg_ctl_start(self.port)
    }

    /// How long making the cluster and starting it took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The temporary directory (`data/` is the cluster).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The postmaster's process id, while the server runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs `sql` on database `db` with a fresh connection, on a thread of
    /// its own: the `postgres` client runs its own tokio runtime, which
    /// panics when started on a thread that is inside another runtime (an
    /// async test).
    fn execute_on(&self, db: &str, sql: &str) -> Result<(), postgres::Error> {
        let url = self.url(db);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                    client.batch_execute(sql)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `initdb`, then the server's settings.
    fn init_cluster(&self) -> Result<(), PgServerError> {
        let mut initdb = self.program("initdb");
        initdb
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        self.run(initdb, "initdb")?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| PgServerError::Io { what, source }
        };
        // fsync=off only skips flushing the operating system's cache, which
        // a server crash does not lose. (synchronous_commit stays on: with it
        // off a commit is acknowledged before its WAL is written, and
        // `stop_immediately` measurably lost committed rows.)
        //
        // Trust, but only over the private socket and loopback (the
        // server listens on nothing else).
        std::fs::write(
            self.data_dir().join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .map_err(io("writing pg_hba.conf"))?;
        let settings = format!(
            "\n# deskside tests (relay/src/pg_server.rs)\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n\
             max_connections = 200\n\
             dynamic_shared_memory_type = mmap\n",
            self.dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .map_err(io("writing postgresql.conf"))
    }

    /// Starts the server on a free port, trying another one when the port
    /// was taken between the probe and the server's bind.
    fn start_on_free_port(mut self, begun: Instant) -> Result<PgServer, PgServerError> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match self.pg_ctl_start(port) {
                Ok(()) => {
                    self.port = port;
                    self.started_in = begun.elapsed();
                    return Ok(self);
                }
                Err(PgServerError::Command { .. }) if self.port_was_taken() => continue,
                Err(error) => return Err(error),
            }
        }
        Err(PgServerError::NoPort {
            log_tail: tail(&std::fs::read_to_string(self.log_path()).unwrap_or_default()),
        })
    }

    fn port_was_taken(&self) -> bool {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // Only the last start's lines matter.
        let last_start = log
            .rfind("starting PostgreSQL")
            .map_or(&log[..], |at| &log[at..]);
        last_start.contains("could not bind") || last_start.contains("Address already in use")
    }

    fn pg_ctl_start(&self, port: u16) -> Result<(), PgServerError> {
        let mut start = self.pg_ctl();
        start
            .arg("-l")
            .arg(self.log_path())
            .args(["-t", PG_CTL_WAIT_S, "-w", "-o"])
            .arg(format!("-p {port}"))
            .arg("start");
        self.run(start, "pg_ctl start").map(drop)
    }

    fn pg_ctl(&self) -> Command {
        let mut pg_ctl = self.program("pg_ctl");
        pg_ctl.arg("-D").arg(self.data_dir());
        pg_ctl
    }

    /// One of the server's programs, run as the unprivileged user when we
    /// are root, from the temporary directory, with no input.
    fn program(&self, name: &str) -> Command {
        let mut command = as_user(self.run_as, &self.bindir.join(name));
        command
            .current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, mut command: Command, what: &str) -> Result<Output, PgServerError> {
        let output = command.output().map_err(|source| PgServerError::Io {
            what: format!("running {what}"),
            source,
        })?;
        if output.status.success() {
            return Ok(output);
        }
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        Err(PgServerError::Command {
            what: what.to_owned(),
            status: output.status,
            output: tail(&printed),
            log: self.log_path().display().to_string(),
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_immediately();
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "test PostgreSQL server: could not remove {}: {error}",
                    self.dir.display()
                );
            }
        }
        // Closing the pipe wakes the guardian, which finds nothing left to
        // do and exits; waiting reaps it.
        let guardian = self
            .guardian
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut guardian) = guardian {
            drop(guardian.stdin.take());
            let _ = guardian.wait();
        }
    }
}

/// `program` as a command, run as `run_as` (through `setpriv`) when given.
fn as_user(run_as: Option<(u32, u32)>, program: &Path) -> Command {
    match run_as {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "--"])
                .arg(program);
            command
        }
    }
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: [`BINDIR_ENV`],
/// else the highest version under `/usr/lib/postgresql`, else
/// `pg_config --bindir`.
fn find_bindir() -> Result<PathBuf, PgServerError> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if complete(&dir) {
            return Ok(dir);
        }
        return Err(PgServerError::NotInstalled {
            searched: format!("{BINDIR_ENV}={}", dir.display()),
        });
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, dir)| complete(dir)) {
        return Ok(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    match from_pg_config {
        Some(dir) if complete(&dir) => Ok(dir),
        _ => Err(PgServerError::NotInstalled {
            searched: format!("{DEBIAN_LIB}/*/bin and `pg_config --bindir`"),
        }),
    }
}

/// `(uid, gid)` of `nobody` when this process is root (PostgreSQL refuses
/// to run as root), else `None`.
fn unprivileged_user() -> Result<Option<(u32, u32)>, PgServerError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(user)) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
        Ok(None) => Err(PgServerError::NoUnprivilegedUser {
            detail: "no such user".to_owned(),
        }),
        Err(error) => Err(PgServerError::NoUnprivilegedUser {
            detail: error.to_string(),
        }),
    }
}

/// A new private directory under the system's temporary directory, owned
/// by `run_as` when given.
fn make_temp_dir(run_as: Option<(u32, u32)>) -> Result<PathBuf, PgServerError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "deskside-pg-{}-{}-{nanos:08x}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |what: String| move |source| PgServerError::Io { what, source };
    std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("restricting {}", dir.display())))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(io(format!("giving {} to uid {uid}", dir.display())))?;
    }
    Ok(dir)
}

/// Starts the guardian of the server in `dir` (see the module
/// documentation), in a process group of its own so that a Ctrl-C sent to
/// the tests' group does not reach it.
fn spawn_guardian(
    dir: &Path,
    bindir: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<Child, PgServerError> {
    let stop = as_user(run_as, &bindir.join("pg_ctl"));
    let mut guardian = Command::new("sh");
    guardian
        .args(["-c", GUARDIAN_SCRIPT, "deskside-pg-guardian"])
        .arg(dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-m", "immediate", "-t", PG_CTL_WAIT_S, "-w", "stop"])
        .current_dir("/")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    guardian.spawn().map_err(|source| PgServerError::Io {
        what: "starting the test server's guardian (sh)".to_owned(),
        source,
    })
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, PgServerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| PgServerError::Io {
            what: "finding a free loopback port".to_owned(),
            source,
        })
}

/// The last lines of `text`, for error messages.
fn tail(text: &str) -> String {
    const LINES: usize = 15;
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Whether process `pid` is still running (a zombie, which nobody may reap
/// in a container, counts as gone).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    /// How long a test waits for something that should happen at once.
    const DEADLINE: Duration = Duration::from_secs(60);

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "{what} after {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A server of the test's own, or `None` when PostgreSQL is missing
    /// outside CI (the test is then skipped, saying so).
    fn own_server(test: &str) -> Option<PgServer> {
        match PgServer::start() {
            Ok(server) => Some(server),
            Err(error @ PgServerError::NotInstalled { .. }) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{error}");
                eprintln!("SKIPPED {test}: {error}");
                None
            }
            Err(error) => panic!("{error}"),
        }
    }

    fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(url, postgres::NoTls)
    }

    #[test]
    fn a_server_serves_two_separate_databases_and_leaves_nothing_when_dropped() {
        let Some(server) = own_server("pg_server::a_server_serves_two_separate_databases") else {
            return;
        };
        let created = Instant::now();
        let first = server.create_database().unwrap();
        let second = server.create_database().unwrap();
        eprintln!(
            "test PostgreSQL server: initdb and start {:?}, two databases {:?}",
            server.started_in(),
            created.elapsed()
        );
        assert_ne!(first, second);
        assert!(
            first.starts_with(&format!(
                "postgres://{SUPERUSER}@127.0.0.1:{}/",
                server.port()
            )),
            "{first}"
        );

        let mut one = connect(&first).unwrap();
        one.batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (41);")
            .unwrap();
        let sum: i64 = one.query_one("SELECT x + 1 FROM t", &[]).unwrap().get(0);
        assert_eq!(sum, 42);
        let mut two = connect(&second).unwrap();
        let tables: i64 = two
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(tables, 0, "the second database is a separate one");
        let user: String = two.query_one("SELECT current_user", &[]).unwrap().get(0);
        assert_eq!(user, SUPERUSER);
        drop((one, two));

        let pid = server.postmaster_pid().unwrap();
        assert!(process_alive(pid));
        let dir = server.dir().to_owned();
        let port = server.port();
        drop(server);
        assert!(!process_alive(pid), "the postmaster {pid} is still running");
        assert!(!dir.exists(), "{} was not removed", dir.display());
        assert!(
            connect(&format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres")).is_err(),
            "something still answers on the server's port"
        );
    }

    #[test]
    fn a_server_stopped_like_a_crash_starts_again_with_its_data() {
        let Some(server) = own_server("pg_server::a_server_stopped_like_a_crash") else {
            return;
        };
        let url = server.create_database().unwrap();
        connect(&url)
            .unwrap()
            .batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (7);")
            .unwrap();
        let pid = server.postmaster_pid().unwrap();
        server.stop_immediately();
        assert!(!process_alive(pid), "the postmaster {pid} survived");
        assert!(connect(&url).is_err(), "the stopped server still answers");

        server.start_again().unwrap();
        let x: i64 = connect(&url)
            .unwrap()
            .query_one("SELECT x FROM t", &[])
            .unwrap()
            .get(0);
        assert_eq!(x, 7);
    }

    #[test]
    fn a_port_taken_by_someone_else_is_recognised_as_such() {
        let Some(server) = own_server("pg_server::a_port_taken_by_someone_else") else {
            return;
        };
        server.stop_immediately();
        assert!(!server.port_was_taken(), "the first start bound its port");
        let squatter = TcpListener::bind(("127.0.0.1", server.port())).unwrap();
        let error = server.start_again().unwrap_err();
        assert!(matches!(error, PgServerError::Command { .. }), "{error}");
        assert!(server.port_was_taken(), "{error}");
        drop(squatter);
        server.start_again().unwrap();
        assert!(!server.port_was_taken());
        let url = server.create_database().unwrap();
        assert!(connect(&url).is_ok());
    }

    #[test]
    fn the_shared_server_is_one_server_per_process() {
        let Some(server) = PgServer::shared_or_skip("pg_server::the_shared_server") else {
            return;
        };
        let again = PgServer::shared().unwrap();
        assert!(std::ptr::eq(server, again));
        let url = server.create_database().unwrap();
        let one: i32 = connect(&url)
            .unwrap()
            .query_one("SELECT 1", &[])
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
    }

    /// Set for the child process [`child_process_holding_the_shared_server`]
    /// runs in.
    const CHILD_ENV: &str = "DESKSIDE_PG_SERVER_TEST_CHILD";

    /// Run only as a child of
    /// [`the_shared_server_dies_with_a_killed_test_process`]: starts the
    /// shared server, prints its postmaster's pid and directory, and waits
    /// to be killed.
    #[test]
    #[ignore = "run as a child process by the_shared_server_dies_with_a_killed_test_process"]
    fn child_process_holding_the_shared_server() {
        assert!(
            std::env::var_os(CHILD_ENV).is_some(),
            "only the_shared_server_dies_with_a_killed_test_process runs this test"
        );
        let server = PgServer::shared().unwrap();
        println!(
            "\nSERVER {} {}",
            server.postmaster_pid().unwrap(),
            server.dir().display()
        );
        std::io::stdout().flush().unwrap();
        std::thread::sleep(DEADLINE * 2);
    }

    #[test]
    fn the_shared_server_dies_with_a_killed_test_process() {
        if own_server_prerequisite_missing("pg_server::the_shared_server_dies") {
            return;
        }
        // This test binary, even if a rebuild replaced its file meanwhile.
        let mut child = Command::new("/proc/self/exe")
            .args([
                "--exact",
                "pg_server::tests::child_process_holding_the_shared_server",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (pid, dir) = loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(read > 0, "the child ended without starting the server");
            if let Some(rest) = line.trim().strip_prefix("SERVER ") {
                let (pid, dir) = rest.split_once(' ').unwrap();
                break (pid.parse::<u32>().unwrap(), PathBuf::from(dir));
            }
        };
        assert!(process_alive(pid));
        assert!(dir.exists());
        child.kill().unwrap(); // SIGKILL: no destructor, no atexit runs.
        child.wait().unwrap();
        wait_until("the killed process's postmaster still runs", || {
            !process_alive(pid)
        });
        wait_until(
            "the killed process's server directory is still there",
            || !dir.exists(),
        );
    }

    fn own_server_prerequisite_missing(test: &str) -> bool {
        match find_bindir() {
            Ok(_) => false,
            Err(error) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{error}");
                eprintln!("SKIPPED {test}: {error}");
                true
            }
        }
    }
}

/// The PostgreSQL schema the store makes (`store/pg_schema.sql` and the
/// PostgreSQL migrations after it) against the SQLite migrations: the same
/// schema, read back from both databases' catalogues, and the same checks,
/// exercised on both.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod schema_tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::store::Store;

    /// The columns whose ids PostgreSQL assigns (SQLite's rowid aliases
    /// that the store inserts rows without); every other id column is
    /// supplied by the relay (devices, sessions: random; audit: chained).
    const IDENTITY_COLUMNS: &[&str] = &[
        "diagnostics.id",
        "enroll_tokens.id",
        "organisations.id",
        "request_events.id",
        "requests.id",
        "technician_tokens.id",
        "ticket_deliveries.id",
    ];

    /// Tables only the PostgreSQL schema has: `audit_sequence` is what
    /// SQLite keeps in its internal `sqlite_sequence` (the largest audit id
    /// ever used), which the SQLite side leaves out too.
    /// `deskside_schema` holds the schema version (SQLite: `user_version`).
    const POSTGRES_ONLY_TABLES: &[&str] = &["audit_sequence", "deskside_schema"];

    /// One column as both backends can describe it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Column {
        name: String,
        not_null: bool,
        /// `integer`, `text`, `blob` or `real` (else what the type is).
        family: String,
        /// The default's text, without PostgreSQL's `::type` cast.
        default: Option<String>,
    }

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Table {
        /// In declaration order.
        columns: Vec<Column>,
        primary_key: Vec<String>,
        unique: BTreeSet<Vec<String>>,
        /// `(column, referenced table, referenced column)`.
        foreign_keys: BTreeSet<(String, String, String)>,
    }

    /// An index made by `CREATE INDEX` (not one behind a key).
    #[derive(Debug, PartialEq, Eq)]
    struct Index {
        table: String,
        /// Key columns; an expression as its text (`lower(hostname)`).
        keys: Vec<String>,
        partial: bool,
    }

    #[derive(Debug, Default)]
    struct Schema {
        tables: BTreeMap<String, Table>,
        indexes: BTreeMap<String, Index>,
    }

    fn family(declared: &str) -> String {
        match declared.to_ascii_lowercase().as_str() {
            "integer" | "bigint" => "integer",
            "text" => "text",
            "blob" | "bytea" => "blob",
            "real" | "double precision" => "real",
            other => return format!("other: {other}"),
        }
        .to_owned()
    }

    /// The schema the SQLite migrations make, read from a store's file.
    fn sqlite_schema(conn: &rusqlite::Connection) -> Schema {
        let strings = |sql: &str, arg: &str| -> Vec<String> {
            conn.prepare(sql)
                .unwrap()
                .query_map([arg], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut schema = Schema::default();
        let tables = strings(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE ?1",
            "sqlite\\_%' ESCAPE '\\",
        );
        let tables: Vec<String> = tables
            .into_iter()
            .filter(|name| !name.starts_with("sqlite_"))
            .collect();
        for name in tables {
            let mut table = Table::default();
            let mut primary_key = Vec::new();
            let mut statement = conn
                .prepare(
                    "SELECT name, type, \"notnull\", dflt_value, pk
                     FROM pragma_table_info(?1) ORDER BY cid",
                )
                .unwrap();
            let mut rows = statement.query([&name]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let column: String = row.get(0).unwrap();
                let declared: String = row.get(1).unwrap();
                let not_null: bool = row.get(2).unwrap();
                let pk: i64 = row.get(4).unwrap();
                if pk > 0 {
                    primary_key.push((pk, column.clone()));
                }
                table.columns.push(Column {
                    name: column,
                    // A key's columns are NOT NULL in PostgreSQL (SQLite
                    // lets a rowid table's TEXT key hold NULL).
                    not_null: not_null || pk > 0,
                    family: family(&declared),
                    default: row.get(3).unwrap(),
                });
            }
            primary_key.sort();
            table.primary_key = primary_key.into_iter().map(|(_, column)| column).collect();
            for index in strings(
                "SELECT name FROM pragma_index_list(?1) WHERE origin = 'u'",
                &name,
            ) {
                table.unique.insert(strings(
                    "SELECT name FROM pragma_index_info(?1) ORDER BY seqno",
                    &index,
                ));
            }
            let mut statement = conn
                .prepare("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list(?1)")
                .unwrap();
            table.foreign_keys = statement
                .query_map([&name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            schema.tables.insert(name, table);
        }
        let mut statement = conn
            .prepare(
                "SELECT name, tbl_name FROM sqlite_schema
                 WHERE type = 'index' AND sql IS NOT NULL",
            )
            .unwrap();
        let indexes: Vec<(String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (name, table) in indexes {
            // A NOCASE key column is `lower(column)` on PostgreSQL.
            let mut statement = conn
                .prepare(
                    "SELECT name, coll FROM pragma_index_xinfo(?1)
                     WHERE key = 1 ORDER BY seqno",
                )
                .unwrap();
            let keys = statement
                .query_map([&name], |row| {
                    let column: Option<String> = row.get(0)?;
                    let collation: String = row.get(1)?;
                    let column = column.unwrap_or_else(|| "<expression>".to_owned());
                    Ok(if collation.eq_ignore_ascii_case("NOCASE") {
                        format!("lower({column})")
                    } else {
                        column
                    })
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let partial: bool = conn
                .query_row(
                    "SELECT partial FROM pragma_index_list(?1) WHERE name = ?2",
                    [&table, &name],
                    |row| row.get(0),
                )
                .unwrap();
            schema.indexes.insert(
                name,
                Index {
                    table,
                    keys,
                    partial,
                },
            );
        }
        schema
    }

    /// The schema of a PostgreSQL database's current schema (`public`).
    fn postgres_schema(client: &mut postgres::Client) -> Schema {
        let mut schema = Schema::default();
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                &[],
            )
            .unwrap();
        for row in tables {
            let name: String = row.get(0);
            let mut table = Table::default();
            for column in client
                .query(
                    "SELECT column_name::text, is_nullable::text, data_type::text,
                            column_default::text
                     FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1
                     ORDER BY ordinal_position",
                    &[&name],
                )
                .unwrap()
            {
                let default: Option<String> = column.get(3);
                table.columns.push(Column {
                    name: column.get(0),
                    not_null: column.get::<_, String>(1) == "NO",
                    family: family(column.get(2)),
                    default: default.map(|text| match text.split_once("::") {
                        Some((value, _cast)) => value.to_owned(),
                        None => text,
                    }),
                });
            }
            let keys = client
                .query(
                    "SELECT c.contype::text,
                            array(SELECT a.attname::text
                                  FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                                  JOIN pg_attribute a
                                    ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                                  ORDER BY k.ord)
                     FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
                     WHERE t.relname = $1 AND c.contype IN ('p', 'u')",
                    &[&name],
                )
                .unwrap();
            for key in keys {
                let columns: Vec<String> = key.get(1);
                if key.get::<_, String>(0) == "p" {
                    table.primary_key = columns;
                } else {
                    table.unique.insert(columns);
                }
            }
            for key in client
                .query(
                    "SELECT a.attname::text, f.relname::text, fa.attname::text,
                            array_length(c.conkey, 1)
                     FROM pg_constraint c
                     JOIN pg_class t ON t.oid = c.conrelid
                     JOIN pg_class f ON f.oid = c.confrelid
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                     JOIN pg_attribute fa
                       ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
                     WHERE t.relname = $1 AND c.contype = 'f'",
                    &[&name],
                )
                .unwrap()
            {
                assert_eq!(
                    key.get::<_, i32>(3),
                    1,
                    "{name}: a foreign key of several columns"
                );
                table
                    .foreign_keys
                    .insert((key.get(0), key.get(1), key.get(2)));
            }
            schema.tables.insert(name, table);
        }
        for index in client
            .query(
                "SELECT ic.relname::text, tc.relname::text, i.indpred IS NOT NULL,
                        array(SELECT pg_get_indexdef(i.indexrelid, k, true)
                              FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k)
                 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_class tc ON tc.oid = i.indrelid
                 WHERE tc.relnamespace = current_schema()::regnamespace
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                                   WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                                     AND c.contype IN ('p', 'u', 'x'))",
                &[],
            )
            .unwrap()
        {
            schema.indexes.insert(
                index.get(0),
                Index {
                    table: index.get(1),
                    partial: index.get(2),
                    keys: index.get(3),
                },
            );
        }
        schema
    }

    /// What differs between the two schemas, one line each (empty when
    /// they match).
    fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
        let mut found = Vec::new();
        let names =
            |tables: &BTreeMap<String, Table>| tables.keys().cloned().collect::<BTreeSet<_>>();
        let (lite_tables, pg_tables) = (names(&sqlite.tables), names(&postgres.tables));
        for missing in lite_tables.difference(&pg_tables) {
            found.push(format!("table {missing} is missing on PostgreSQL"));
        }
        for extra in pg_tables.difference(&lite_tables) {
            if POSTGRES_ONLY_TABLES.contains(&extra.as_str()) {
                continue;
            }
            found.push(format!("table {extra} is only on PostgreSQL"));
        }
        for name in lite_tables.intersection(&pg_tables) {
            let (lite, pg) = (&sqlite.tables[name], &postgres.tables[name]);
            let column_names = |table: &Table| -> Vec<String> {
                table.columns.iter().map(|c| c.name.clone()).collect()
            };
            if column_names(lite) != column_names(pg) {
                found.push(format!(
                    "{name}: columns {:?} on SQLite, {:?} on PostgreSQL",
                    column_names(lite),
                    column_names(pg)
                ));
            }
            for column in &lite.columns {
                match pg.columns.iter().find(|c| c.name == column.name) {
                    Some(other) if other != column => found.push(format!(
                        "{name}.{}: {column:?} on SQLite, {other:?} on PostgreSQL",
                        column.name
                    )),
                    _ => {}
                }
            }
            if lite.primary_key != pg.primary_key {
                found.push(format!(
                    "{name}: primary key {:?} on SQLite, {:?} on PostgreSQL",
                    lite.primary_key, pg.primary_key
                ));
            }
            if lite.unique != pg.unique {
                found.push(format!(
                    "{name}: unique {:?} on SQLite, {:?} on PostgreSQL",
                    lite.unique, pg.unique
                ));
            }
            if lite.foreign_keys != pg.foreign_keys {
                found.push(format!(
                    "{name}: foreign keys {:?} on SQLite, {:?} on PostgreSQL",
                    lite.foreign_keys, pg.foreign_keys
                ));
            }
        }
        for (name, index) in &sqlite.indexes {
            match postgres.indexes.get(name) {
                None => found.push(format!("index {name} is missing on PostgreSQL")),
                Some(other) if other != index => found.push(format!(
                    "index {name}: {index:?} on SQLite, {other:?} on PostgreSQL"
                )),
                Some(_) => {}
            }
        }
        for name in postgres.indexes.keys() {
            if !sqlite.indexes.contains_key(name) {
                found.push(format!("index {name} is only on PostgreSQL"));
            }
        }
        found
    }

    /// A file store made by the real SQLite migrations, and a connection
    /// to read it.
    fn migrated_sqlite() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(Store::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        (dir, conn)
    }

    /// A fresh database of the shared server migrated as the store does
    /// it (`pg_schema.sql`, then the PostgreSQL migrations after it).
    fn migrated_postgres(server: &PgServer) -> postgres::Client {
        let url = server.create_database().unwrap();
        drop(Store::open_postgres(&url).unwrap());
        postgres::Client::connect(&url, postgres::NoTls).unwrap()
    }

    #[test]
    fn the_postgresql_schema_matches_the_sqlite_migrations() {
        let Some(server) = PgServer::shared_or_skip("pg_server::the_postgresql_schema_matches")
        else {
            return;
        };
        let (_dir, sqlite) = migrated_sqlite();
        let version: i64 = sqlite
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, i64::from(crate::store::SCHEMA_VERSION));
        let lite = sqlite_schema(&sqlite);
        let mut client = migrated_postgres(server);
        let pg = postgres_schema(&mut client);
        // The SQLite side is read for real (not an empty comparison).
        assert!(lite.tables.len() >= 15, "{:?}", lite.tables.keys());
        assert!(lite.indexes["sessions_open"].partial);
        assert_eq!(
            lite.indexes["devices_by_org_hostname"].keys,
            ["org_id", "lower(hostname)"]
        );
        assert!(lite.tables["requests"]
            .unique
            .contains(&vec!["device_id".to_owned(), "client_id".to_owned()]));
        let foreign_keys: usize = lite.tables.values().map(|t| t.foreign_keys.len()).sum();
        assert!(foreign_keys >= 20, "{foreign_keys} foreign keys");
        assert_eq!(differences(&lite, &pg), Vec::<String>::new());

        // PostgreSQL-only parts of the contract: which ids are
        // identities, and byte-wise text (collation "C") everywhere.
        let identities: Vec<String> = client
            .query(
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(identities, IDENTITY_COLUMNS);
        let not_c: Vec<String> = client
            .query(
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND data_type = 'text'
                   AND collation_name IS DISTINCT FROM 'C'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(
            not_c.is_empty(),
            "text columns without COLLATE \"C\": {not_c:?}"
        );
    }

    #[test]
    fn the_comparison_notices_a_missing_column_or_index() {
        let Some(server) = PgServer::shared_or_skip("pg_server::the_comparison_notices") else {
            return;
        };
        let (_dir, sqlite) = migrated_sqlite();
        let lite = sqlite_schema(&sqlite);
        let mut client = migrated_postgres(server);
        client
            .batch_execute(
                "ALTER TABLE requests DROP COLUMN category CASCADE;
                 DROP INDEX sessions_open;
                 CREATE INDEX sessions_open ON sessions(id);
                 ALTER TABLE devices ALTER COLUMN last_address SET NOT NULL;",
            )
            .unwrap();
        let found = differences(&lite, &postgres_schema(&mut client));
        let mentions = |what: &str| found.iter().any(|line| line.contains(what));
        assert!(mentions("requests: columns"), "{found:#?}");
        // Dropping the column dropped the index that used it.
        assert!(mentions("index requests_window is missing"), "{found:#?}");
        assert!(mentions("index sessions_open:"), "{found:#?}");
        assert!(mentions("devices.last_address"), "{found:#?}");
    }

    /// Runs the same statements on both backends.
    trait Backend {
        fn name(&self) -> &'static str;
        /// A blob literal of the given bytes.
        fn blob(&self, bytes: &[u8]) -> String;
        fn run_sql(&mut self, sql: &str) -> Result<(), String>;
    }

    impl Backend for rusqlite::Connection {
        fn name(&self) -> &'static str {
            "SQLite"
        }
        fn blob(&self, bytes: &[u8]) -> String {
            format!("X'{}'", hex::encode(bytes))
        }
        fn run_sql(&mut self, sql: &str) -> Result<(), String> {
            self.execute_batch(sql).map_err(|error| error.to_string())
        }
    }

    impl Backend for postgres::Client {
        fn name(&self) -> &'static str {
            "PostgreSQL"
        }
        fn blob(&self, bytes: &[u8]) -> String {
            format!("'\\x{}'::bytea", hex::encode(bytes))
        }
        fn run_sql(&mut self, sql: &str) -> Result<(), String> {
            self.batch_execute(sql)
                .map_err(|error| match error.as_db_error() {
                    Some(db) => db.message().to_owned(),
                    None => error.to_string(),
                })
        }
    }

    /// One row in every table a check is tried on.
    fn insert_rows(db: &mut dyn Backend) {
        let (a, b, key) = (db.blob(&[0xaa; 32]), db.blob(&[0xbb; 32]), db.blob(&[1]));
        let sql = format!(
            "INSERT INTO organisations (id, name, created_at) VALUES (1, 'Acme', 1);
             INSERT INTO technician_tokens (id, org_id, name, role, token_hash, created_at)
                 VALUES (1, 1, 'ana', 'technician', {a}, 1);
             INSERT INTO enroll_tokens (id, org_id, token_hash, uses_left, uses_total,
                                        expires_at, created_at)
                 VALUES (1, 1, {a}, 1, 1, 9, 1);
             INSERT INTO devices (id, org_id, public_key, hostname, os, agent_version,
                                  first_seen, last_seen)
                 VALUES (1, 1, {key}, 'laptop', 'linux', '0.1', 1, 1);
             INSERT INTO diagnostics (id, device_id, org_id, received_at, requested_by,
                                      snapshot, verdict)
                 VALUES (1, 1, 1, 1, 'ana', '{{}}', '{{}}');
             INSERT INTO sessions (id, org_id, device_id, technician_id, capabilities,
                                   reason, requested_at)
                 VALUES (1, 1, 1, 1, '{{}}', 'printer', 1);
             INSERT INTO requests (id, org_id, device_id, client_id, answers, failures,
                                   priority, status, created_at)
                 VALUES (1, 1, 1, 'c1', '{{}}', '[]', 3, 'new', 1);
             INSERT INTO audit (id, at, org_id, actor, action, target, detail, prev_hash, hash)
                 VALUES (1, 1, 1, 'system', 'org.create', 'org:1', '{{}}', {a}, {b});"
        );
        let name = db.name();
        db.run_sql(&sql)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }

    #[test]
    fn both_backends_refuse_the_same_bad_values() {
        let Some(server) = PgServer::shared_or_skip("pg_server::both_backends_refuse") else {
            return;
        };
        let (_dir, mut sqlite) = migrated_sqlite();
        let mut postgres = migrated_postgres(server);
        for db in [&mut sqlite as &mut dyn Backend, &mut postgres] {
            insert_rows(db);
            let name = db.name();
            let (short, empty, c) = (db.blob(&[0xcc; 31]), db.blob(&[]), db.blob(&[0xcc; 32]));
            // (table, a refused assignment, an accepted one).
            let cases = [
                (
                    "organisations",
                    "settings = '{'".to_owned(),
                    "settings = '{\"a\": 1}'".to_owned(),
                ),
                (
                    "technician_tokens",
                    "role = 'root'".into(),
                    "role = 'admin'".into(),
                ),
                (
                    "technician_tokens",
                    format!("token_hash = {short}"),
                    format!("token_hash = {c}"),
                ),
                (
                    "technician_tokens",
                    format!("session_key = {short}"),
                    format!("session_key = {c}"),
                ),
                (
                    "technician_tokens",
                    "org_id = 99".into(),
                    "org_id = 1".into(),
                ),
                (
                    "enroll_tokens",
                    "uses_left = -1".into(),
                    "uses_left = 0".into(),
                ),
                (
                    "enroll_tokens",
                    "uses_total = -1".into(),
                    "uses_total = 0".into(),
                ),
                (
                    "enroll_tokens",
                    format!("token_hash = {short}"),
                    format!("token_hash = {c}"),
                ),
                (
                    "enroll_tokens",
                    "created_by = 99".into(),
                    "created_by = 1".into(),
                ),
                (
                    "devices",
                    format!("public_key = {empty}"),
                    format!("public_key = {c}"),
                ),
                (
                    "devices",
                    "hostname = NULL".into(),
                    "hostname = 'LAPTOP'".into(),
                ),
                (
                    "devices",
                    "enroll_token_id = 99".into(),
                    "enroll_token_id = 1".into(),
                ),
                (
                    "diagnostics",
                    "snapshot = 'not json'".into(),
                    "snapshot = '[]'".into(),
                ),
                (
                    "diagnostics",
                    "verdict = '{'".into(),
                    "verdict = '[]'".into(),
                ),
                (
                    "diagnostics",
                    "device_id = 99".into(),
                    "device_id = 1".into(),
                ),
                (
                    "sessions",
                    "capabilities = '{'".into(),
                    "capabilities = '{}'".into(),
                ),
                ("sessions", "granted = '{'".into(), "granted = NULL".into()),
                ("requests", "answers = '{'".into(), "answers = '[]'".into()),
                (
                    "requests",
                    "failures = '['".into(),
                    "failures = '[]'".into(),
                ),
                (
                    "requests",
                    "assignee_id = 99".into(),
                    "assignee_id = 1".into(),
                ),
            ];
            for (table, bad, good) in cases {
                let update = |set: &str| format!("UPDATE {table} SET {set} WHERE id = 1");
                assert!(
                    db.run_sql(&update(&bad)).is_err(),
                    "{name}: {table}: {bad} was accepted"
                );
                db.run_sql(&update(&good))
                    .unwrap_or_else(|error| panic!("{name}: {table}: {good}: {error}"));
            }
            // The audit log: an insert with a bad detail or hash fails,
            // and no row can be changed or deleted.
            let (a, b) = (db.blob(&[0xaa; 32]), db.blob(&[0xbb; 32]));
            let insert = |detail: &str, prev: &str| {
                format!(
                    "INSERT INTO audit (id, at, org_id, actor, action, target, detail,
                                        prev_hash, hash)
                     VALUES (2, 2, 1, 'system', 'x', 'y', '{detail}', {prev}, {b})"
                )
            };
            assert!(
                db.run_sql(&insert("{", &a)).is_err(),
                "{name}: audit detail"
            );
            assert!(
                db.run_sql(&insert("{}", &short)).is_err(),
                "{name}: audit hash"
            );
            db.run_sql(&insert("{}", &a)).unwrap();
            let changed = db
                .run_sql("UPDATE audit SET actor = 'mallory'")
                .unwrap_err();
            assert!(
                changed.contains("the audit log is append-only: its rows cannot be changed"),
                "{name}: {changed}"
            );
            let deleted = db.run_sql("DELETE FROM audit WHERE id = 2").unwrap_err();
            assert!(
                deleted.contains("the audit log is append-only: its rows cannot be deleted"),
                "{name}: {deleted}"
            );
        }
        let truncated = postgres.run_sql("TRUNCATE audit").unwrap_err();
        assert!(truncated.contains("append-only"), "{truncated}");
        let rows: i64 = postgres
            .query_one("SELECT count(*) FROM audit", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows, 2);
    }

    #[test]
    fn host_names_compare_like_sqlite_nocase_and_text_orders_by_bytes() {
        let Some(server) = PgServer::shared_or_skip("pg_server::host_names_compare") else {
            return;
        };
        let (_dir, mut sqlite) = migrated_sqlite();
        let mut postgres = migrated_postgres(server);
        for db in [&mut sqlite as &mut dyn Backend, &mut postgres] {
            insert_rows(db);
            let (two, three) = (db.blob(&[2]), db.blob(&[3]));
            db.run_sql(&format!(
                "INSERT INTO devices (id, org_id, public_key, hostname, os, agent_version,
                                      first_seen, last_seen)
                 VALUES (2, 1, {two}, 'Zed', 'linux', '0.1', 1, 1),
                        (3, 1, {three}, 'ÉCOLE', 'linux', '0.1', 1, 1)"
            ))
            .unwrap();
        }
        let lite = |sql: &str| -> Vec<String> {
            sqlite
                .prepare(sql)
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut pg = |sql: &str| -> Vec<String> {
            postgres
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect()
        };
        let order = "SELECT hostname FROM devices ORDER BY hostname";
        assert_eq!(
            lite(order),
            ["Zed", "laptop", "ÉCOLE"],
            "byte order on SQLite"
        );
        assert_eq!(pg(order), lite(order));
        // NOCASE folds ASCII letters only; so does lower() under "C".
        for name in ["LAPTOP", "zed", "école"] {
            let by_nocase = lite(&format!(
                "SELECT hostname FROM devices WHERE hostname = '{name}' COLLATE NOCASE"
            ));
            let by_lower = pg(&format!(
                "SELECT hostname FROM devices WHERE lower(hostname) = lower('{name}')"
            ));
            assert_eq!(by_lower, by_nocase, "{name}");
        }
    }
}

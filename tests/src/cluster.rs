//! Several real relays sharing one PostgreSQL store, for the multi-relay
//! tests (issue 14): each `deskside-relay serve --dev --store URL` runs as
//! its own process with its own data directory (certificate, relay id) and
//! port on loopback; the first one makes the organisation and its admin
//! token, which logs in on every relay (the token lives in the shared
//! store). A relay can be killed with SIGKILL and restarted on its port.
//!
//! The PostgreSQL server is [`PgServer::shared_or_skip`]'s: a test that
//! cannot have it is skipped visibly, or fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use deskside_protocol::DeviceId;
use deskside_relay::audit_anchor::ANCHOR_KEY_FILE;
use deskside_relay::identifier_key::IDENTIFIER_KEY_FILE;
use deskside_relay::pg_server::PgServer;
use deskside_relay::store::{RelayRecord, Store};
use serde_json::Value;

use crate::{bin, run, Console, Relay, Run, World};

/// Copies the keys every relay on one store must share (README, "Several
/// relays on one PostgreSQL database") from the first relay's data
/// directory `from` into the new data directory `to` (made owner-only),
/// before that relay's first start.
pub fn share_keys(from: &Path, to: &Path) {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    for name in [IDENTIFIER_KEY_FILE, ANCHOR_KEY_FILE] {
        let target = to.join(name);
        std::fs::copy(from.join(name), &target)
            .unwrap_or_else(|e| panic!("cannot copy {name} into {}: {e}", to.display()));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("cannot make {} owner-only: {e}", target.display()));
    }
}

/// The relay program the cluster runs: `deskside-relay` beside the tests,
/// or the path in `DESKSIDE_CLUSTER_RELAY` (another build, to show that a
/// test fails against a relay with a property removed, e.g. the store's
/// write lock).
fn relay_program() -> String {
    std::env::var("DESKSIDE_CLUSTER_RELAY").unwrap_or_else(|_| "deskside-relay".to_owned())
}

/// N relays on one PostgreSQL database. Relays are named `relay-a`,
/// `relay-b`, … (their logs and data directories in the world).
#[derive(Debug)]
pub struct Cluster {
    /// The shared store (`postgres://…`, no password).
    pub store_url: String,
    /// The running relays; `None` while killed.
    relays: Vec<Option<Relay>>,
    /// Killed relays, kept so that their logs print if the test fails.
    dead: Vec<Relay>,
    /// Each relay's data directory.
    data_dirs: Vec<PathBuf>,
    /// Each relay's port, kept across restarts.
    ports: Vec<u16>,
    /// The `serve` flags every relay gets after `--store`.
    extra: Vec<String>,
    /// The organisation's first admin token (made by the first relay).
    admin_token: String,
}

/// The letter naming relay `index`.
fn letter(index: usize) -> char {
    char::from(b'a' + u8::try_from(index % 26).unwrap_or(0))
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Cluster {
    /// Starts `n` relays on a fresh database of the test PostgreSQL server,
    /// one after the other (the first one makes the organisation), each
    /// with `extra` `serve` flags. `None` when PostgreSQL is missing and
    /// the test is skipped (see [`PgServer::shared_or_skip`]).
    pub fn start(world: &mut World, test: &str, n: usize, extra: &[&str]) -> Option<Cluster> {
        let pg = PgServer::shared_or_skip(test)?;
        let store_url = pg
            .create_database()
            .unwrap_or_else(|e| panic!("{test}: cannot create a database: {e}"));
        let mut cluster = Cluster {
            store_url,
            relays: Vec::new(),
            dead: Vec::new(),
            data_dirs: Vec::new(),
            ports: Vec::new(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            admin_token: String::new(),
        };
        for index in 0..n {
            cluster
                .data_dirs
                .push(world.path(&format!("relay-{}-data", letter(index))));
            cluster.ports.push(0);
            cluster.relays.push(None);
            let relay = cluster.spawn(world, index);
            if index == 0 {
                cluster.admin_token = relay.admin_token.clone();
            }
            cluster.ports[index] = relay.port();
            cluster.relays[index] = Some(relay);
        }
        Some(cluster)
    }

    fn spawn(&self, world: &mut World, index: usize) -> Relay {
        if index > 0 && !self.data_dirs[index].exists() {
            share_keys(&self.data_dirs[0], &self.data_dirs[index]);
        }
        let listen = format!("127.0.0.1:{}", self.ports[index]);
        let mut extra: Vec<&str> = vec!["--store", &self.store_url];
        extra.extend(self.extra.iter().map(String::as_str));
        let token = (index > 0).then_some(self.admin_token.as_str());
        let program = relay_program();
        world.relay_named(
            &format!("relay-{}", letter(index)),
            &program,
            self.data_dirs[index].clone(),
            &["--dev", "--listen", &listen],
            &extra,
            token,
        )
    }

    /// How many relays the cluster has (running or killed).
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether the cluster has no relay.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Relay `index`; panics while it is killed.
    pub fn relay(&self, index: usize) -> &Relay {
        self.relays[index]
            .as_ref()
            .unwrap_or_else(|| panic!("relay-{} is not running", letter(index)))
    }

    /// The organisation's first admin token, valid on every relay.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Relay `index`'s id in the directory (its data directory's `relay-id`).
    pub fn relay_id(&self, index: usize) -> String {
        let path = self.data_dirs[index].join("relay-id");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// A console `name` logged in on relay `index` as the first admin.
    pub fn admin_console(&self, world: &World, index: usize, name: &str) -> Console {
        let console = world.console(name);
        console.login(self.relay(index), &self.admin_token).ok();
        console
    }

    /// Kills relay `index` with SIGKILL (no deregistration, no clean
    /// close: a crash).
    pub fn kill(&mut self, index: usize) {
        let mut relay = self.relays[index]
            .take()
            .unwrap_or_else(|| panic!("relay-{} is not running", letter(index)));
        relay.proc.kill();
        self.dead.push(relay);
    }

    /// Starts relay `index` again after [`Cluster::kill`], on its port and
    /// data directory (same certificate, same relay id).
    pub fn restart(&mut self, world: &mut World, index: usize) -> &Relay {
        assert!(
            self.relays[index].is_none(),
            "relay-{} is still running",
            letter(index)
        );
        let relay = self.spawn(world, index);
        self.relays[index] = Some(relay);
        self.relay(index)
    }

    /// A store handle on the shared database, for checks a console cannot
    /// make (which relay holds a device).
    pub fn store(&self) -> Store {
        Store::open_url(&self.store_url).expect("open the shared store")
    }

    /// The relay the directory says holds `device` now (its record), with
    /// `lease` seconds of lease (the relays' idle timeout / 2).
    pub fn holder(&self, store: &Store, device: &str, lease: i64) -> Option<RelayRecord> {
        let device: DeviceId = device.parse().expect("a device id");
        store
            .device_holder(device, now_secs(), lease)
            .expect("read the directory")
    }

    /// Which relay of the cluster has directory id `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        (0..self.len()).find(|&index| self.relay_id(index) == id)
    }

    /// `deskside-relay audit verify --store URL --json` (the CLI of the
    /// relay, against the shared database), with its JSON report.
    pub fn audit_verify(&self) -> (Run, Option<Value>) {
        let out = run(Command::new(bin("deskside-relay"))
            .args([
                "audit",
                "verify",
                "--json",
                "--store",
                &self.store_url,
                "--data-dir",
            ])
            .arg(&self.data_dirs[0]));
        let report = out
            .stdout
            .lines()
            .find_map(|line| serde_json::from_str::<Value>(line).ok());
        (out, report)
    }
}

//! A whole remote-support stage for session tests and benchmarks: a relay,
//! an enrolled agent service with its session helper on one Xvfb display, a
//! test X client there, and a logged-in console whose windows go to a
//! second display.

use std::process::{Command, Stdio};
use std::time::Duration;

use deskside_desktop::xvfb::Xvfb;
use serde_json::Value;

use crate::x11::{self, Lines};
use crate::{bin, wait_for, Agent, Console, Proc, Relay, World};

/// What to start.
#[derive(Clone, Debug)]
pub struct StageOptions {
    /// `deskside-relay`, or the test-only `deskside-spy-relay`.
    pub relay_program: String,
    /// Extra `serve` flags.
    pub relay_args: Vec<String>,
    /// The employee's screen.
    pub agent_screen: (u32, u32),
    /// The technician's screen.
    pub console_screen: (u32, u32),
    /// Display numbers to use.
    pub displays: std::ops::RangeInclusive<u16>,
    /// Flags of `deskside-xclient` (it covers the whole agent screen).
    pub xclient_args: Vec<String>,
    /// Monitors side by side on the agent's screen (RandR monitors).
    pub agent_monitors: u16,
}

/// Where the relay listens and how the agent service is started, when not
/// both on loopback in this network namespace (the default).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Serve the relay on this address (`IP:0`) with a configuration file
    /// (`self_signed = true`) instead of `--dev`, which binds loopback only.
    pub relay_listen: Option<String>,
    /// The agent service's command prefix (`ip netns exec NAME`: the agent
    /// in another network namespace, [`crate::netns::Laptop`]).
    pub agent_prefix: Vec<String>,
}

/// A relay, an enrolled agent with its session helper on the agent's
/// display, a logged-in console, and the test X client.
#[allow(missing_debug_implementations)] // Xvfb has no Debug
pub struct SessionStage {
    pub relay: Relay,
    relay_program: String,
    relay_args: Vec<String>,
    pub console: Console,
    pub agent: Agent,
    pub device: String,
    pub agent_proc: Proc,
    pub helper: Proc,
    pub xclient: Proc,
    pub xevents: Lines,
    pub agent_x: Xvfb,
    pub console_x: Xvfb,
    // Last: the processes above print their logs when dropped, and the
    // logs live in the world's directory.
    pub world: World,
}

impl SessionStage {
    /// Starts everything; panics (with logs) when a part does not come up.
    pub fn start(options: &StageOptions) -> Self {
        Self::start_placed(options, &Placement::default())
    }

    /// Like [`SessionStage::start`], with the relay and the agent service
    /// placed as `placement` says.
    pub fn start_placed(options: &StageOptions, placement: &Placement) -> Self {
        let (agent_w, agent_h) = options.agent_screen;
        let extra: Vec<&str> = options.relay_args.iter().map(String::as_str).collect();
        let agent_x =
            Xvfb::start_in(options.displays.clone(), agent_w, agent_h).expect("agent Xvfb");
        if options.agent_monitors > 1 {
            agent_x
                .split_monitors(options.agent_monitors)
                .expect("monitors on the agent's display");
        }
        let console_x = Xvfb::start_in(
            options.displays.clone(),
            options.console_screen.0,
            options.console_screen.1,
        )
        .expect("console Xvfb");
        let mut world = World::new();
        let relay = match &placement.relay_listen {
            None => world.relay_program(&options.relay_program, None, &extra),
            Some(listen) => {
                let config = world.path("relay.toml");
                std::fs::write(&config, "self_signed = true\n").expect("write relay.toml");
                let config = config.to_string_lossy().into_owned();
                world.relay_serving(
                    &options.relay_program,
                    &["--config", &config, "--listen", listen],
                    &extra,
                )
            }
        };
        let console = world.console("tech");
        console.login_admin(&relay);
        let agent = world.agent("laptop");
        let device = agent.enroll(&console.enroll_token(1, "1h"));
        let agent_proc = world.run_agent_through(&agent, &placement.agent_prefix);
        console.wait_status(&device, "online", Duration::from_secs(20));
        let mut xclient = Command::new(bin("deskside-xclient"));
        xclient
            .args(&options.xclient_args)
            .env("DISPLAY", agent_x.display());
        if !options.xclient_args.iter().any(|a| a == "--geometry") {
            xclient.args(["--geometry", &format!("{agent_w}x{agent_h}+0+0")]);
        }
        let (xclient, stdout) = world.spawn("xclient", xclient);
        let xevents = Lines::new(stdout);
        let ready = xevents.until(Duration::from_secs(20), |v| v["type"] == "ready");
        assert!(
            ready.iter().any(|v| v["type"] == "ready"),
            "the X client did not start: {}",
            xclient.log()
        );
        let mut helper = Command::new(bin("deskside-agent"));
        helper
            .arg("session-helper")
            .arg("--socket")
            .arg(agent.state_dir.join("session.sock"))
            .env("DISPLAY", agent_x.display())
            .env(
                "RUST_LOG",
                std::env::var("DESKSIDE_HELPER_LOG")
                    .unwrap_or_else(|_| "info,deskside_agent=debug".into()),
            )
            .env("WINIT_X11_SCALE_FACTOR", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1");
        let (helper, _) = world.spawn("helper", helper);
        wait_for("the helper to connect", Duration::from_secs(20), || {
            agent_proc
                .log()
                .contains("session helper connected")
                .then_some(())
        });
        SessionStage {
            world,
            relay,
            relay_program: options.relay_program.clone(),
            relay_args: options.relay_args.clone(),
            console,
            agent,
            device,
            agent_proc,
            helper,
            xclient,
            xevents,
            agent_x,
            console_x,
        }
    }

    /// `deskside session` in the background, with its window on the
    /// console's display.
    pub fn session(&mut self, extra: &[&str]) -> (Proc, Lines) {
        let mut command = Command::new(bin("deskside"));
        command
            .arg("--profile")
            .arg(&self.console.profile)
            .args([
                "--json",
                "session",
                &self.device,
                "--reason",
                "printer setup",
            ])
            .args(extra)
            .env("DISPLAY", self.console_x.display())
            .env("WINIT_X11_SCALE_FACTOR", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        let (proc, stdout) = self.world.spawn("console-session", command);
        (proc, Lines::new(stdout))
    }

    /// Clicks a consent button (`accept` or `refuse`) on the agent's display,
    /// as a person would: again if the dialog is still open a moment later
    /// (on a loaded machine the first click can land before the dialog has
    /// laid out its buttons).
    pub fn answer_consent(&self, accept: bool) {
        x11::answer_consent(
            self.agent_x.display(),
            accept,
            Duration::from_secs(30),
            Duration::from_secs(3),
            || self.helper.log(),
        );
    }

    /// Puts a `deskside-impair` proxy between the console and the relay
    /// (the console logs in again through it) and returns the proxy, to
    /// freeze (SIGSTOP) for a network outage on the console's side only.
    pub fn console_through_proxy(&mut self) -> Proc {
        self.console_through_impaired_proxy(&[])
    }

    /// Like [`SessionStage::console_through_proxy`], with `deskside-impair`
    /// flags shaping the console's path (`--delay 150ms`, `--loss 1%`…).
    pub fn console_through_impaired_proxy(&mut self, shape: &[&str]) -> Proc {
        let (proxy, listen) = self.impair_proxy("console-proxy", shape);
        self.console
            .run(&[
                "login",
                "--relay",
                &listen,
                "--fingerprint",
                &self.relay.fingerprint,
                "--token",
                &self.relay.admin_token,
                "--json",
            ])
            .ok();
        proxy
    }

    /// Puts a `deskside-impair` proxy shaped by `shape` between the agent
    /// and the relay: the employee's home link. The agent is stopped, its
    /// enrolled relay address pointed at the proxy (the relay's certificate
    /// stays pinned) and started again; the session helper reconnects to it
    /// by itself. Returns the proxy.
    pub fn agent_through_impaired_proxy(&mut self, shape: &[&str]) -> Proc {
        let (proxy, listen) = self.impair_proxy("agent-proxy", shape);
        self.agent_proc.terminate();
        let identity = self.agent.state_dir.join("identity.json");
        let mut enrollment: Value =
            serde_json::from_slice(&std::fs::read(&identity).expect("identity.json"))
                .expect("json");
        enrollment["relay"] = Value::String(listen);
        std::fs::write(&identity, enrollment.to_string()).expect("write identity.json");
        self.agent_proc = self.world.run_agent(&self.agent);
        wait_for(
            "the helper to reconnect to the restarted agent",
            Duration::from_secs(30),
            || {
                self.agent_proc
                    .log()
                    .contains("session helper connected")
                    .then_some(())
            },
        );
        self.console
            .wait_status(&self.device, "online", Duration::from_secs(30));
        proxy
    }

    /// Starts a `deskside-impair` proxy (log `name`) in front of the relay
    /// with `shape`'s flags; returns it and the address it listens on.
    fn impair_proxy(&mut self, name: &str, shape: &[&str]) -> (Proc, String) {
        let mut impair = Command::new(bin("deskside-impair"));
        impair.args(["--upstream", &self.relay.addr]).args(shape);
        let (proxy, stdout) = self.world.spawn(name, impair);
        let ready = Lines::new(stdout).until(Duration::from_secs(10), |v| v["type"] == "ready");
        let listen = ready
            .iter()
            .find(|v| v["type"] == "ready")
            .and_then(|v| v["listen"].as_str())
            .unwrap_or_else(|| panic!("the proxy did not start: {}", proxy.log()))
            .to_owned();
        (proxy, listen)
    }

    /// Kills the relay (SIGKILL: no goodbye to anyone) and starts it again
    /// on the same port with the same data.
    pub fn restart_relay(&mut self) {
        let port = self.relay.port();
        self.relay.proc.kill();
        let program = self.relay_program.clone();
        let args = self.relay_args.clone();
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        self.relay = self.world.relay_program(&program, Some(port), &extra);
    }

    pub fn audit(&self) -> Vec<Value> {
        self.console
            .run(&["--json", "audit", "list", "--device", &self.device])
            .ok()
            .json_lines()
    }

    /// Waits until the relay logged a client (agent or console) moving its
    /// connection to `ip` (QUIC migration).
    pub fn wait_relay_saw_move_to(&self, ip: &str) {
        let to = format!("to={ip}:");
        wait_for(
            &format!("the relay to log a migration to {ip}"),
            Duration::from_secs(10),
            || {
                self.relay
                    .proc
                    .log()
                    .lines()
                    .any(|l| l.contains("client moved to a new network path") && l.contains(&to))
                    .then_some(())
            },
        );
    }

    /// The audit rows of one session, consented once, ended once: the
    /// counts of `session.request`, `session.consent` and `session.end`.
    pub fn session_audit_counts(&self) -> [usize; 3] {
        let audit = self.audit();
        ["session.request", "session.consent", "session.end"]
            .map(|action| audit.iter().filter(|v| v["action"] == action).count())
    }
}

/// The `session_end` line among a headless console's `lines`; panics with
/// the console's `log` when there is none.
pub fn session_end<'a>(lines: &'a [Value], log: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["type"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end: {lines:?}\n{log}"))
}

/// A session that had to run its whole `--duration` (through network
/// switches, say): the technician's console ended it, and among the
/// console's `lines` after the consent it never waited for consent again.
/// `context` (how long it should have lasted, whose log) goes into the
/// failure message.
pub fn assert_ran_its_course_on_one_consent(lines: &[Value], log: &str, context: &str) {
    let end = session_end(lines, log);
    assert_eq!(
        end["ended_by"], "technician",
        "the session did not run its course ({context}): {end}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|v| v["state"] == "waiting_for_consent")
            .count(),
        0,
        "the console asked for consent again ({context})"
    );
}

/// Now, in µs since the Unix epoch (the clock the headless console stamps
/// `frame_counter` lines with).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The frame gap each network switch caused, from the headless console's
/// `lines` and the times the switches were asked for (`switched_at`, µs):
/// the longest interval between consecutive decoded frames that ends
/// after the switch and starts before it + 2 s (so it includes the normal
/// interval between two frames). Panics, with `log`, when a switch has no
/// frames around it or fewer than 10 frames came after the last one.
pub fn switch_gaps(lines: &[Value], switched_at: &[i64], log: &str) -> Vec<Duration> {
    let frames: Vec<i64> = lines
        .iter()
        .filter(|v| v["type"] == "frame_counter")
        .filter_map(|v| v["unix_us"].as_i64())
        .collect();
    let gaps = switched_at
        .iter()
        .map(|&at| {
            frames
                .windows(2)
                .filter(|w| w[1] > at && w[0] < at + 2_000_000)
                .map(|w| w[1] - w[0])
                .max()
                .map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0)))
                .unwrap_or_else(|| panic!("no frames around the switch at {at}: {frames:?}\n{log}"))
        })
        .collect();
    let last = switched_at.last().copied().unwrap_or(i64::MIN);
    let after_last = frames.iter().filter(|&&f| f > last).count();
    assert!(
        after_last >= 10,
        "only {after_last} frames after the last switch"
    );
    gaps
}

//! End-to-end tests of the command lines a new user types first: the
//! README's commands, fleet filters, refusals that must come once, shell
//! completions, and a relay whose configuration is wrong.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deskside_tests::{bin, Run, World};

fn run(program: &str, args: &[&str]) -> Run {
    let output = Command::new(bin(program))
        .args(args)
        .env_remove("DESKSIDE_PROFILE")
        .env_remove("DESKSIDE_RELAY_CONFIG")
        .env_remove("DESKSIDE_RELAY_DATA")
        // Help texts follow the locale; these tests read the English ones.
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Splits a shell line into words: quotes group, `#` outside quotes starts a
/// comment. Enough for the README's examples (no substitutions).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

const BINARIES: [&str; 3] = ["deskside", "deskside-agent", "deskside-relay"];

/// The `deskside…` command lines in the README's fenced code blocks, as
/// (binary, arguments, the line as written).
fn readme_commands(readme: &str) -> Vec<(String, Vec<String>, String)> {
    let mut found = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let mut words = shell_words(line);
        if words.first().map(String::as_str) == Some("sudo") {
            words.remove(0);
            if words.first().map(String::as_str) == Some("-u") && words.len() > 1 {
                words.drain(..2);
            }
        }
        // Skip `VAR=value` and paths to the binaries' directory.
        let Some(at) = words.iter().position(|w| {
            let name = w.rsplit('/').next().unwrap_or(w);
            BINARIES.contains(&name)
        }) else {
            continue;
        };
        let before_ok = words[..at]
            .iter()
            .all(|w| w == "sudo" || w.contains('=') || w == "&&");
        if !before_ok {
            continue;
        }
        let name = words[at]
            .rsplit('/')
            .next()
            .unwrap_or(&words[at])
            .to_owned();
        let args = words[at + 1..]
            .iter()
            .take_while(|w| !matches!(w.as_str(), "|" | "&&" | ";" | ">" | "&"))
            .cloned()
            .collect();
        found.push((name, args, line.trim().to_owned()));
    }
    found
}

/// The subcommand names listed under "Commands:" in a help text.
fn listed_commands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                if !line.starts_with("   ") || names.is_empty() {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// Checks one README command: walks its subcommand path with `--help` at
/// each level; a word that is not a listed subcommand must still be
/// accepted there (a positional argument or an alias); every `--flag` of
/// the line must be an option of the command reached. Returns why not.
fn check_command(binary: &str, args: &[String]) -> Result<(), String> {
    let help_of = |path: &[&str]| -> Result<String, String> {
        let mut with_help = path.to_vec();
        with_help.push("--help");
        let result = run(binary, &with_help);
        if result.code == 0 {
            Ok(result.stdout)
        } else {
            Err(format!(
                "`{binary} {}` failed: {}",
                with_help.join(" "),
                result.stderr.trim()
            ))
        }
    };
    let mut path: Vec<&str> = Vec::new();
    let mut help = help_of(&path)?;
    for word in args.iter().take_while(|w| !w.starts_with('-')) {
        let commands = listed_commands(&help);
        if commands.is_empty() {
            break;
        }
        path.push(word);
        // A listed subcommand, an alias or a positional argument: all must
        // be accepted there.
        help = help_of(&path)?;
        if !commands.iter().any(|c| c == word) {
            break;
        }
    }
    // The line's own arguments up to its first option must parse too (a
    // negative number is a value, not an option).
    let leading: Vec<&str> = args
        .iter()
        .take_while(|w| !w.starts_with("--"))
        .map(String::as_str)
        .collect();
    help_of(&leading)?;
    for flag in args.iter().filter(|w| w.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or(flag);
        if !help.contains(flag) {
            return Err(format!(
                "`{binary} {}` has no {flag} option",
                path.join(" ")
            ));
        }
    }
    Ok(())
}

#[test]
fn every_command_line_in_the_readme_parses_with_the_real_cli() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let commands = readme_commands(&readme);
    for binary in BINARIES {
        assert!(
            commands.iter().any(|(b, _, _)| b == binary),
            "the README shows no `{binary}` command in a code block"
        );
    }
    eprintln!("checking {} README command lines", commands.len());
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|(binary, args, line)| {
            check_command(binary, args)
                .err()
                .map(|why| format!("{line}\n    {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} README command lines do not parse:\n{}",
        failures.len(),
        commands.len(),
        failures.join("\n")
    );
}

#[test]
fn the_readme_checker_catches_a_wrong_command() {
    // The checker itself must be able to fail.
    let text = "```sh\ndeskside devices lst\nsudo deskside-agent enroll dse1_x\nsudo -u deskside-relay deskside-relay admin-token --new\n```\n";
    let commands = readme_commands(text);
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert_eq!(commands[2].1, ["admin-token", "--new"]);
    assert!(check_command(&commands[0].0, &commands[0].1).is_err());
    assert!(check_command(&commands[1].0, &commands[1].1).is_ok());
    let wrong_flag = vec![
        "devices".to_owned(),
        "list".to_owned(),
        "--colour".to_owned(),
    ];
    assert!(check_command("deskside", &wrong_flag).is_err());
    let negative: Vec<String> = ["policy", "set", "thresholds.wifi_signal_weak_dbm", "-72"]
        .map(str::to_owned)
        .to_vec();
    assert!(check_command("deskside", &negative).is_ok());
    let unknown_short: Vec<String> = ["devices", "list", "-q"].map(str::to_owned).to_vec();
    assert!(check_command("deskside", &unknown_short).is_err());
}

#[test]
fn negative_numbers_are_values_for_policy_set() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    admin
        .run(&["policy", "set", "thresholds.wifi_signal_weak_dbm", "-72"])
        .ok();
    let shown = admin.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(
        shown["thresholds"]["wifi_signal_weak_dbm"].as_f64(),
        Some(-72.0),
        "{shown}"
    );
}

#[test]
fn fleet_filters_check_fields_combine_and_say_when_nothing_matched() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let token = admin
        .run(&["enroll-token", "create", "--group", "paris", "--json"])
        .ok()
        .json();
    let agent = world.agent("laptop");
    let device = agent.enroll(token["token"].as_str().unwrap());
    let _running = world.run_agent(&agent);
    admin.wait_status(&device, "online", Duration::from_secs(20));
    let hostname = admin
        .run(&["devices", "show", &device, "--json"])
        .ok()
        .json()["hostname"]
        .as_str()
        .unwrap()
        .to_owned();

    // An unknown field is refused with the valid ones, before any work.
    let typo = admin
        .run(&["diag", "--all", "--where", "wifi.signal < -70"])
        .fails_with(2, "unknown field \"wifi.signal\"");
    assert!(typo.stderr.contains("wifi.signal_dbm"), "{}", typo.stderr);
    assert!(typo.stderr.contains("hostname"), "{}", typo.stderr);

    // The fields are listed, and documented in the help.
    let fields = admin.run(&["diag", "fields"]).ok();
    for name in [
        "hostname",
        "group",
        "verdict",
        "wifi.signal_dbm",
        "path.idle_rtt.median_ms",
    ] {
        assert!(fields.stdout.contains(name), "{name}: {}", fields.stdout);
    }
    let help = admin.run(&["diag", "--help"]).ok();
    assert!(
        help.stdout.contains("deskside diag fields"),
        "{}",
        help.stdout
    );

    // Device fields, verdict, and and/or.
    let matched = admin
        .run(&[
            "diag",
            "--all",
            "--json",
            "--where",
            &format!("group == paris and (hostname == '{hostname}' or verdict == error)"),
        ])
        .ok()
        .json_lines();
    assert_eq!(matched.len(), 1, "{matched:?}");
    assert_eq!(matched[0]["device"], device.as_str());
    assert_eq!(matched[0]["type"], "diagnostics");
    let either = admin
        .run(&[
            "diag",
            "--all",
            "--json",
            "--where",
            "verdict == error or hostname ~ ''",
        ])
        .ok()
        .json_lines();
    assert_eq!(either.len(), 1, "{either:?}");

    // Nothing matched: said, with its own exit code, in text and JSON.
    let none = admin.run(&["diag", "--all", "--where", "group == lyon"]);
    assert_eq!(none.code, 3, "{none:?}");
    assert!(none.stderr.contains("no device matched"), "{}", none.stderr);
    let none = admin.run(&[
        "diag",
        "--all",
        "--json",
        "--where",
        "verdict == error and group == paris",
    ]);
    assert_eq!(none.code, 3, "{none:?}");
    assert_eq!(none.json()["type"], "no_match");
    let none = admin.run(&["diag", "--group", "lyon"]);
    assert_eq!(none.code, 3, "{none:?}");
    assert!(none.stderr.contains("no device matched"), "{}", none.stderr);
}

#[test]
fn a_viewer_fleet_run_is_refused_once() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let mut running = Vec::new();
    for name in ["one", "two"] {
        let agent = world.agent(name);
        let device = agent.enroll(&admin.enroll_token(1, "10m"));
        running.push(world.run_agent(&agent));
        admin.wait_status(&device, "online", Duration::from_secs(20));
    }
    let issued = admin.create_token("val", "viewer");
    let viewer = world.console("viewer");
    viewer.login(&relay, issued["token"].as_str().unwrap()).ok();

    let refused = viewer
        .run(&["diag", "--all"])
        .fails_with(1, "needs the technician role");
    assert_eq!(
        refused.stderr.matches("permission denied").count(),
        1,
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.trim().is_empty(), "{}", refused.stdout);
    let refused = viewer.run(&["diag", "--all", "--json"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let lines = refused.json_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "error");
}

#[test]
fn completion_scripts_cover_commands_but_not_hidden_ones() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run("deskside", &["completion", shell]).ok();
        for needle in ["diag", "enroll-token", "completion", "policy"] {
            assert!(script.stdout.contains(needle), "{shell}: no {needle}");
        }
        assert!(
            !script.stdout.contains("generate-docs"),
            "{shell} completes the hidden generate-docs"
        );
    }
    run("deskside", &["completion", "tcsh"]).fails_with(2, "possible values");
}

fn write_config(dir: &Path, cert: &Path, key: &Path, data: &Path) -> std::path::PathBuf {
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\npublic_addr = \"127.0.0.1:4433\"\ndata_dir = {:?}\ncert = {:?}\nkey = {:?}\n",
            data, cert, key
        ),
    )
    .expect("write relay.toml");
    path
}

#[test]
fn a_relay_with_a_bad_certificate_creates_nothing() {
    let world = World::new();
    let data = world.path("relay-data");
    let missing = world.path("missing-cert.pem");
    let key = world.path("missing-key.pem");
    let config = write_config(&world.path(""), &missing, &key, &data);
    run(
        "deskside-relay",
        &["serve", "--config", config.to_str().unwrap()],
    )
    .fails_with(1, "missing-cert.pem");
    assert!(
        !data.join("relay.db").exists() && !data.join("admin-token").exists(),
        "a failed start left a database or an admin token in {}",
        data.display()
    );
    // No admin token to recover from either.
    run(
        "deskside-relay",
        &["admin-token", "--new", "--config", config.to_str().unwrap()],
    )
    .fails_with(1, "nothing to recover");
    assert!(!data.join("relay.db").exists());
}

/// Runs `deskside-relay admin-token --new --dev` offline on the relay data
/// in `data_dir` (the relay that will listen on `listen`), which must
/// succeed; returns its output and the `dsl1_` login string it printed.
fn recover_admin_login(data_dir: &str, listen: &str) -> (Run, String) {
    let out = run(
        "deskside-relay",
        &[
            "admin-token",
            "--new",
            "--dev",
            "--data-dir",
            data_dir,
            "--listen",
            listen,
        ],
    )
    .ok();
    let login = out
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("dsl1_"))
        .unwrap_or_else(|| panic!("no login string in {}", out.stdout))
        .to_owned();
    (out, login)
}

#[test]
fn a_lost_admin_login_is_recovered_offline_and_audited() {
    let mut world = World::new();
    let mut relay = world.relay(None);
    let port = relay.port();
    relay.proc.terminate();
    // The first admin token is lost.
    std::fs::remove_file(relay.data_dir.join("admin-token")).unwrap();

    let data = relay.data_dir.to_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{port}");
    let (out, login) = recover_admin_login(&data, &listen);
    let saved = std::fs::read_to_string(relay.data_dir.join("admin-token")).unwrap();
    assert!(out.stdout.contains(saved.trim()), "{}", out.stdout);

    let relay = world.relay(Some(port));
    let admin = world.console("recovered");
    admin.run(&["login", &login]).ok();
    let tokens = admin.run(&["tokens", "list", "--json"]).ok().json_lines();
    assert!(
        tokens.iter().any(|t| t["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("admin-recovered-"))),
        "{tokens:?}"
    );
    let audit = admin.run(&["audit", "list", "--json"]).ok().json_lines();
    assert!(
        audit
            .iter()
            .any(|row| row["action"] == "token.create"
                && row["detail"].to_string().contains("recovery")),
        "{audit:?}"
    );
    drop(relay);
}

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// `./quickstart ARGS` with the binaries already built (no release build)
/// and its demo state in `world`.
fn quickstart(world: &World, args: &[&str]) -> Command {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = bin("deskside")
        .parent()
        .expect("binary directory")
        .to_owned();
    let mut command = Command::new("bash");
    command
        .arg(repo.join("quickstart"))
        .args(args)
        .current_dir(&repo)
        .env("DESKSIDE_BIN_DIR", bin_dir)
        .env("DESKSIDE_DEMO_DIR", world.path("demo"))
        .env("DESKSIDE_PORT", free_udp_port().to_string())
        .env_remove("DESKSIDE_PROFILE")
        .env_remove("DESKSIDE_AGENT_STATE");
    command
}

#[test]
fn quickstart_once_prints_no_commands_that_need_the_stopped_relay() {
    let world = World::new();
    let output = quickstart(&world, &["--once"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "quickstart --once failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("the console sees this machine"), "{stdout}");
    assert!(!stdout.contains("What to try next"), "{stdout}");
    assert!(stdout.contains("without --once"), "{stdout}");
}

#[test]
fn quickstart_commands_to_try_work_while_it_runs() {
    use std::io::BufRead as _;
    let mut world = World::new();
    let (mut script, stdout) = world.spawn("quickstart", quickstart(&world, &[]));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !seen
        .iter()
        .any(|l: &String| l.contains("Relay and agent keep running"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "quickstart did not reach its interactive part:\n{}\n{}",
                seen.join("\n"),
                script.log()
            ),
        }
    }
    let env_line = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("export "))
        .expect("export line")
        .to_owned();
    let show = seen
        .iter()
        .map(|l| l.trim())
        .find(|l| l.contains("deskside devices show"))
        .expect("a devices show command")
        .to_owned();
    let words = shell_words(&show);
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    for pair in env_line.split_whitespace() {
        if let Some((name, value)) = pair.split_once('=') {
            command.env(name, value);
        }
    }
    let output = command.output().expect("run the printed command");
    assert!(
        output.status.success(),
        "`{show}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("online"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    script.terminate();
}

#[test]
fn every_binary_help_names_what_it_does_today() {
    let console = run("deskside", &["--help"]).ok();
    for word in ["diagnostics", "sessions", "audit"] {
        assert!(
            console.stdout.contains(word),
            "deskside --help: {}",
            console.stdout
        );
    }
    assert!(!console.stdout.contains("devices, enrollment, tokens\n"));
    let relay = run("deskside-relay", &["--help"]).ok();
    for word in ["sessions", "audit", "admin-token"] {
        assert!(
            relay.stdout.contains(word),
            "deskside-relay --help: {}",
            relay.stdout
        );
    }
    let agent = run("deskside-agent", &["--help"]).ok();
    for word in ["sessions", "consent", "check", "history"] {
        assert!(
            agent.stdout.contains(word),
            "deskside-agent --help: {}",
            agent.stdout
        );
    }
}

#[test]
fn a_first_start_that_fails_after_creating_the_admin_token_says_how_to_recover() {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut world = World::new();
    let data = world.path("relay-data");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .unwrap();
    // Something only the start itself trips on, after the organisation and
    // its admin token exist: the certificate's place is taken.
    std::fs::create_dir(data.join("relay-cert.pem")).unwrap();
    let data_arg = data.to_str().unwrap().to_owned();
    let failed = run(
        "deskside-relay",
        &[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_arg,
        ],
    )
    .fails_with(1, "deskside-relay admin-token --new");
    assert!(
        failed.stderr.contains("relay-cert.pem"),
        "{}",
        failed.stderr
    );
    assert!(data.join("admin-token").exists());

    std::fs::remove_dir(data.join("relay-cert.pem")).unwrap();
    let relay = world.relay(None);
    let (_, login) = recover_admin_login(&data_arg, &relay.addr);
    let admin = world.console("admin");
    admin.run(&["login", &login]).ok();
    admin.run(&["tokens", "list"]).ok();
}

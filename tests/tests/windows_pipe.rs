//! The Windows helper channel end to end, under Wine: `deskside-agent.exe
//! run` (enrolled with the Linux relay) serves the named pipe of its state
//! directory, `deskside-agent.exe session-helper` with the same state
//! directory finds it and is admitted, and the same program copied under
//! another name is refused by the service's client check (its executable is
//! not the service's own), and a second helper in the same session exits
//! at once. The installed service starting its helper in the user's session
//! and admitting it on `\\.\pipe\deskside-agent-helper` is checked by
//! `windows_agent.rs`'s service test, which boots a service prefix anyway.
//!
//! What Wine cannot show (see README, Windows row): the pipe's DACL (Wine
//! 8.0 does not enforce it), another account or another session (Wine has
//! one user, in session 1), LocalSystem.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_pipe`) after it builds the `.exe`. Without Wine or the
//! `.exe` the test skips with a message, or fails when `CI=true`.

use std::path::Path;
use std::time::Duration;

use deskside_tests::wine::Wine;
use deskside_tests::{wait_for, World};

/// Wine starts programs slowly on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(120);

#[test]
fn the_agent_admits_its_own_helper_over_the_pipe_and_refuses_another_program() {
    let Some(wine) = Wine::find("windows_pipe::admits_its_own_helper") else {
        return;
    };
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "10m");
    let agent = wine.agent("pipelaptop");
    let device = agent.enroll(&token);
    let agent_proc = world.run_wine_agent(&agent);
    admin.wait_status(&device, "online", SLOW);
    let pipe = wait_for("the agent to listen on its pipe", SLOW, || {
        agent_proc.log().lines().find_map(|line| {
            line.contains("waiting for the session helper")
                .then(|| line.split("socket=").nth(1))
                .flatten()
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        })
    });
    assert!(
        pipe.starts_with(r"\\.\pipe\deskside-agent-helper-"),
        "a state directory of its own has a pipe of its own: {pipe}"
    );

    // `EXE session-helper` with the agent's state directory.
    let session_helper = |exe: &Path| {
        let mut command = wine.command(exe);
        command
            .args(["--state-dir", agent.state_dir_windows(), "session-helper"])
            .env("RUST_LOG", "info,deskside_agent=debug");
        command
    };

    // Another program (the agent under another name) with the same state
    // directory: it finds the pipe and is refused.
    let dir = tempfile::tempdir().expect("temporary directory");
    let other_exe = dir.path().join("not-deskside-agent.exe");
    std::fs::copy(wine.agent_exe(), &other_exe).expect("copy of the agent");
    let mut other_proc = world.spawn_wine("other-program", session_helper(&other_exe));
    let refusal = wait_for("the agent to refuse the other program", SLOW, || {
        agent_proc
            .log()
            .lines()
            .find(|l| l.contains("refused a helper connection"))
            .map(str::to_owned)
    });
    eprintln!("the agent's log: {refusal}");
    assert!(
        refusal.contains("is not this agent's program")
            && refusal.contains("not-deskside-agent.exe"),
        "{refusal}"
    );
    assert!(
        !agent_proc.log().contains("session helper connected"),
        "the other program was admitted:\n{}",
        agent_proc.log()
    );
    other_proc.kill();

    // The agent's own helper, found by its state directory alone.
    let helper_proc = world.spawn_wine("helper", session_helper(wine.agent_exe()));
    let admitted = wait_for("the agent to admit its helper", SLOW, || {
        agent_proc
            .log()
            .lines()
            .find(|l| l.contains("session helper connected"))
            .map(str::to_owned)
    });
    eprintln!("the agent's log: {admitted}");
    // The service names who connected: an account and a session.
    assert!(
        admitted.contains("S-1-5-") && admitted.contains("in session"),
        "{admitted}"
    );
    wait_for("the helper to say it is connected", SLOW, || {
        helper_proc
            .log()
            .contains("connected to the agent service")
            .then_some(())
    });

    // A second helper for the same service in the same session (the Run
    // entry's, beside the one the service started) leaves at once.
    let mut second_proc = world.spawn_wine("second-helper", session_helper(wine.agent_exe()));
    let status = second_proc
        .wait_exit(SLOW)
        .expect("the second helper exits by itself");
    assert!(status.success(), "{status}: {}", second_proc.log());
    assert!(
        second_proc
            .log()
            .contains("another deskside session helper already runs in this session"),
        "{}",
        second_proc.log()
    );
    assert_eq!(
        agent_proc.log().matches("session helper connected").count(),
        1,
        "{}",
        agent_proc.log()
    );
}

//! The consent dialog and the indicator under Xvfb, each in its own process
//! (`deskside-session-ui consent|indicator`), clicked with xdotool at the
//! documented button positions.

mod support;

use std::process::Command;
use std::time::Duration;

use deskside_protocol::session::{Capabilities, EndedBy};
use deskside_session_ui::subprocess::{
    ask_consent_in_subprocess, ask_consent_in_subprocess_withdrawable, IndicatorProcess,
};
use deskside_session_ui::{
    ConsentAnswer, ConsentRequest, IndicatorCommand, IndicatorEvent, IndicatorInfo,
    CONSENT_ACCEPT_BUTTON, CONSENT_REFUSE_BUTTON, INDICATOR_DOWNGRADE_BUTTON,
    INDICATOR_STOP_BUTTON,
};
use support::x11::{tools_available, Xvfb, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_deskside-session-ui");

fn request(timeout: Duration) -> ConsentRequest {
    ConsentRequest {
        technician: "Alice Martin".into(),
        organisation: "ACME IT".into(),
        capabilities: Capabilities::CONTROL,
        reason: "Your printer does not print".into(),
        verification_code: "482 913".into(),
        timeout: Some(timeout),
        accept_after: None,
    }
}

fn centre(button: [f32; 4]) -> (f32, f32) {
    (button[0] + button[2] / 2.0, button[1] + button[3] / 2.0)
}

/// Opens the consent dialog in a child process; when `click` is given,
/// clicks that button once the dialog is drawn.
fn consent_with(click: Option<[f32; 4]>, timeout: Duration) -> Option<ConsentAnswer> {
    if !tools_available() {
        return None;
    }
    let xvfb = Xvfb::start();
    let mut command = xvfb.command(BIN);
    command.arg("consent");
    let request = request(timeout);
    let dialog = std::thread::spawn(move || ask_consent_in_subprocess(command, &request));
    if let Some(button) = click {
        let window = xvfb.wait_for_window("remote support request");
        let (x, y) = centre(CONSENT_ACCEPT_BUTTON);
        // The Accept button is green once the first frame is drawn.
        xvfb.wait_for_picture(&window, "the consent dialog", |image| {
            let [r, g, b] = image.pixel(x as u32, y as u32);
            g > r + 40 && g > b + 40
        });
        let (x, y) = centre(button);
        xvfb.click(&window, x, y);
    }
    let answer = dialog.join().expect("the dialog thread does not panic");
    Some(answer.expect("the consent process answers"))
}

#[test]
fn consent_accept_button_accepts() {
    if let Some(answer) = consent_with(Some(CONSENT_ACCEPT_BUTTON), DEADLINE) {
        assert_eq!(answer, ConsentAnswer::Accepted);
    }
}

/// A click on Accept as the dialog pops up (before it is armed) does not
/// answer; the same click once armed accepts.
#[test]
fn accept_only_works_once_the_dialog_is_armed() {
    if !tools_available() {
        return;
    }
    let xvfb = Xvfb::start();
    let mut command = xvfb.command(BIN);
    command.arg("consent");
    let arming = Duration::from_secs(3);
    let mut request = request(Duration::from_secs(20));
    request.accept_after = Some(arming);
    let dialog = std::thread::spawn(move || ask_consent_in_subprocess(command, &request));
    let window = xvfb.wait_for_window("remote support request");
    let (x, y) = centre(CONSENT_ACCEPT_BUTTON);
    // Drawn (the window is no longer black), Accept still greyed out.
    let drawn = std::time::Instant::now();
    xvfb.wait_for_picture(&window, "the consent dialog", |image| {
        let [r, g, b] = image.pixel(4, 4);
        r > 10 || g > 10 || b > 10
    });
    xvfb.click(&window, x, y);
    let clicked = drawn.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    if clicked < arming / 2 {
        assert!(
            !dialog.is_finished(),
            "a click {clicked:?} after the first frame, before the {arming:?} arming, answered"
        );
    } else {
        eprintln!("the early click came {clicked:?} after the window appeared, too close to the arming; only the second click is checked");
    }
    // Armed: Accept turns green, and the same click accepts.
    xvfb.wait_for_picture(&window, "the armed Accept button", |image| {
        let [r, g, b] = image.pixel(x as u32, y as u32);
        g > r + 40 && g > b + 40
    });
    xvfb.click(&window, x, y);
    let answer = dialog.join().expect("the dialog thread does not panic");
    assert_eq!(
        answer.expect("the consent process answers"),
        ConsentAnswer::Accepted
    );
}

#[test]
fn consent_refuse_button_refuses() {
    if let Some(answer) = consent_with(Some(CONSENT_REFUSE_BUTTON), DEADLINE) {
        assert_eq!(answer, ConsentAnswer::Refused);
    }
}

/// A withdrawal that reaches the child's stdin together with the request
/// (the technician gave up at once) still withdraws it: the child must not
/// lose the second line in a buffer it drops after reading the first.
#[test]
fn a_withdrawal_sent_right_behind_the_request_is_not_lost() {
    if !tools_available() {
        return;
    }
    let xvfb = Xvfb::start();
    // The child starts reading only after both lines are in the pipe.
    let mut command = xvfb.command("sh");
    command.args(["-c", &format!("sleep 1; exec {BIN} consent")]);
    let answer = ask_consent_in_subprocess_withdrawable(
        command,
        &request(Duration::from_secs(30)),
        |withdrawer| withdrawer.withdraw().expect("the child's stdin is open"),
    );
    assert_eq!(
        answer.expect("the consent process answers"),
        ConsentAnswer::Withdrawn
    );
}

#[test]
fn consent_without_answer_times_out() {
    if let Some(answer) = consent_with(None, Duration::from_secs(2)) {
        assert_eq!(answer, ConsentAnswer::TimedOut);
    }
}

#[test]
fn consent_process_killed_is_no_answer() {
    if !tools_available() {
        return;
    }
    let xvfb = Xvfb::start();
    // A wrapper shell that kills the dialog as soon as its window shows
    // (`sh` gives background jobs /dev/null as stdin, hence fd 3). If
    // the window never shows, it answers "accepted" itself so the test fails.
    let mut command = xvfb.command("sh");
    command.args([
        "-c",
        &format!(
            "exec 3<&0; {BIN} consent <&3 & pid=$!; n=0; \
             until xdotool search --onlyvisible --name 'remote support request' >/dev/null; do \
               n=$((n+1)); if [ $n -ge 600 ]; then echo '{{\"answer\":\"accepted\"}}'; exit 0; fi; sleep 0.1; \
             done; kill -9 $pid; wait $pid; exit 0"
        ),
    ]);
    let result = ask_consent_in_subprocess(command, &request(DEADLINE));
    assert!(
        result.is_err(),
        "a killed dialog must not give an answer, got {result:?}"
    );
}

fn next_command(
    runtime: &tokio::runtime::Runtime,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<IndicatorCommand>,
) -> IndicatorCommand {
    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, commands.recv()).await })
        .expect("the indicator sends a command in time")
        .expect("the indicator's command channel stays open until Stop")
}

#[test]
fn indicator_downgrade_then_stop() {
    if !tools_available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let xvfb = Xvfb::start();
    let mut command: Command = xvfb.command(BIN);
    command.arg("indicator");
    let info = IndicatorInfo {
        technician: "Alice Martin".into(),
        organisation: "ACME IT".into(),
        granted: Capabilities::CONTROL,
        verification_code: "482 913".into(),
    };
    let (mut process, mut commands) =
        IndicatorProcess::spawn(command, &info).expect("the indicator starts");
    process
        .send(&IndicatorEvent::Chat {
            text: "Hello, I am looking at your printer settings.".into(),
        })
        .expect("the indicator takes events");
    let window = xvfb.wait_for_window("session active");
    let (x, y) = centre(INDICATOR_STOP_BUTTON);
    // The Stop button is red once the first frame is drawn.
    xvfb.wait_for_picture(&window, "the indicator", |image| {
        let [r, g, b] = image.pixel(x as u32, y as u32);
        r > g + 60 && r > b + 60
    });

    let (dx, dy) = centre(INDICATOR_DOWNGRADE_BUTTON);
    xvfb.click(&window, dx, dy);
    assert_eq!(
        next_command(&runtime, &mut commands),
        IndicatorCommand::DowngradeToViewOnly
    );

    xvfb.click(&window, x, y);
    assert_eq!(
        next_command(&runtime, &mut commands),
        IndicatorCommand::Stop
    );
    let status = process.close().expect("the indicator process ends");
    assert!(status.success(), "indicator exit status {status}");
}

#[test]
fn indicator_closes_when_the_session_ends() {
    if !tools_available() {
        return;
    }
    let xvfb = Xvfb::start();
    let mut command: Command = xvfb.command(BIN);
    command.arg("indicator");
    let info = IndicatorInfo {
        technician: "Alice Martin".into(),
        organisation: "ACME IT".into(),
        granted: Capabilities::VIEW,
        verification_code: "482 913".into(),
    };
    let (mut process, _commands) =
        IndicatorProcess::spawn(command, &info).expect("the indicator starts");
    xvfb.wait_for_window("session active");
    process
        .send(&IndicatorEvent::Ended {
            by: EndedBy::Technician,
        })
        .expect("the indicator takes events");
    let status = process.close().expect("the indicator process ends");
    assert!(status.success(), "indicator exit status {status}");
}

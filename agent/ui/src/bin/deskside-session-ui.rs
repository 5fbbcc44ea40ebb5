//! `deskside-session-ui consent|indicator|help-form`: the employee's windows as child
//! processes (see `deskside_session_ui::subprocess` for the stdin/stdout
//! protocol). The agent can run this binary, or call the same `*_main`
//! functions behind a subcommand of its own.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("consent") => deskside_session_ui::subprocess::consent_main(),
        Some("indicator") => deskside_session_ui::subprocess::indicator_main(),
        Some("help-form") => {
            deskside_session_ui::help_form::help_form_main(std::env::args().nth(2).as_deref())
        }
        Some("help-notice") => {
            deskside_session_ui::help_form::help_notice_main(std::env::args().nth(2).as_deref())
        }
        _ => {
            eprintln!(
                "usage: deskside-session-ui consent|indicator|help-form [en|fr]\n\
                 consent: reads a consent request (JSON) on stdin, prints the answer;\n\
                 indicator: reads session information then events (JSON lines) on stdin, prints commands;\n\
                 help-form: shows the \"Ask IT for help\" form, prints the answers (JSON)"
            );
            ExitCode::from(2)
        }
    }
}

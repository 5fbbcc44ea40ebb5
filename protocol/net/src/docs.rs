//! Man pages and shell completions generated from a binary's clap command,
//! for the packages (`installers/linux/build-packages`).
//!
//! Every binary has a hidden `generate-docs DIR` command that calls
//! [`generate`]; the packaging script runs it on the freshly built binary, so
//! the pages always match the flags the binary really accepts.

use std::io;
use std::path::Path;

pub use clap_complete::Shell;

/// Writes `DIR/man/NAME.1` (and `NAME-SUB.1` for every visible subcommand,
/// recursively) and, when `completions` is set, `DIR/completions/` for bash,
/// zsh and fish.
pub fn generate(cmd: clap::Command, dir: &Path, completions: bool) -> io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let mut visible = visible_only(&cmd);
    let mut cmd = cmd;
    cmd.build();
    write_pages(&cmd, &man, cmd.get_name().to_owned())?;
    if completions {
        let out = dir.join("completions");
        std::fs::create_dir_all(&out)?;
        let name = visible.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut visible, &name, &out)?;
        }
    }
    Ok(())
}

/// Writes the completion script of `cmd` for `shell` to `out` (what
/// `deskside completion SHELL` prints). Hidden subcommands are left out.
pub fn completions(cmd: clap::Command, shell: Shell, out: &mut dyn io::Write) {
    let mut visible = visible_only(&cmd);
    let name = visible.get_name().to_owned();
    clap_complete::generate(shell, &mut visible, name, out);
}

/// A copy of `cmd` (not yet built) without its hidden subcommands, at every
/// level: clap_complete lists hidden subcommands, and clap cannot remove
/// one, so the tree is copied with what completion reads (names, about,
/// arguments, visible aliases, version).
fn visible_only(cmd: &clap::Command) -> clap::Command {
    let mut copy = clap::Command::new(cmd.get_name().to_owned())
        .args(cmd.get_arguments().cloned())
        .visible_aliases(cmd.get_visible_aliases().map(str::to_owned))
        .subcommands(
            cmd.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(visible_only),
        );
    if let Some(about) = cmd.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        copy = copy.version(version.to_owned());
    }
    if cmd.is_args_conflicts_with_subcommands_set() {
        copy = copy.args_conflicts_with_subcommands(true);
    }
    copy
}

fn write_pages(cmd: &clap::Command, dir: &Path, name: String) -> io::Result<()> {
    // A subcommand's page is named after its full path, as git does.
    let page = cmd
        .clone()
        .name(name.clone())
        .bin_name(name.replace('-', " "));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes)?;
    std::fs::write(dir.join(format!("{name}.1")), bytes)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, dir, format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_cover_visible_subcommands() {
        let cmd = clap::Command::new("demo")
            .about("A demo")
            .subcommand(clap::Command::new("list").about("Lists"))
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        generate(cmd, dir.path(), true).unwrap();
        let man = std::fs::read_to_string(dir.path().join("man/demo.1")).unwrap();
        assert!(man.contains("A demo"));
        assert!(dir.path().join("man/demo-list.1").exists());
        assert!(!dir.path().join("man/demo-secret.1").exists());
        assert!(dir.path().join("completions/demo.bash").exists());
        assert!(dir.path().join("completions/_demo").exists());
        assert!(dir.path().join("completions/demo.fish").exists());
        for file in ["demo.bash", "_demo", "demo.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
            assert!(text.contains("list"), "{file}: {text}");
            assert!(
                !text.contains("secret"),
                "{file} completes a hidden command"
            );
        }
    }

    #[test]
    fn completions_leave_out_hidden_subcommands_at_every_level() {
        let cmd = clap::Command::new("demo")
            .arg(
                clap::Arg::new("json")
                    .long("json")
                    .global(true)
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(
                clap::Command::new("tokens")
                    .visible_alias("tok")
                    .subcommand(
                        clap::Command::new("create").arg(clap::Arg::new("name").long("name")),
                    )
                    .subcommand(clap::Command::new("debug-dump").hide(true)),
            )
            .subcommand(clap::Command::new("generate-docs").hide(true));
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::PowerShell,
            Shell::Elvish,
        ] {
            let mut out = Vec::new();
            completions(cmd.clone(), shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for needle in ["tokens", "create", "name", "json"] {
                assert!(text.contains(needle), "{shell}: no {needle} in {text}");
            }
            assert!(!text.contains("generate-docs"), "{shell}: {text}");
            assert!(!text.contains("debug-dump"), "{shell}: {text}");
        }
    }
}

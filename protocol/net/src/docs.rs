//! Man pages and shell completions generated from a binary's clap command,
//! for the packages (`installers/linux/build-packages`).
//!
//! Every binary has a hidden `generate-docs DIR` command that calls
//! [`generate`]; the packaging script runs it on the freshly built binary, so
//! the pages always match the flags the binary really accepts.

use std::io;
use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/NAME.1` (and `NAME-SUB.1` for every visible subcommand,
/// recursively) and, when `completions` is set, `DIR/completions/` for bash,
/// zsh and fish.
pub fn generate(cmd: clap::Command, dir: &Path, completions: bool) -> io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let mut cmd = cmd;
    cmd.build();
    write_pages(&cmd, &man, cmd.get_name().to_owned())?;
    if completions {
        let out = dir.join("completions");
        std::fs::create_dir_all(&out)?;
        let name = cmd.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut cmd, &name, &out)?;
        }
    }
    Ok(())
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
    }
}

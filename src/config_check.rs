//! `pythond config check`: everything `run` would complain about, without running.
//!
//! Reports every problem it finds (not just the first, and not just the first of a
//! file), each naming its file and line: syntax, unknown keys, bad values, duplicate
//! input names, `dirs` entries that do not exist, interpreters that cannot be found
//! or are not executable, and a `data_dir` the agent could not write. It lists the
//! inputs it found on stdout with their origins, the git repositories' checkouts
//! included, exactly in the precedence order `run` uses (docs/CONFIG.md).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::gitsync;
use crate::reload::{self, Layout};

/// Checks the configuration, prints the findings, and returns the exit code.
pub fn report(config_path: Option<&Path>) -> ExitCode {
    let config = match config::load_all(config_path) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{} problem(s) found in the main configuration; inputs not checked",
                errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let main_file = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".to_string());
    let mut problems: Vec<String> = Vec::new();
    if let Err(why) = writable_dir(&config.agent.data_dir) {
        problems.push(format!(
            "{main_file}: [agent] data_dir {}: {why}; `run` could not keep its buffers and state there",
            config.agent.data_dir.display()
        ));
    }

    let repos = gitsync::repos(&config.git_repos, &config.agent.data_dir);
    let mut checkouts = Vec::new();
    for repo in &repos {
        if repo.dir.is_dir() {
            checkouts.push(repo.dir.clone());
        } else {
            println!(
                "note: git repo {} is not cloned yet (into {}); `run` pulls it, its inputs are not checked",
                repo.shown_url,
                repo.dir.display()
            );
        }
    }
    let layout = Layout::new(&config.agent.conf_dir, &config.agent.python_dir, &checkouts);
    let desired = reload::desired(&layout);
    problems.extend(desired.errors.iter().cloned());
    for skipped in &desired.skipped {
        println!("note: {skipped}; not a pythond input, ignored");
    }
    for input in &desired.inputs {
        let config = &input.config;
        println!(
            "input {:?} from {} (cmd {}, dirs {:?})",
            config.name, config.origin, config.cmd, config.dirs
        );
        if let Err(reason) = &input.paths {
            problems.push(format!(
                "{}: input `{}`: {reason}",
                config.origin, config.name
            ));
        }
        if let Err(why) = interpreter(&config.cmd) {
            problems.push(format!(
                "{}: input `{}`: interpreter `{}` {why}",
                config.origin, config.name, config.cmd
            ));
        }
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if problems.is_empty() {
        println!(
            "ok: {main_file}; {} input(s) in {}",
            desired.inputs.len(),
            describe_conf_dirs(&config, &checkouts)
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}

fn describe_conf_dirs(config: &Config, checkouts: &[std::path::PathBuf]) -> String {
    let mut dirs: Vec<String> = checkouts
        .iter()
        .map(|c| c.join("conf.d").display().to_string())
        .collect();
    dirs.push(config.agent.conf_dir.display().to_string());
    dirs.join(", ")
}

/// Why `cmd` could not be started as the worker's interpreter, if it could not: not
/// found (as a path, or on `PATH`), or found but not executable.
pub fn interpreter(cmd: &str) -> Result<(), String> {
    let candidates: Vec<std::path::PathBuf> = if cmd.contains('/') {
        vec![Path::new(cmd).to_path_buf()]
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join(cmd)).collect())
            .unwrap_or_default()
    };
    let files: Vec<_> = candidates.into_iter().filter(|p| p.is_file()).collect();
    if files.is_empty() {
        return Err("not found (not an existing file and not on PATH)".to_string());
    }
    if files.iter().any(|f| is_executable(f)) {
        Ok(())
    } else {
        Err(format!("is not executable ({})", files[0].display()))
    }
}

fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Whether the agent could create files in `dir` (or create `dir` itself, when it
/// does not exist yet): tried for real with a scratch file, as permissions, ACLs and
/// read-only mounts all count.
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Err("no existing parent directory".to_string()),
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    tempfile::tempfile_in(existing)
        .map(drop)
        .map_err(|e| match existing == dir {
            true => format!("not writable ({e})"),
            false => format!(
                "does not exist and cannot be created in {} ({e})",
                existing.display()
            ),
        })
}

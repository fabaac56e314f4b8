//! `pythond config check`: everything `run` would complain about, without running.
//!
//! Reports every problem it finds (not just the first), each naming its file and line:
//! syntax, unknown keys, bad values, duplicate input names, `dirs` entries that do not
//! exist, and interpreters that cannot be found.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, InputConfig};
use crate::supervisor::resolve_dirs;

/// Checks the configuration, prints the findings, and returns the exit code.
pub fn report(config_path: Option<&Path>) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let main_file = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".to_string());
    let loaded = config::load_inputs(&config.agent.conf_dir);
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    for input in &loaded.inputs {
        problems.extend(input_problems(input, &config.agent.python_dir));
    }
    for skipped in &loaded.skipped {
        eprintln!("note: {skipped}; not a pythond input, ignored");
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if problems.is_empty() {
        println!(
            "ok: {main_file}; {} input(s) in {}",
            loaded.inputs.len(),
            config.agent.conf_dir.display()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}

/// What would stop `input` from running, beyond what parsing already checked.
fn input_problems(input: &InputConfig, python_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(reason) = resolve_dirs(python_dir, &input.dirs) {
        problems.push(format!(
            "{}: input `{}`: {reason}",
            input.origin, input.name
        ));
    }
    if !interpreter_exists(&input.cmd) {
        problems.push(format!(
            "{}: input `{}`: interpreter `{}` not found (not an existing file and not on PATH)",
            input.origin, input.name, input.cmd
        ));
    }
    problems
}

/// True if `cmd` is a path to a file, or a name found in a `PATH` directory.
pub fn interpreter_exists(cmd: &str) -> bool {
    if cmd.contains('/') {
        return Path::new(cmd).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
        .unwrap_or(false)
}

//! The `pythond` command line: `run`, `check`, `status`, `tap`, `top`, `config check`,
//! and the `completions` and `man` pages generated from these very definitions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};

use pythond::api_target::ApiTarget;
use pythond::check::CheckOptions;
use pythond::config::{self, LogFormat, OutputFormat};

/// Runs DataKit-style Python collectors under supervision and forwards what they report.
#[derive(Parser)]
#[command(name = "pythond", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    #[command(flatten)]
    log: LogArgs,
}

/// Logging flags, accepted by every command (docs/OPERATIONS.md, "Logs").
#[derive(Args)]
struct LogArgs {
    /// Log level (trace, debug, info, warn, error, off) or filter directives such as
    /// "info,pythond::worker=debug"; overrides -v/-q, RUST_LOG and [agent] log_level.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<String>,
    /// More log detail: -v one level more than the command's default, -vv two.
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Less log output: -q warnings and errors only (for run), -qq errors, -qqq none.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    quiet: u8,
}

impl LogArgs {
    fn flags(&self) -> pythond::logging::LogFlags {
        pythond::logging::LogFlags {
            level: self.log_level.clone(),
            verbose: self.verbose,
            quiet: self.quiet,
        }
    }
}

#[derive(Subcommand)]
enum Commands {
    /// Run the agent in the foreground until SIGINT or SIGTERM.
    ///
    /// Without --config, reads ./pythond.toml if present, else uses built-in defaults:
    /// conf.d/, python.d/ and data/ under the working directory, points to stdout.
    Run {
        /// Main configuration file (pythond.toml).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run every input's plugins once through the configured sinks, deliver what
        /// they reported (flushing the disk buffers), and exit: 0 only if every run
        /// succeeded, no point was rejected and every point was delivered.
        #[arg(long)]
        once: bool,
    },
    /// Run collectors once and print their points: the collectors in each PATH, or
    /// one configured input exactly as `run` would run it (--input NAME).
    ///
    /// Points go to stdout, one per line; what the collectors printed, errors and
    /// rejected points to stderr. Exits 0 only if every collector loaded and ran
    /// without exception or timeout, no point was rejected, and at least one point was
    /// reported (unless --allow-empty).
    Check {
        /// Directories of collectors or single .py files.
        #[arg(
            required_unless_present = "input",
            conflicts_with = "input",
            value_name = "PATH"
        )]
        paths: Vec<PathBuf>,
        /// Run the configured input NAME once, with its cmd, envs, options, tags,
        /// interval, timeout and plugin settings, plus [global_tags] and host.
        #[arg(long, value_name = "NAME")]
        input: Option<String>,
        /// Main configuration file (pythond.toml) to find --input in.
        #[arg(long, short, value_name = "FILE", requires = "input")]
        config: Option<PathBuf>,
        /// Pass even when the collectors reported no point.
        #[arg(long)]
        allow_empty: bool,
        /// Python interpreter to run the collectors with (with --input: the input's).
        #[arg(long, default_value = "python3", conflicts_with = "input")]
        cmd: String,
        /// Longest a run may take, e.g. 30s, 500ms, 2m (with --input, each run has its
        /// configured timeout); how long long_running plugins run. Loading may take a
        /// minute, as under `run` (or this, if longer).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
        /// Output format of the points.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Show what a running agent's inputs and plugins are doing (GET /v1/status).
    Status {
        /// The agent's HTTP API address ([http] listen).
        #[arg(long, default_value = pythond::config::DEFAULT_LISTEN, value_name = "HOST:PORT")]
        addr: String,
        /// The agent's [http] token, if it has one.
        #[arg(long, env = "PYTHOND_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Print last errors in full instead of cut to the table's width.
        #[arg(long)]
        wide: bool,
        /// The agent's pythond.toml: take the address and token from its [http].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only this input.
        #[arg(long, value_name = "NAME")]
        input: Option<String>,
        /// Only this plugin id (or one instance, `<plugin id>@<instance>`).
        #[arg(long, value_name = "ID")]
        plugin: Option<String>,
        /// List every instance, not only those with problems.
        #[arg(long)]
        all: bool,
    },
    /// Print the points a running agent accepts, live (GET /v1/tap), until Ctrl-C.
    ///
    /// The agent's sinks are not touched. Points go to stdout; what this reader was
    /// too slow to take is counted on stderr.
    Tap {
        /// The agent's HTTP API address ([http] listen).
        #[arg(long, default_value = pythond::config::DEFAULT_LISTEN, value_name = "HOST:PORT")]
        addr: String,
        /// The agent's [http] token, if it has one.
        #[arg(long, env = "PYTHOND_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The agent's pythond.toml: take the address and token from its [http].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only the points of this input.
        #[arg(long, value_name = "NAME")]
        input: Option<String>,
        /// Only the points of this category (metric, logging, object, ...).
        #[arg(long, value_name = "CATEGORY")]
        category: Option<String>,
        /// Output format of the points.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// A live terminal view of a running agent: plugins' runs/s, points/s, errors,
    /// lateness and trends, sinks' queues. `q` quits.
    Top {
        /// The agent's HTTP API address ([http] listen).
        #[arg(long, default_value = pythond::config::DEFAULT_LISTEN, value_name = "HOST:PORT")]
        addr: String,
        /// The agent's [http] token, if it has one.
        #[arg(long, env = "PYTHOND_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The agent's pythond.toml: take the address and token from its [http].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How often to refresh, e.g. 1s, 500ms.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommands,
    },
    /// Print a shell completion script, e.g. `pythond completions bash >
    /// /etc/bash_completion.d/pythond` (the .deb installs them for bash, zsh and fish).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff), e.g. `pythond man | man -l -`: pythond(1), or with
    /// COMMAND the page of that command, pythond-COMMAND(1).
    Man {
        /// A command (run, check, status, config, completions, man).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommands {
    /// Validate pythond.toml and every conf.d/**/*.conf; errors name file and line.
    Check {
        /// Main configuration file (pythond.toml).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object per line: category, measurement, tags, fields, time (ns).
    Json,
    /// InfluxDB line protocol.
    Lp,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 30s, 500ms or 2m"))
}

/// A `--log-level` value: what `[agent] log_level` accepts.
fn parse_log_level(text: &str) -> Result<String, String> {
    pythond::config::check_log_level(text).map(|()| text.to_string())
}

/// `check`'s logs: warnings, each point fixed or rejected, and what the collectors
/// printed (their stdout lines are logged at info by the worker session).
const CHECK_LOGS: pythond::logging::Defaults = pythond::logging::Defaults {
    filter: "warn,pythond::ingest=info,pythond::worker::session=info",
    level: "warn",
};
/// Other commands log at info.
const RUN_LOGS: pythond::logging::Defaults = pythond::logging::Defaults {
    filter: "info",
    level: "info",
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log.flags();
    match cli.command {
        Commands::Run { config, once } => run(config.as_deref(), once, &log),
        Commands::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pythond",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Commands::Man { command } => man_page(command.as_deref()),
        Commands::Check {
            paths,
            input,
            config,
            allow_empty,
            cmd,
            timeout,
            format,
        } => {
            pythond::logging::init(&log, None, CHECK_LOGS, LogFormat::Text);
            let target = match input {
                Some(name) => pythond::check::Target::Input { name, config },
                None => pythond::check::Target::Paths { paths, cmd },
            };
            let options = CheckOptions {
                target,
                timeout,
                allow_empty,
                format: match format {
                    Format::Json => OutputFormat::Json,
                    Format::Lp => OutputFormat::LineProtocol,
                },
            };
            match runtime().and_then(|rt| rt.block_on(pythond::check::check(options))) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Commands::Status {
            addr,
            token,
            json,
            wide,
            config,
            input,
            plugin,
            all,
        } => {
            let target = match ApiTarget::resolve(&addr, token, config.as_deref()) {
                Ok(target) => target,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let filter = pythond::status_filter::StatusFilter { input, plugin, all };
            match pythond::status::fetch_filtered(&target.addr, target.token.as_deref(), &filter) {
                Ok(status) if json => {
                    println!("{status:#}");
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    print!("{}", pythond::status::render_with(&status, wide));
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Commands::Tap {
            addr,
            token,
            config,
            input,
            category,
            format,
        } => tap(&addr, token, config.as_deref(), input, category, format),
        Commands::Top {
            addr,
            token,
            config,
            interval,
        } => {
            let result = ApiTarget::resolve(&addr, token, config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|target| pythond::top::run(&target, interval).map_err(|e| e.to_string()));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Commands::Config {
            command: ConfigCommands::Check { config },
        } => pythond::config_check::report(config.as_deref()),
    }
}

/// `pythond tap`: streams until the agent closes the stream or the user interrupts.
fn tap(
    addr: &str,
    token: Option<String>,
    config: Option<&std::path::Path>,
    input: Option<String>,
    category: Option<String>,
    format: Format,
) -> ExitCode {
    let request = pythond::tap_client::TapRequest {
        input,
        category,
        format: match format {
            Format::Json => "json",
            Format::Lp => "lp",
        }
        .to_string(),
    };
    let result = ApiTarget::resolve(addr, token, config)
        .map_err(|e| e.to_string())
        .and_then(|target| {
            pythond::tap_client::run(
                &target,
                &request,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )
            .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    config_path: Option<&std::path::Path>,
    once: bool,
    log: &pythond::logging::LogFlags,
) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    pythond::logging::init(
        log,
        config.agent.log_level.as_deref(),
        RUN_LOGS,
        config.agent.log_format,
    );
    // Before the runtime's threads start: each request's freed memory is kept for
    // the next one instead of being faulted in again (src/heap.rs).
    pythond::heap::keep_free_memory();
    if once {
        return match runtime().and_then(|rt| rt.block_on(pythond::run_once::run(config))) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                tracing::error!("{error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime().and_then(|rt| rt.block_on(pythond::agent::run(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes pythond(1), or pythond-COMMAND(1), to stdout.
fn man_page(command: Option<&str>) -> ExitCode {
    let cli = Cli::command();
    let page = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub
                .clone()
                .name(format!("pythond-{name}"))
                .bin_name(format!("pythond {name}")),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                eprintln!("error: no command {name:?}; one of: {}", names.join(", "));
                return ExitCode::FAILURE;
            }
        },
    };
    match clap_mangen::Man::new(page).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the manual page: {error}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

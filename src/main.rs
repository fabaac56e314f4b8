//! The `pythond` command line: `run`, `check`, `status`, `tap`, `top`, `config check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use pythond::api_target::ApiTarget;
use pythond::check::CheckOptions;
use pythond::config::{self, LogFormat, OutputFormat};

/// Runs DataKit-style Python collectors under supervision and forwards what they report.
#[derive(Parser)]
#[command(name = "pythond", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
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
    },
    /// Load the collectors in each PATH, run each once, and print their points.
    ///
    /// Points go to stdout, one per line; errors and rejected points to stderr. Exits 0
    /// only if every collector loaded and ran without exception or timeout and no point
    /// was rejected.
    Check {
        /// Directories of collectors or single .py files.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Python interpreter to run the collectors with.
        #[arg(long, default_value = "python3")]
        cmd: String,
        /// Longest a run (and loading) may take, e.g. 30s, 500ms, 2m.
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Run { config } => run(config.as_deref()),
        Commands::Check {
            paths,
            cmd,
            timeout,
            format,
        } => {
            init_logging("warn,pythond::ingest=info", None, LogFormat::Text);
            let options = CheckOptions {
                paths,
                cmd,
                timeout,
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

fn run(config_path: Option<&std::path::Path>) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(
        "info",
        config.agent.log_level.as_deref(),
        config.agent.log_format,
    );
    match runtime().and_then(|rt| rt.block_on(pythond::agent::run(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logs go to stderr: readable text or JSON; the level from RUST_LOG, else the
/// config's `log_level`, else `default`.
fn init_logging(default: &str, configured: Option<&str>, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(configured.unwrap_or(default)))
        .unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: journald, files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

//! The `pythond` command line: `run`, `check`, `status`, `config check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

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
            input,
            plugin,
            all,
        } => {
            let filter = pythond::status_filter::StatusFilter { input, plugin, all };
            match pythond::status::fetch_filtered(&addr, token.as_deref(), &filter) {
                Ok(status) if json => {
                    println!("{status:#}");
                    ExitCode::SUCCESS
                }
                Ok(status) => {
                    print!("{}", pythond::status::render(&status));
                    ExitCode::SUCCESS
                }
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

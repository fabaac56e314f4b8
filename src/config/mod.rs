//! Configuration: the TOML model, its defaults, the conf.d loader and validation.
//!
//! This module owns everything between the user's files and typed settings:
//!
//! - the main file `pythond.toml` ([`load`], [`parse_main`], [`Config`]): `[agent]`,
//!   `[global_tags]`, `[http]`, `[[sinks]]`, `[git_repos]`, all optional;
//! - the input files `<conf_dir>/**/*.conf` ([`load_inputs`], [`parse_inputs`],
//!   [`InputConfig`]): DataKit's `[[inputs.pythond]]` tables plus pythond's own keys.
//!
//! It is strict where silence would hurt — unknown keys, wrong types, bad durations
//! are errors — and every error names the file, the 1-based line and the key
//! ([`ConfigError`]). Other modules receive validated values with defaults applied
//! and absolute paths, and never look at TOML. The reference for users is
//! `docs/CONFIG.md`.

mod error;
pub mod git_url;
mod inputs;
mod instances;
mod json_value;
mod kinds;
mod main_config;
pub(crate) mod network_sink;
mod sinks;
pub(crate) mod tree;
pub(crate) mod values;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Origin};
pub use inputs::{
    load_inputs, parse_inputs, parse_inputs_all, InputConfig, Inputs, Isolation, PluginOverride,
    SkippedTable, Transport, CONF_SUFFIX, INPUT_KIND,
};
pub use instances::{default_concurrency, InstanceConfig, MAX_CONCURRENCY, MAX_PROCESSES};
pub use kinds::KindSettings;
pub use main_config::{
    load, load_all, parse_main, system_hostname, AgentConfig, Config, GitRepoConfig,
    GitReposConfig, HttpConfig, LogFormat, DEFAULT_CONFIG_FILE, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_PULL_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use network_sink::{redact_query, HttpAuth, InfluxApi, NetworkSinkConfig, RequestOptions};
pub use sinks::{OutputFormat, SinkConfig, SinkKind};
pub use values::check_log_level;

//! pythond: runs DataKit-style Python collectors in supervised workers, validates what
//! they report and forwards the points to sinks.
//!
//! Data flows one way: config -> supervisor -> worker frames -> points -> sinks.
//! Each module owns one step; the shared vocabulary (points, categories) lives in
//! [`point`].

pub mod agent;
pub mod api_target;
pub mod check;
pub mod config;
pub mod config_check;
pub mod data_dir;
pub mod events;
pub mod gitsync;
pub mod heap;
pub mod http;
pub mod ingest;
pub mod inputs;
pub mod live_sinks;
pub mod log_dedupe;
pub mod log_text;
pub mod logging;
pub mod main_reload;
pub mod once;
pub mod percent;
pub mod point;
pub mod reload;
pub mod run_once;
pub mod schedule;
pub mod sink;
pub mod state_dump;
pub mod stats;
pub mod status;
pub mod status_filter;
pub mod supervisor;
pub mod tap;
pub mod tap_client;
pub mod top;
pub mod worker;

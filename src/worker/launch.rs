//! How a worker is launched: one description, rendered to argv and environment in one
//! place.
//!
//! Every way the agent starts a worker — `pythond run` (pipe or HTTP transport), one
//! process of several (`processes = N`), a discovery worker or a plugin's own worker
//! (`isolation = "plugin"`), `pythond check` and `run --once` — fills in a [`Launch`]
//! with typed fields and calls [`Launch::render`], which alone knows the runner's
//! flags and variables (docs/PROTOCOL.md, "Process set-up"). Secrets (the input's
//! options, the HTTP worker key) go to the private variables, never to the command
//! line or the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::json;

use super::process::WorkerSpec;
use super::protocol::PROTOCOL_VERSION;
use super::runtime::Runtime;
use super::slot::ProcessSlot;
use crate::config::InputConfig;

/// Largest frame a worker may send on its channel.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Private variable carrying [`worker_options`]: neither on the command line (`ps`)
/// nor in the environment (`/proc/<pid>/environ`).
pub const OPTIONS_ENV: &str = "PYTHOND_OPTIONS";
/// The environment variable carrying an input's [`crate::config::KindSettings`] and
/// the state directory (read by `python/pythond_kinds.py`).
pub const KINDS_ENV: &str = "PYTHOND_KINDS";
/// Private variable carrying the HTTP transport's worker key.
pub const HTTP_TOKEN_ENV: &str = "PYTHOND_HTTP_TOKEN";
/// Which of the input's processes this is, `<n>/<count>` from `1/1`
/// (docs/COLLECTORS.md), for collectors that want to know.
pub const PROCESS_ENV: &str = "PYTHOND_PROCESS";

/// How the worker's `report()` reaches the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Frames on the worker's channel (the default).
    Pipe,
    /// Posts to the agent's write API at `url`, authenticated by `token` (the
    /// agent's worker key, docs/PROTOCOL.md, "HTTP transport").
    Http { url: String, token: String },
}

/// What the worker does with the plugins it imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serve every plugin (or every instance, on its pool).
    All,
    /// Import and say `hello`, call no `init()`: the agent only wants the list.
    Discover,
    /// Serve only the plugin with this id (`isolation = "plugin"`).
    Only(String),
}

/// Everything that decides how one worker is started.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The input's name (`--input`, `$PYTHOND_INPUT`).
    pub input: String,
    /// The interpreter, absolute or looked up on `PATH`.
    pub cmd: String,
    /// The runner script, `<runtime>/pythond_worker.py`.
    pub runner: PathBuf,
    /// Largest frame the worker may send.
    pub max_frame: usize,
    /// Resolved plugin directories and files.
    pub paths: Vec<PathBuf>,
    pub transport: Transport,
    pub mode: Mode,
    /// Which of the input's processes this is.
    pub process: ProcessSlot,
    /// The input's `envs`, added to the agent's environment.
    pub envs: Vec<(String, String)>,
    /// [`worker_options`], sent as the private [`OPTIONS_ENV`].
    pub options: serde_json::Value,
    /// The kinds' settings ([`KINDS_ENV`]).
    pub kinds: serde_json::Value,
}

impl Launch {
    /// The worker of `input` on the resolved plugin `paths`: every plugin, over the
    /// pipe, the input's only process.
    pub fn for_input(runtime: &Runtime, input: &InputConfig, paths: &[PathBuf]) -> Launch {
        Launch {
            input: input.name.clone(),
            cmd: input.cmd.clone(),
            runner: runtime.runner(),
            max_frame: MAX_FRAME,
            paths: paths.to_vec(),
            transport: Transport::Pipe,
            mode: Mode::All,
            process: ProcessSlot::SINGLE,
            envs: input.envs.clone(),
            options: worker_options(input),
            kinds: input.kinds.worker_json(runtime.state_dir(), false),
        }
    }

    /// The same launch as process `slot` of the input.
    pub fn in_process(mut self, slot: ProcessSlot) -> Launch {
        self.process = slot;
        self
    }

    /// The same launch in `mode`.
    pub fn with_mode(&self, mode: Mode) -> Launch {
        let mut launch = self.clone();
        launch.mode = mode;
        launch
    }

    /// The command line and environment (docs/PROTOCOL.md, "Process set-up"):
    ///
    /// `<runner> [--only ID | --discover] [--transport http --http-url URL]
    /// --input NAME --max-frame BYTES PATH...`
    pub fn render(&self) -> WorkerSpec {
        let mut args: Vec<OsString> = vec![self.runner.clone().into_os_string()];
        match &self.mode {
            Mode::All => {}
            Mode::Discover => args.push("--discover".into()),
            // An id is no secret; options are not on the command line.
            Mode::Only(id) => args.extend(["--only".into(), id.into()]),
        }
        if let Transport::Http { url, .. } = &self.transport {
            args.extend([
                "--transport".into(),
                "http".into(),
                "--http-url".into(),
                url.into(),
            ]);
        }
        args.extend([
            "--input".into(),
            self.input.clone().into(),
            "--max-frame".into(),
            self.max_frame.to_string().into(),
        ]);
        args.extend(self.paths.iter().map(|p| p.clone().into_os_string()));

        // The agent's own variables come after the input's `envs`, so they win.
        let mut envs = self.envs.clone();
        envs.extend([
            (KINDS_ENV.to_string(), self.kinds.to_string()),
            (PROCESS_ENV.to_string(), self.process.to_string()),
            ("PYTHOND_PROTOCOL".to_string(), PROTOCOL_VERSION.to_string()),
            ("PYTHOND_INPUT".to_string(), self.input.clone()),
            ("PYTHOND_MAX_FRAME".to_string(), self.max_frame.to_string()),
        ]);
        let mut private_env = vec![(OPTIONS_ENV.to_string(), self.options.to_string())];
        if let Transport::Http { token, .. } = &self.transport {
            // Not in the environment: /proc/<pid>/environ would keep showing it.
            private_env.push((HTTP_TOKEN_ENV.to_string(), token.clone()));
        }
        WorkerSpec {
            input: self.input.clone(),
            cmd: self.cmd.clone(),
            args,
            envs,
            private_env,
            max_frame: self.max_frame,
        }
    }
}

/// What the worker needs of the input's `options` and `[inputs.pythond.plugins.*]`:
/// `{"options": {...}, "plugins": {"<name>": {"enabled": bool, "options": {...}}}}`,
/// plus `"pool": {"concurrency": N}` for an input with instances (docs/PROTOCOL.md,
/// "Pooled inputs"; N is per process).
pub fn worker_options(input: &InputConfig) -> serde_json::Value {
    let plugins: serde_json::Map<String, serde_json::Value> = input
        .plugins
        .iter()
        .map(|(name, plugin)| {
            (
                name.clone(),
                json!({"enabled": plugin.enabled, "options": plugin.options}),
            )
        })
        .collect();
    let mut options = json!({"options": input.options, "plugins": plugins});
    if input.has_instances() {
        options["pool"] = json!({"concurrency": input.effective_concurrency()});
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: &str) -> InputConfig {
        let text = format!(
            "[[inputs.pythond]]\nname = \"shop\"\ncmd = \"python3\"\ndirs = [\"d\"]\n\
             envs = [\"A=1\", \"PYTHOND_INPUT=mine\"]\noptions = {{ password = \"s3cret\" }}\n{extra}"
        );
        let (mut inputs, _) =
            crate::config::parse_inputs(&text, std::path::Path::new("x.conf")).expect("parses");
        inputs.remove(0)
    }

    fn launch(extra: &str) -> Launch {
        Launch {
            input: "shop".into(),
            cmd: "python3".into(),
            runner: "/rt/pythond_worker.py".into(),
            max_frame: MAX_FRAME,
            paths: vec!["/p/a".into(), "/p/b.py".into()],
            transport: Transport::Pipe,
            mode: Mode::All,
            process: ProcessSlot::SINGLE,
            envs: input(extra).envs,
            options: worker_options(&input(extra)),
            kinds: json!({"once": false}),
        }
    }

    fn argv(spec: &WorkerSpec) -> Vec<String> {
        spec.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn env<'a>(spec: &'a WorkerSpec, key: &str) -> Vec<&'a str> {
        spec.envs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn the_plain_worker_gets_input_frame_limit_and_paths_in_order() {
        let spec = launch("").render();
        assert_eq!(spec.cmd, "python3");
        assert_eq!(
            argv(&spec),
            [
                "/rt/pythond_worker.py",
                "--input",
                "shop",
                "--max-frame",
                "4194304",
                "/p/a",
                "/p/b.py"
            ]
        );
        assert_eq!(env(&spec, "A"), ["1"]);
        assert_eq!(env(&spec, KINDS_ENV), [r#"{"once":false}"#]);
        assert_eq!(env(&spec, PROCESS_ENV), ["1/1"]);
        assert_eq!(env(&spec, "PYTHOND_PROTOCOL"), ["1"]);
        // The agent's variable comes last, so it wins over the input's `envs`.
        assert_eq!(env(&spec, "PYTHOND_INPUT"), ["mine", "shop"]);
    }

    #[test]
    fn mode_and_http_transport_come_before_the_input_and_secrets_stay_private() {
        let mut launch = launch("");
        launch.transport = Transport::Http {
            url: "http://127.0.0.1:9529".into(),
            token: "worker-key".into(),
        };
        let only = launch.with_mode(Mode::Only("m.Probe".into())).render();
        assert_eq!(
            argv(&only)[..8],
            [
                "/rt/pythond_worker.py",
                "--only",
                "m.Probe",
                "--transport",
                "http",
                "--http-url",
                "http://127.0.0.1:9529",
                "--input"
            ]
        );
        let discover = launch.with_mode(Mode::Discover).render();
        assert_eq!(argv(&discover)[1..3], ["--discover", "--transport"]);
        for spec in [&only, &discover] {
            let public: Vec<String> = argv(spec)
                .into_iter()
                .chain(spec.envs.iter().map(|(k, v)| format!("{k}={v}")))
                .collect();
            assert!(
                public
                    .iter()
                    .all(|a| !a.contains("worker-key") && !a.contains("s3cret")),
                "{public:?}"
            );
            let private: Vec<&str> = spec.private_env.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(private, [OPTIONS_ENV, HTTP_TOKEN_ENV]);
            assert_eq!(spec.private_env[1].1, "worker-key");
            let options: serde_json::Value =
                serde_json::from_str(&spec.private_env[0].1).expect("json");
            assert_eq!(options["options"]["password"], "s3cret");
        }
    }

    #[test]
    fn a_process_of_several_is_named_and_its_pool_is_sized_for_its_share() {
        let mut instances = String::from("processes = 4\n");
        for i in 0..1000 {
            instances.push_str(&format!("[[inputs.pythond.instances]]\nname = \"i{i}\"\n"));
        }
        let config = input(&instances);
        let slot = ProcessSlot::all(4).nth(1).expect("slot");
        let mut launch = launch("").in_process(slot);
        launch.options = worker_options(&config);
        let spec = launch.render();
        assert_eq!(env(&spec, PROCESS_ENV), ["2/4"]);
        let options: serde_json::Value =
            serde_json::from_str(&spec.private_env[0].1).expect("json");
        // 250 instances per process: 5 threads each (one per 50), not 20.
        assert_eq!(options["pool"]["concurrency"], 5);
    }
}

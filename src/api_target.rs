//! Where the CLI's client commands (`status`, `tap`, `top`) find a running agent's
//! HTTP API: `--addr`/`--token`, or the agent's own pythond.toml (`--config`), whose
//! `[http] listen` and `token` they then use (docs/OPERATIONS.md).

use std::path::Path;

use crate::config::{self, ConfigError};

/// The address and token to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTarget {
    /// `HOST:PORT`.
    pub addr: String,
    pub token: Option<String>,
}

/// Why the agent's address could not be learnt from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: [http] listen = {listen:?} picks a free port at start; give the port the agent logged (`HTTP API listening on ...`) with --addr")]
    EphemeralPort { file: String, listen: String },
}

impl ApiTarget {
    /// `addr` and `token` as given, unless `config` names a pythond.toml: then its
    /// `[http] listen` (an unspecified IP such as 0.0.0.0 becomes loopback) and its
    /// token, a `--token`/`PYTHOND_TOKEN` given as well taking precedence.
    pub fn resolve(
        addr: &str,
        token: Option<String>,
        config: Option<&Path>,
    ) -> Result<ApiTarget, TargetError> {
        let Some(file) = config else {
            return Ok(ApiTarget {
                addr: addr.to_string(),
                token,
            });
        };
        let loaded = config::load(Some(file))?;
        let listen = loaded.http.listen.clone();
        let (host, port) = listen.rsplit_once(':').unwrap_or((listen.as_str(), ""));
        if port == "0" {
            return Err(TargetError::EphemeralPort {
                file: file.display().to_string(),
                listen,
            });
        }
        let host = match host {
            "0.0.0.0" | "" => "127.0.0.1",
            "[::]" => "[::1]",
            other => other,
        };
        Ok(ApiTarget {
            addr: format!("{host}:{port}"),
            token: token.or(loaded.http.token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listen_and_token_from_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pythond.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"0.0.0.0:19529\"\ntoken = \"s3cret\"\n",
        )
        .expect("write");
        let target = ApiTarget::resolve("127.0.0.1:9529", None, Some(&file)).expect("target");
        assert_eq!(target.addr, "127.0.0.1:19529");
        assert_eq!(target.token.as_deref(), Some("s3cret"));
        let given = ApiTarget::resolve("x", Some("mine".into()), Some(&file)).expect("target");
        assert_eq!(given.token.as_deref(), Some("mine"));
    }

    #[test]
    fn an_ephemeral_port_is_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pythond.toml");
        std::fs::write(&file, "[http]\nlisten = \"127.0.0.1:0\"\n").expect("write");
        let error = ApiTarget::resolve("x", None, Some(&file)).expect_err("port 0");
        assert!(error.to_string().contains("--addr"), "{error}");
    }
}

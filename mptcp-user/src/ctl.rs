//! Runtime control of a running controller: a unix socket
//! (`/run/mptcp-ebpf/<instance>.sock`, root only) that takes one JSON request
//! line and answers one JSON response line (served by `daemon::local`). Every
//! runtime change goes through it, because the controller is the one writer
//! of the maps and keeps what was changed for its successor (`runtime.rs`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::PolicyName;
use crate::lifecycle::RUN_ROOT;
use crate::status::Status;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// New hints for one path (client).
    PathSet(PathChange),
    /// Switch a class's policy.
    PolicySet(PolicyChoice),
    /// Each class and its policy.
    PolicyShow,
    /// Per-subflow state, counters and the controller's estimates.
    Status,
}

/// A class's policy by name (and flowlet's base policy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChoice {
    pub class: String,
    pub policy: PolicyName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PolicyName>,
    /// auto only, when shown: the policy it stands for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<PolicyName>,
}

/// New hints for a path (by name or interface); unset fields stay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathChange {
    pub path: String,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub rate_mbit: Option<f64>,
    pub backup: Option<bool>,
}

impl PathChange {
    /// Apply the fields this change sets to a path's configuration.
    pub fn apply_to(&self, cfg: &mut crate::config::PathConfig) {
        if let Some(v) = self.priority {
            cfg.priority = v;
        }
        if let Some(v) = self.weight {
            cfg.weight = v;
        }
        if let Some(v) = self.rate_mbit {
            cfg.rate_mbit = (v > 0.0).then_some(v);
        }
        if let Some(v) = self.backup {
            cfg.backup = v;
        }
    }

    /// This change followed by `later` (its set fields win).
    pub fn merge(&mut self, later: &PathChange) {
        self.priority = later.priority.or(self.priority);
        self.weight = later.weight.or(self.weight);
        self.rate_mbit = later.rate_mbit.or(self.rate_mbit);
        self.backup = later.backup.or(self.backup);
    }

    pub fn validate(&self) -> Result<()> {
        if self.priority.is_none() && self.weight.is_none() && self.rate_mbit.is_none() && self.backup.is_none() {
            bail!("nothing to change: give --priority, --weight, --rate, --backup or --no-backup");
        }
        if let Some(r) = self.rate_mbit {
            if !(r >= 0.0 && r.is_finite()) {
                bail!("--rate must be a number of Mbit/s, 0 to estimate the rate from feedback");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Done; a line for the operator.
    Ok(String),
    /// Refused or failed; why.
    Error(String),
    Policies(Vec<PolicyChoice>),
    Status(Box<Status>),
}

pub fn socket_path(instance: &str) -> PathBuf {
    PathBuf::from(RUN_ROOT).join(format!("{instance}.sock"))
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens on the instance's socket.
    #[error("instance {instance} has no running controller ({path} unreachable)")]
    NoController { instance: String, path: String },
    /// The controller answered with an error.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Send `req` to the instance's controller and return its answer.
pub fn call(instance: &str, req: &Request) -> Result<Response, CallError> {
    let path = socket_path(instance);
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|_| CallError::NoController { instance: instance.to_string(), path: path.display().to_string() })?;
    let mut exchange = || -> Result<Response> {
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        s.write_all(line.as_bytes())?;
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).context("no answer from the controller")?;
        serde_json::from_str(&answer).context("malformed answer from the controller")
    };
    match exchange()? {
        Response::Error(e) => Err(CallError::Refused(e)),
        r => Ok(r),
    }
}

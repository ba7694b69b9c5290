//! Runtime control of a running controller: a unix socket
//! (`/run/mptcp-ebpf/<instance>.sock`, root only) that takes one JSON request
//! line and answers one JSON response line (served by `daemon::local`). `mptcp-user path set` uses it,
//! because path hints belong to the controller (it re-installs them on every
//! re-join and tells the peer), not to a one-off map write.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::lifecycle::RUN_ROOT;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    PathSet(PathChange),
}

/// New hints for a path (by name or interface); unset fields stay.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PathChange {
    pub path: String,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub rate_mbit: Option<f64>,
    pub backup: Option<bool>,
}

impl PathChange {
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
    Ok(String),
    Error(String),
}

pub fn socket_path(instance: &str) -> PathBuf {
    PathBuf::from(RUN_ROOT).join(format!("{instance}.sock"))
}

/// Send `req` to the instance's controller and return its answer.
pub fn call(instance: &str, req: &Request) -> Result<String> {
    let path = socket_path(instance);
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("instance {instance} has no running controller ({} unreachable)", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).context("no answer from the controller")?;
    match serde_json::from_str(&answer).context("malformed answer from the controller")? {
        Response::Ok(m) => Ok(m),
        Response::Error(e) => bail!("{e}"),
    }
}

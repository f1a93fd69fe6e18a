//! The original article's stack (Flask under gunicorn, ../shared/peers),
//! started with its own run_peer.sh and stopped with stop_peer.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::load::{Id, send};

pub struct Peer {
    dir: PathBuf,
    pid: String,
    port: u16,
    pub base: String,
}

impl Peer {
    /// `run_peer.sh PORT DATABASE_URL` (`sqlite:////abs/file.db` or `postgres://...`).
    pub fn start(dir: &Path, database_url: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(dir.join("run_peer.sh"));
        cmd.arg(port.to_string()).arg(database_url);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}/run_peer.sh", dir.display()))?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || pid.is_empty() || !pid.chars().all(|c| c.is_ascii_digit()) {
            bail!(
                "run_peer.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            pid,
            port,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The peer's admin-free seeding route: `count` products with `stock` each.
    pub async fn seed(&self, http: &reqwest::Client, count: usize, stock: i64) -> Result<Vec<Id>> {
        let (status, _, body) = send(
            http.post(format!("{}/seed", self.base))
                .json(&json!({"count": count, "stock": stock})),
        )
        .await;
        if status != 201 {
            bail!("the peer's /seed answered {status}: {body}");
        }
        let ids: Vec<Id> = body["productIds"]
            .as_array()
            .map(|a| a.iter().filter_map(Id::from_json).collect())
            .unwrap_or_default();
        if ids.len() != count {
            bail!("the peer seeded {} of {count} products", ids.len());
        }
        Ok(ids)
    }

    /// The gunicorn workers' settings, as run_peer.sh reads them.
    pub fn describe() -> String {
        let class = std::env::var("WORKER_CLASS").unwrap_or_else(|_| "sync".to_owned());
        let workers = std::env::var("WORKERS").unwrap_or_else(|_| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (2 * n + 1).to_string()
        });
        format!("Flask under gunicorn, {class} workers x{workers}")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let stopped = Command::new(self.dir.join("stop_peer.sh"))
            .arg(&self.pid)
            .stdout(Stdio::null())
            .status();
        if matches!(stopped, Ok(s) if s.success()) {
            let _ = std::fs::remove_file(format!("/tmp/flask_peer_{}.log", self.port));
        } else {
            eprintln!("stop_peer.sh {} did not succeed: {stopped:?}", self.pid);
        }
    }
}

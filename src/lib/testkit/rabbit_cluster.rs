//! A RabbitMQ cluster of our own on this machine: N nodes with their own names, ports, data
//! directories and Erlang cookie, joined with `rabbitmqctl join_cluster`, for failover tests.
//! Nodes are stopped through `rabbitmqctl -n` (or, failing that, by the process group each
//! node's start script was given) and their directories removed on drop; the machine's own
//! broker is never touched.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, unique_name, wait_for};

const BIN: &str = "/usr/lib/rabbitmq/bin";

pub struct RabbitNode {
    pub name: String,
    pub port: u16,
    home: PathBuf,
    child: Option<Child>,
}

pub struct RabbitCluster {
    pub nodes: Vec<RabbitNode>,
    base: PathBuf,
}

fn ctl(home: &Path, node: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(Path::new(BIN).join("rabbitmqctl"))
        .env("HOME", home)
        .args(["-n", node, "-q"])
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl -n {node} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

impl RabbitCluster {
    /// Starts `size` nodes and joins them into one cluster (about 15 s on 2 cores).
    pub fn start(size: usize) -> Result<RabbitCluster, String> {
        if !Path::new(BIN).join("rabbitmq-server").exists() {
            return Err(format!(
                "{BIN}/rabbitmq-server missing (scripts/services installs RabbitMQ)"
            ));
        }
        let base = std::env::temp_dir().join(unique_name("mmrabbit"));
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        // One cookie for the cluster and its CLI, in a HOME of its own.
        let cookie = base.join(".erlang.cookie");
        std::fs::write(&cookie, unique_name("cookie")).map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
            .map_err(|e| e.to_string())?;
        let tag = unique_name("n");
        let mut cluster = RabbitCluster {
            nodes: Vec::new(),
            base: base.clone(),
        };
        for i in 1..=size {
            cluster.nodes.push(RabbitNode::launch(
                &base,
                &format!("mm{i}{tag}@localhost"),
                i,
            )?);
        }
        for node in &cluster.nodes {
            // `await_startup` gives up at once on a node not yet registered with epmd.
            wait_for("the node to start", Duration::from_secs(120), || {
                node.ctl(&["await_startup", "--timeout", "20"]).ok()
            });
        }
        let first = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            node.ctl(&["stop_app"])?;
            node.ctl(&["join_cluster", &first])?;
            node.ctl(&["start_app"])?;
        }
        Ok(cluster)
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/` for each node, comma-separated, in `order`.
    pub fn url_list(&self, order: &[usize]) -> String {
        order
            .iter()
            .map(|&i| self.nodes[i].url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node that leads quorum queue `queue` (asked of a running node).
    pub fn leader_of(&self, queue: &str) -> Option<usize> {
        let node = self.nodes.iter().find(|n| n.child.is_some())?;
        let out = node.ctl(&["list_queues", "name", "leader"]).ok()?;
        let leader = out.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next()? == queue).then(|| cols.next().map(str::to_string))?
        })?;
        self.nodes.iter().position(|n| n.name == leader)
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl RabbitNode {
    fn launch(base: &Path, name: &str, i: usize) -> Result<RabbitNode, String> {
        let dir = base.join(format!("node{i}"));
        std::fs::create_dir_all(dir.join("log")).map_err(|e| e.to_string())?;
        let port = free_port();
        let write = |file: &str, text: String| {
            std::fs::write(dir.join(file), text).map_err(|e| format!("{file}: {e}"))
        };
        write(
            "rabbitmq.conf",
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        write("enabled_plugins", "[].\n".into())?;
        write("rabbitmq-env.conf", String::new())?;
        let log = std::fs::File::create(dir.join("log/console.log")).map_err(|e| e.to_string())?;
        let child = Command::new(Path::new(BIN).join("rabbitmq-server"))
            .env("HOME", base)
            .env("RABBITMQ_NODENAME", name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            // A crashing node writes MnesiaCore/erl_crash.dump into its working directory.
            .current_dir(&dir)
            // Its own group: the start script, the Erlang VM and its helpers end together even
            // when the node never came up far enough for `rabbitmqctl stop`.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("rabbitmq-server: {e}"))?;
        Ok(RabbitNode {
            name: name.to_string(),
            port,
            home: base.to_path_buf(),
            child: Some(child),
        })
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/", self.port)
    }

    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        ctl(&self.home, &self.name, args)
    }

    /// Stops the node (`rabbitmqctl stop`, then its whole process group if it lingers) and
    /// waits for its start script to end.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = self.ctl(&["stop"]).is_ok();
        if !(stopped && wait_for_exit(&mut child, Duration::from_secs(20))) {
            kill_group(&mut child);
        }
    }

    /// Kills the node's Erlang VM at once (SIGKILL, as a crash or a power cut would: no
    /// leadership handed over, connections cut), by the pid the node reports for itself.
    pub fn kill(&mut self) -> Result<(), String> {
        let out = self.ctl(&["eval", "list_to_integer(os:getpid())."])?;
        let pid: i32 = out
            .trim()
            .parse()
            .map_err(|_| format!("the node's pid: {out:?}"))?;
        // SAFETY: kill(2) on the pid of the VM this cluster started.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
        }
        if let Some(mut child) = self.child.take() {
            // The start script waits for the VM; it ends with it.
            if !wait_for_exit(&mut child, Duration::from_secs(20)) {
                kill_group(&mut child);
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// SIGKILLs the process group the node was started in (its pgid is the start script's pid).
fn kill_group(child: &mut Child) {
    // SAFETY: killpg(2) on the group created for this node's start script.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Polls until `node` answers AMQP (after a start or a rejoin).
pub fn wait_until_open(node: &RabbitNode) {
    wait_for(
        "the node to accept connections",
        Duration::from_secs(60),
        || {
            crate::bus::connection::open(&node.url())
                .ok()
                .map(|c| drop(c.close()))
        },
    );
}

//! A PostgreSQL primary and its streaming replica of our own (initdb and pg_basebackup on free
//! ports, in a scratch directory), for failover and read-replica tests: stopped and removed
//! on drop. Only the servers these start are ever stopped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, unique_name, wait_for};

/// One PostgreSQL server we started.
pub struct PgServer {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    stopped: bool,
}

/// A primary and a replica streaming from it.
pub struct PgPair {
    pub primary: PgServer,
    pub replica: PgServer,
    base: PathBuf,
}

/// The newest installed server's binaries (Debian: /usr/lib/postgresql/N/bin).
fn server_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (scripts/services installs PostgreSQL)"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries in /usr/lib/postgresql".into())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as the `postgres` user when we are root (the server refuses to run as root).
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    out.status.success().then_some(()).ok_or_else(|| {
        format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )
    })
}

/// A directory the server user owns.
fn server_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if running_as_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:postgres").arg(path);
                c
            },
            "chown",
        )?;
    }
    Ok(())
}

impl PgPair {
    /// Starts a primary (trust authentication on 127.0.0.1, user `postgres`) and a replica
    /// made from it with `pg_basebackup -R`, and waits until the replica streams.
    pub fn start() -> Result<PgPair, String> {
        let bin = server_bin()?;
        let base = std::env::temp_dir().join(unique_name("mmpg"));
        server_dir(&base)?;
        let primary_dir = base.join("primary");
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&primary_dir);
        run(initdb, "initdb")?;
        let primary = PgServer::launch(&bin, primary_dir, &base)?;
        let replica_dir = base.join("replica");
        let mut basebackup = as_server_user(&bin.join("pg_basebackup"));
        basebackup
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-p",
            ])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(&replica_dir);
        run(basebackup, "pg_basebackup")?;
        let replica = PgServer::launch(&bin, replica_dir, &base)?;
        let pair = PgPair {
            primary,
            replica,
            base,
        };
        wait_for("the replica to stream", Duration::from_secs(30), || {
            let mut c = pair.replica.client("postgres").ok()?;
            let row = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                    &[],
                )
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        });
        Ok(pair)
    }

    /// Creates database `name` on the primary, migrated, and waits for the replica to have it.
    pub fn create_database(&self, name: &str) -> postgres::Client {
        let mut admin = self.primary.client("postgres").expect("primary answers");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let mut client = self.primary.client(name).expect("connect");
        crate::db::migrate::run(&mut client).expect("migrations apply");
        wait_for(
            "the replica to have the database",
            Duration::from_secs(30),
            || {
                let mut c = self.replica.client(name).ok()?;
                c.query_one("SELECT count(*) FROM servers", &[]).ok()
            },
        );
        client
    }

    /// `postgres://…` naming both servers, primary first, for a writer
    /// (`target_session_attrs=read-write` passes over whichever is the standby).
    pub fn failover_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&connect_timeout=2",
            self.primary.port, self.replica.port
        )
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        self.replica.stop();
        self.primary.stop();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl PgServer {
    fn launch(bin: &Path, data: PathBuf, base: &Path) -> Result<PgServer, String> {
        let port = free_port();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        use std::io::Write as _;
        writeln!(
            conf,
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nhot_standby = on\nwal_level = replica\nmax_wal_senders = 5\n\
             wal_receiver_status_interval = 1s",
            base.display()
        )
        .map_err(|e| format!("postgresql.conf: {e}"))?;
        let server = PgServer {
            port,
            data,
            bin: bin.to_path_buf(),
            stopped: false,
        };
        server.pg_ctl(&["start", "-w", "-t", "30", "-l"], Some("server.log"))?;
        Ok(server)
    }

    fn pg_ctl(&self, args: &[&str], log: Option<&str>) -> Result<(), String> {
        let mut c = as_server_user(&self.bin.join("pg_ctl"));
        c.args(args);
        if let Some(log) = log {
            c.arg(self.data.join(log));
        }
        c.arg("-D").arg(&self.data);
        run(c, &format!("pg_ctl {}", args[0]))
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn client(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Client::connect(&self.url(db), postgres::NoTls)
    }

    /// Stops it at once, as a power cut would (`-m immediate`: no shutdown checkpoint).
    pub fn stop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"], None);
            self.stopped = true;
        }
    }

    /// Promotes a standby to primary and waits until it takes writes.
    pub fn promote(&self) -> Result<(), String> {
        self.pg_ctl(&["promote", "-w"], None)?;
        wait_for(
            "the promoted server to take writes",
            Duration::from_secs(30),
            || {
                let mut c = self.client("postgres").ok()?;
                let row = c.query_one("SELECT pg_is_in_recovery()", &[]).ok()?;
                (!row.get::<_, bool>(0)).then_some(())
            },
        );
        Ok(())
    }
}

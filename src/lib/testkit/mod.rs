//! Scratch resources for tests and benchmarks: a private PostgreSQL database and RabbitMQ vhost
//! (removed on drop), unique names, and condition polling. Not used by the daemons.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod postgres_pair;
pub mod rabbit_cluster;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `prefix_<pid>_<n>_<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The maintenance database used to create and drop scratch databases
/// (`MANMAN_TEST_ADMIN_DATABASE_URL`, default the local `postgres` database).
pub fn admin_db_url() -> String {
    std::env::var("MANMAN_TEST_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database, dropped on drop.
pub struct ScratchDb {
    pub name: String,
    pub config: postgres::Config,
}

impl ScratchDb {
    pub fn new(prefix: &str) -> ScratchDb {
        let name = unique_name(prefix);
        let mut admin = postgres::Client::connect(&admin_db_url(), postgres::NoTls)
            .expect("PostgreSQL must be running (scripts/services)");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create scratch database");
        let mut config: postgres::Config = admin_db_url().parse().expect("admin URL parses");
        config.dbname(&name);
        let mut client = config
            .connect(postgres::NoTls)
            .expect("connect scratch database");
        crate::db::migrate::run(&mut client).expect("migrations apply");
        ScratchDb { name, config }
    }

    pub fn client(&self) -> postgres::Client {
        self.config
            .connect(postgres::NoTls)
            .expect("connect scratch database")
    }

    /// A URL for child processes (`DATABASE_URL`).
    pub fn url(&self) -> String {
        let mut url: String = admin_db_url();
        if let Some(slash) = url.rfind('/') {
            url.truncate(slash + 1);
        }
        url + &self.name
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&admin_db_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Runs `rabbitmqctl` and panics with its stderr if it fails; returns its stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (scripts/services)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private RabbitMQ vhost for `guest`, deleted with everything in it on drop.
pub struct ScratchVhost {
    pub name: String,
}

impl ScratchVhost {
    pub fn new(prefix: &str) -> ScratchVhost {
        let name = unique_name(prefix);
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        ScratchVhost { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    pub fn connect(&self) -> amiquip::Connection {
        crate::bus::connection::open(&self.url()).expect("connect scratch vhost")
    }
}

impl Drop for ScratchVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The loopback S3 server tests use (`MANMAN_TEST_S3_ENDPOINT`, default moto on port 9000,
/// started by `scripts/services s3`).
pub fn s3_endpoint() -> String {
    std::env::var("MANMAN_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

/// A private S3 bucket, emptied and deleted on drop.
pub struct ScratchBucket {
    pub config: crate::logstore::S3Config,
    pub store: crate::logstore::ObjectStore,
}

impl ScratchBucket {
    pub fn new() -> ScratchBucket {
        // Bucket names: lowercase letters, digits and dashes.
        let name = unique_name("mmtest").replace('_', "-");
        let config = crate::logstore::S3Config::local(&s3_endpoint(), &name);
        let store = crate::logstore::ObjectStore::new(&config).expect("S3 client");
        // A plain PUT: the loopback server does not check signatures, and rust-s3 would send
        // a LocationConstraint for us-east-1 that moto refuses.
        ureq::put(&format!("{}/{name}", s3_endpoint()))
            .call()
            .expect("create a scratch bucket (is the S3 server running? scripts/services s3)");
        ScratchBucket { config, store }
    }
}

impl Default for ScratchBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchBucket {
    fn drop(&mut self) {
        let _ = self.store.delete_all("");
        let _ = self.store.delete_bucket();
    }
}

/// A daemon binary built beside the running example or test (`target/<profile>/<name>`).
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    // examples/ and deps/ sit one level below the profile directory.
    exe.parent()
        .and_then(|dir| dir.parent())
        .expect("target/<profile>/")
        .join(name)
}

/// A TCP port free on loopback right now, and never the same one twice in this process (the
/// kernel may hand a just-released port out again, and two daemons given one port collide).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = crate::sync::lock(&GIVEN);
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = l.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A plain HTTP/1.1 GET on loopback; the whole response (status line, headers, body), or
/// empty if nothing listens.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Logs in to the dashboard on `port` with an API token: the cookie to send (`mm_web=…`) and
/// the login's CSRF token.
pub fn dashboard_login(port: u16, token: &str) -> (String, String) {
    let login = ureq::post(&format!("http://127.0.0.1:{port}/api/login"))
        .send_json(serde_json::json!({ "token": token }))
        .expect("a dashboard login");
    let cookie = login
        .header("Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("a login cookie")
        .to_string();
    let me: serde_json::Value = login.into_json().expect("the login's JSON");
    (cookie, me["csrf"].as_str().unwrap_or_default().to_string())
}

/// The `p` quantile (0–1) of sorted figures, for benchmarks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU time (user + system) used so far by `who`: `libc::RUSAGE_SELF` (this process) or
/// `libc::RUSAGE_THREAD` (the calling thread), for benchmarks.
pub fn cpu_time(who: libc::c_int) -> std::time::Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `len` pseudo-random bytes (xorshift, the same for the same seed): what zstd cannot shrink,
/// as a game's already-compressed region files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// CPU seconds (user + system) a process has used, from `/proc/{pid}/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) / hz
}

/// The `p` percentile (0..=1) of sorted microseconds, in milliseconds (NaN when empty).
pub fn percentile_ms(sorted_us: &[i64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    sorted_us[((sorted_us.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// (current RSS, peak RSS) of a process in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The throwaway CA and broker certificate `scripts/services` made for RabbitMQ's TLS listener
/// on 127.0.0.1:5671 (`$MANMAN_HOME/tls`, default `~/.cache/manman/tls`).
pub fn services_tls_dir() -> std::path::PathBuf {
    let home = std::env::var("MANMAN_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cache/manman",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    std::path::PathBuf::from(home).join("tls")
}

/// Makes a throwaway CA and a server certificate for localhost/127.0.0.1 in `dir`
/// (`scripts/make-test-ca`): `ca.pem`, `server.pem`, `server.key`.
pub fn make_test_ca(dir: &std::path::Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-test-ca");
    let out = Command::new(script)
        .arg(dir)
        .output()
        .expect("run scripts/make-test-ca");
    assert!(
        out.status.success(),
        "make-test-ca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small XFS filesystem (reflinks on) in a sparse image, loop-mounted for one test and
/// unmounted on drop: where copy-on-write snapshots can be taken (the machine's own disk is
/// ext4, which has none). `None`, with why, where it cannot be had (not root, no mkfs.xfs, no
/// loop devices).
pub struct ReflinkFs {
    pub mount: std::path::PathBuf,
    image: std::path::PathBuf,
}

impl ReflinkFs {
    /// 320 MiB: mkfs.xfs's smallest.
    pub fn new() -> Result<ReflinkFs, String> {
        Self::sized(320 << 20)
    }

    /// `bytes` of filesystem (at least 320 MiB); sparse, so it takes only what is written.
    pub fn sized(bytes: u64) -> Result<ReflinkFs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a filesystem needs root".into());
        }
        let base = std::env::temp_dir().join(unique_name("mmxfs"));
        let (image, mount) = (base.with_extension("img"), base.with_extension("mnt"));
        let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("{program}: {e} (scripts/test installs xfsprogs)"))?;
            out.status.success().then_some(()).ok_or_else(|| {
                format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim())
            })
        };
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes.max(320 << 20)))
            .map_err(|e| format!("{}: {e}", image.display()))?;
        std::fs::create_dir_all(&mount).map_err(|e| format!("{}: {e}", mount.display()))?;
        let made = run(
            "mkfs.xfs",
            &[
                "-q".as_ref(),
                "-m".as_ref(),
                "reflink=1".as_ref(),
                image.as_os_str(),
            ],
        )
        .and_then(|()| {
            run(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    mount.as_os_str(),
                ],
            )
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&image);
            let _ = std::fs::remove_dir(&mount);
            return Err(e);
        }
        Ok(ReflinkFs { mount, image })
    }
}

impl Drop for ReflinkFs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process of the test's lingers): detached now, gone once it ends.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A daemon a test spawned, SIGKILLed and reaped when dropped: a test that fails half-way
/// leaves no process behind (one that did kept reconnecting to its deleted vhost, and held the
/// test's stdout open for whoever read it through a pipe).
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// SIGKILL now (as a crash would) and reap it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

//! The agent's side of a keeper: [`KeeperLauncher`] starts a keeper per process (or finds the
//! one a previous agent left), and [`KeeperChild`] is the process manager's child seen
//! through the keeper's socket. The supervisor thread waits on that socket instead of the
//! child's pidfd; restart policy and state stay with the process manager.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procman::{sys, ChildIo, ExitInfo, Launcher, Source, Spec, PASSED_THROUGH_ENV};
use manman_keeper::protocol::{encode, Event, KeeperDir, KeeperSpec, Request};

/// How long a keeper may take to start its game and say so.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keeper may take to answer an attach.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts every process under its own keeper (`binary`), with the keepers' directories under
/// `root` (0700).
pub struct KeeperLauncher {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Launcher for KeeperLauncher {
    fn launch(
        &self,
        spec: &Spec,
        global_env: &[(String, String)],
    ) -> std::io::Result<Box<dyn ChildIo>> {
        let dir = KeeperDir::new(&self.root, &spec.name);
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir.0)?;
        let keeper_spec = KeeperSpec {
            spec: spec.launch(),
            env: global_env.to_vec(),
        };
        std::fs::write(dir.spec(), encode(&keeper_spec))?;
        std::fs::set_permissions(dir.spec(), std::fs::Permissions::from_mode(0o600))?;
        let log = std::fs::File::create(dir.log())?;
        // The keeper needs none of the agent's environment (its credentials least of all).
        let passed = PASSED_THROUGH_ENV
            .iter()
            .chain(&["LOG_LEVEL"])
            .filter_map(|k| Some((*k, std::env::var_os(k)?)));
        let mut keeper = Command::new(&self.binary)
            .env_clear()
            .envs(passed)
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Not in our process group: a signal meant for the agent never reaches it.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!("cannot run {}: {e}", self.binary.display()))
            })?;
        let stdout = keeper.stdout.take().expect("piped");
        // The first process forks the keeper proper and exits at once.
        let _ = keeper.wait();
        let ready = read_line_within(stdout, READY_TIMEOUT)?;
        match ready.split_once(' ') {
            Some(("ready", _)) => {}
            Some(("error", why)) => return Err(std::io::Error::other(why.to_string())),
            _ => {
                return Err(std::io::Error::other(format!(
                    "the keeper did not start (see {})",
                    dir.log().display()
                )))
            }
        }
        Ok(Box::new(KeeperChild::attach(dir, 0)?))
    }

    fn keeps_processes(&self) -> bool {
        true
    }

    fn adopt(&self, name: &str, pid: u32, after_seq: u64) -> Option<Box<dyn ChildIo>> {
        let dir = KeeperDir::new(&self.root, name);
        match KeeperChild::attach(dir.clone(), after_seq) {
            Ok(child) => Some(Box::new(child)),
            // The game ended and its keeper left (or was killed) before we came back: its
            // exit is still on disk.
            Err(e) => match ExitedChild::read(dir, pid) {
                Some(exited) => {
                    log::info!(process = name; "its keeper is gone; the game's exit was kept in exit.json");
                    Some(Box::new(exited))
                }
                None => {
                    log::warn!(process = name; "no keeper to re-attach to: {e}");
                    None
                }
            },
        }
    }
}

fn read_line_within(
    stdout: std::process::ChildStdout,
    timeout: Duration,
) -> std::io::Result<String> {
    let mut fds = [sys::pollfd(stdout.as_raw_fd(), libc::POLLIN)];
    sys::poll(&mut fds, Some(timeout))?;
    if fds[0].revents == 0 {
        return Err(std::io::Error::other("the keeper did not answer in time"));
    }
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// A process held by a keeper, seen through its socket.
pub struct KeeperChild {
    dir: KeeperDir,
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Console bytes in `outbuf` not yet written to the socket.
    input_pending: usize,
    pid: u32,
    start_time: Option<u64>,
    last_seq: u64,
    exit: Option<ExitInfo>,
    /// The socket closed without an exit: the keeper died.
    lost: bool,
    /// The game's cgroup (from the keeper's spec): what a dead keeper leaves is killed in it.
    cgroup: Option<manman_cgroup::Cgroup>,
}

impl KeeperChild {
    /// Connects to the keeper in `dir` and resumes its output after `after`.
    pub fn attach(dir: KeeperDir, after: u64) -> std::io::Result<KeeperChild> {
        let mut stream = UnixStream::connect(dir.socket())?;
        stream.write_all(&encode(&Request::Attach { after }))?;
        stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
        // Byte by byte up to the first newline: nothing after it may be consumed here.
        let mut hello = Vec::new();
        let mut byte = [0u8; 1];
        while byte[0] != b'\n' {
            if stream.read(&mut byte)? == 0 {
                return Err(std::io::Error::other("the keeper closed the connection"));
            }
            hello.push(byte[0]);
        }
        let (pid, start_time) = match serde_json::from_slice::<Event>(&hello) {
            Ok(Event::Hello { pid, start_time }) => (pid, start_time),
            _ => return Err(std::io::Error::other("the keeper did not say hello")),
        };
        stream.set_read_timeout(None)?;
        stream.set_nonblocking(true)?;
        let cgroup = std::fs::read(dir.spec())
            .ok()
            .and_then(|raw| serde_json::from_slice::<KeeperSpec>(&raw).ok())
            .and_then(|k| k.spec.cgroup);
        Ok(KeeperChild {
            dir,
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            input_pending: 0,
            pid,
            start_time,
            last_seq: after,
            exit: None,
            lost: false,
            cgroup,
        })
    }

    fn flush(&mut self) {
        if !self.lost && sys::write_pending(&mut self.stream, &mut self.outbuf).is_err() {
            self.lost = true;
            self.outbuf.clear();
        }
        if self.outbuf.is_empty() {
            self.input_pending = 0;
        }
    }

    fn send(&mut self, request: &Request) {
        self.outbuf.extend(encode(request));
        self.flush();
    }

    /// Signals the game's process group directly (the keeper is gone): if the leader is still
    /// our game, or already gone (then the kernel killed it with its keeper, and what is left
    /// in its group are its own children: a group id cannot be reused while it has members).
    fn signal_directly(&self, signal: i32) {
        let now = sys::process_start_time(self.pid);
        if now.is_none() || now == self.start_time {
            sys::signal_group(self.pid, signal);
        }
        // Whatever double-forked out of the group is still in the session's cgroup.
        if signal == libc::SIGKILL {
            if let Some(group) = &self.cgroup {
                group.kill_all();
            }
        }
    }
}

impl ChildIo for KeeperChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    fn wait_fds(&self, fds: &mut Vec<libc::pollfd>) {
        let mut events = libc::POLLIN;
        if !self.outbuf.is_empty() {
            events |= libc::POLLOUT;
        }
        fds.push(sys::pollfd(self.stream.as_raw_fd(), events));
    }

    fn service(&mut self, emit: &mut dyn FnMut(Source, &str)) -> bool {
        self.flush();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.lost = self.exit.is_none();
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.lost = self.exit.is_none();
                    break;
                }
            }
        }
        let mut start = 0;
        while let Some(nl) = self.inbuf[start..].iter().position(|b| *b == b'\n') {
            let line = &self.inbuf[start..start + nl];
            start += nl + 1;
            match serde_json::from_slice::<Event>(line) {
                Ok(Event::Line { seq, source, line }) => {
                    self.last_seq = seq;
                    let source = match source.as_str() {
                        "stderr" => Source::Stderr,
                        "host" => Source::Host,
                        _ => Source::Stdout,
                    };
                    emit(source, &line);
                }
                Ok(Event::Gap { missed }) => emit(
                    Source::Host,
                    &format!("[manman] {missed} lines were missed while the agent was away"),
                ),
                Ok(Event::Exit { code, signal, .. }) => self.exit = Some(ExitInfo { code, signal }),
                Ok(Event::Hello { .. }) => {}
                Err(e) => log::warn!(pid = self.pid; "unreadable message from the keeper: {e}"),
            }
        }
        self.inbuf.drain(..start);
        self.exit.is_some() || self.lost
    }

    fn queue_input(&mut self, bytes: &[u8]) -> bool {
        if self.lost || self.exit.is_some() {
            return false;
        }
        self.input_pending += bytes.len();
        self.send(&Request::Input {
            data: String::from_utf8_lossy(bytes).into_owned(),
        });
        true
    }

    fn pending_input(&self) -> usize {
        self.input_pending
    }

    fn has_stdin(&self) -> bool {
        !self.lost && self.exit.is_none()
    }

    fn signal_group(&mut self, signal: i32) {
        if self.lost {
            self.signal_directly(signal);
        } else {
            self.send(&Request::Signal { signal });
        }
    }

    fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn failure(&self) -> Option<String> {
        self.lost
            .then(|| "its keeper died; the game was ended with it".to_string())
    }

    fn finish(mut self: Box<Self>, emit: &mut dyn FnMut(Source, &str)) -> ExitInfo {
        let exit = match self.exit {
            Some(exit) => {
                self.send(&Request::Release);
                // The keeper closes the connection as it leaves: wait (briefly) for that, so
                // its directory is not removed under it.
                let _ = self.stream.set_nonblocking(false);
                let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut rest = [0u8; 4096];
                while matches!(self.stream.read(&mut rest), Ok(n) if n > 0) {}
                exit
            }
            None => {
                // The keeper died: its game gets SIGKILL from the kernel (PDEATHSIG); its
                // group's leftovers get it from us.
                self.signal_directly(libc::SIGKILL);
                emit(
                    Source::Host,
                    "[manman] the session's keeper process died; its game was ended",
                );
                ExitInfo {
                    code: None,
                    signal: None,
                }
            }
        };
        let _ = std::fs::remove_dir_all(&self.dir.0);
        exit
    }
}

/// A game that ended while nobody was attached and whose keeper has since left: only its
/// exit, from `exit.json`, remains.
struct ExitedChild {
    dir: KeeperDir,
    pid: u32,
    exit: ExitInfo,
}

impl ExitedChild {
    fn read(dir: KeeperDir, pid: u32) -> Option<ExitedChild> {
        let raw = std::fs::read(dir.exit()).ok()?;
        match serde_json::from_slice::<Event>(raw.trim_ascii_end()).ok()? {
            Event::Exit { code, signal, .. } => Some(ExitedChild {
                dir,
                pid,
                exit: ExitInfo { code, signal },
            }),
            _ => None,
        }
    }
}

impl ChildIo for ExitedChild {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn start_time(&self) -> Option<u64> {
        None
    }

    fn wait_fds(&self, _fds: &mut Vec<libc::pollfd>) {}

    fn service(&mut self, _emit: &mut dyn FnMut(Source, &str)) -> bool {
        true
    }

    fn queue_input(&mut self, _bytes: &[u8]) -> bool {
        false
    }

    fn pending_input(&self) -> usize {
        0
    }

    fn has_stdin(&self) -> bool {
        false
    }

    fn signal_group(&mut self, _signal: i32) {}

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(Source, &str)) -> ExitInfo {
        let _ = std::fs::remove_dir_all(&self.dir.0);
        self.exit
    }
}

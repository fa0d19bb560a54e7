//! [`LocalChild`]: a process that is our own child (pidfd, pipes): the one place that knows
//! how to start a process and confine it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{self, pollfd};
use crate::{ChildIo, ExitInfo, Launch, LineSplitter, Source, PASSED_THROUGH_ENV};
use manman_cgroup::{Cgroup, JoinFds};

/// How long to keep reading a dead process's pipes for its last words.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// Whether `fd` is readable now (or hung up).
pub fn ready_now(fd: i32) -> bool {
    let mut fds = [pollfd(fd, libc::POLLIN)];
    let _ = sys::poll(&mut fds, Some(Duration::ZERO));
    fds[0].revents != 0
}

/// Sets what the child must do between `fork` and `exec`. Only called when there is
/// something to do: any `pre_exec` hook makes std fork the whole parent instead of using
/// `posix_spawn` (see [`Launch::needs_pre_exec`]). The order matters: the cgroup is joined
/// while we still have our own user (the game's may not write to it), then the user is
/// switched, then the parent-death signal is set (a change of user clears it).
fn confine(cmd: &mut Command, spec: &Launch, die_with_parent: bool, join: Option<&JoinFds>) {
    let no_new_privs = spec.no_new_privs;
    let run_as = spec.run_as;
    let join: Vec<i32> = join.map(JoinFds::raw).unwrap_or_default();
    let limits = [
        (libc::RLIMIT_NOFILE, spec.max_open_files),
        (libc::RLIMIT_NPROC, spec.max_processes),
    ];
    // SAFETY: write, setgroups, setgid, setuid, prctl and setrlimit are async-signal-safe
    // system calls on values computed before the fork; nothing else runs between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            JoinFds::join_in_child(&join)?;
            if let Some(who) = run_as {
                // As std's `Command::uid` would: no supplementary groups, then gid, then uid.
                if libc::getuid() == 0 && libc::setgroups(0, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setgid(who.gid) != 0 || libc::setuid(who.uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A game never gains privileges (setuid binaries, file capabilities) and gets
            // none of ours: an agent granted CAP_SETUID to switch users keeps it to itself.
            if no_new_privs {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
            }
            for (resource, value) in limits {
                if let Some(n) = value {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        });
    }
}

/// A process that is our own child.
pub struct LocalChild {
    child: Child,
    pidfd: OwnedFd,
    start_time: Option<u64>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    stdin: Option<ChildStdin>,
    out_lines: LineSplitter,
    err_lines: LineSplitter,
    pending_input: Vec<u8>,
    /// The cgroup it was started in: killed whole with it.
    cgroup: Option<Cgroup>,
}

impl LocalChild {
    /// Spawns `spec`'s program in its own process group (so signals reach the whole tree),
    /// with `global_env` then the spec's env added to ours, and piped stdio.
    pub fn spawn(spec: &Launch, global_env: &[(String, String)]) -> std::io::Result<LocalChild> {
        Self::spawn_inner(spec, global_env, false)
    }

    /// As [`LocalChild::spawn`], and the process is SIGKILLed if we die (a keeper killed
    /// with -9 takes its game with it instead of leaving it unsupervised).
    pub fn spawn_bound_to_us(
        spec: &Launch,
        global_env: &[(String, String)],
    ) -> std::io::Result<LocalChild> {
        Self::spawn_inner(spec, global_env, true)
    }

    fn spawn_inner(
        spec: &Launch,
        global_env: &[(String, String)],
        die_with_parent: bool,
    ) -> std::io::Result<LocalChild> {
        let mut cmd = Command::new(&spec.program);
        if !spec.inherit_env {
            cmd.env_clear().envs(
                PASSED_THROUGH_ENV
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            );
        }
        cmd.args(&spec.args)
            .envs(global_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        let join = match &spec.cgroup {
            Some(group) => Some(group.join_fds()?),
            None => None,
        };
        if die_with_parent || spec.needs_pre_exec() {
            confine(&mut cmd, spec, die_with_parent, join.as_ref());
        }
        let mut child = cmd.spawn()?;
        drop(join);
        let pid = child.id();
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                sys::signal_group(pid, libc::SIGKILL);
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "cannot watch the process: {e}"
                )));
            }
        };
        let (stdout, stderr, stdin) =
            (child.stdout.take(), child.stderr.take(), child.stdin.take());
        for fd in [
            stdout.as_ref().map(|p| p.as_raw_fd()),
            stderr.as_ref().map(|p| p.as_raw_fd()),
            stdin.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = sys::set_nonblocking(fd);
        }
        Ok(LocalChild {
            start_time: sys::process_start_time(pid),
            child,
            pidfd,
            stdout,
            stderr,
            stdin,
            out_lines: LineSplitter::default(),
            err_lines: LineSplitter::default(),
            pending_input: Vec::new(),
            cgroup: spec.cgroup.clone(),
        })
    }

    fn read_output(&mut self, emit: &mut dyn FnMut(Source, &str)) {
        read_stream(&mut self.stdout, &mut self.out_lines, &mut |l| {
            emit(Source::Stdout, l)
        });
        read_stream(&mut self.stderr, &mut self.err_lines, &mut |l| {
            emit(Source::Stderr, l)
        });
    }

    fn write_input(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else {
            self.pending_input.clear();
            return;
        };
        if let Err(e) = sys::write_pending(stdin, &mut self.pending_input) {
            log::warn!(pid = self.child.id(); "stdin closed: {e}");
            self.stdin = None;
            self.pending_input.clear();
        }
    }
}

impl ChildIo for LocalChild {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    fn wait_fds(&self, fds: &mut Vec<libc::pollfd>) {
        fds.push(pollfd(self.pidfd.as_raw_fd(), libc::POLLIN));
        if let Some(p) = &self.stdout {
            fds.push(pollfd(p.as_raw_fd(), libc::POLLIN));
        }
        if let Some(p) = &self.stderr {
            fds.push(pollfd(p.as_raw_fd(), libc::POLLIN));
        }
        if let (Some(p), false) = (&self.stdin, self.pending_input.is_empty()) {
            fds.push(pollfd(p.as_raw_fd(), libc::POLLOUT));
        }
    }

    fn service(&mut self, emit: &mut dyn FnMut(Source, &str)) -> bool {
        self.read_output(emit);
        self.write_input();
        ready_now(self.pidfd.as_raw_fd())
    }

    fn queue_input(&mut self, bytes: &[u8]) -> bool {
        if self.stdin.is_none() {
            return false;
        }
        self.pending_input.extend_from_slice(bytes);
        true
    }

    fn pending_input(&self) -> usize {
        self.pending_input.len()
    }

    fn has_stdin(&self) -> bool {
        self.stdin.is_some()
    }

    fn signal_group(&mut self, signal: i32) {
        sys::signal_group(self.child.id(), signal);
        if signal == libc::SIGKILL {
            // Whatever left the process group (a double fork) is still in the cgroup.
            if let Some(group) = &self.cgroup {
                group.kill_all();
            }
        }
    }

    fn finish(mut self: Box<Self>, emit: &mut dyn FnMut(Source, &str)) -> ExitInfo {
        // The leader has exited (a zombie until reaped, so its group id cannot be reused yet):
        // end whatever else is left in its group and its cgroup, then reap it.
        sys::signal_group(self.child.id(), libc::SIGKILL);
        if let Some(group) = self.cgroup.as_ref().filter(|g| !g.is_empty()) {
            group.kill_all();
        }
        let status = self.child.wait();
        // Read until both pipes close (or briefly, if something escaped the group and holds
        // them open), then flush partial lines.
        let until = Instant::now() + DRAIN_AFTER_EXIT;
        while self.stdout.is_some() || self.stderr.is_some() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds: Vec<libc::pollfd> = [
                self.stdout.as_ref().map(|p| p.as_raw_fd()),
                self.stderr.as_ref().map(|p| p.as_raw_fd()),
            ]
            .into_iter()
            .flatten()
            .map(|fd| pollfd(fd, libc::POLLIN))
            .collect();
            let _ = sys::poll(&mut fds, Some(left));
            self.read_output(emit);
        }
        self.out_lines.finish(&mut |l| emit(Source::Stdout, l));
        self.err_lines.finish(&mut |l| emit(Source::Stderr, l));
        match status {
            Ok(s) => ExitInfo {
                code: s.code(),
                signal: s.signal(),
            },
            Err(_) => ExitInfo {
                code: None,
                signal: None,
            },
        }
    }
}

fn read_stream<R: Read>(
    stream: &mut Option<R>,
    lines: &mut LineSplitter,
    emit: &mut dyn FnMut(&str),
) {
    let Some(reader) = stream.as_mut() else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                *stream = None;
                return;
            }
            Ok(n) => lines.feed(&buf[..n], emit),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                *stream = None;
                return;
            }
        }
    }
}

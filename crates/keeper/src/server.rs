//! The keeper process (`manman-keeper <dir>`): holds one game for the agent, the way conmon
//! holds a container. It detaches (setsid, then a second fork so the agent never has to reap
//! it), becomes a child subreaper (the game's orphaned descendants come back to it), starts
//! the game with the process manager's own child code, keeps its exit status (also written
//! atomically to `exit.json`) until the agent releases it, and keeps the latest output lines
//! for an agent that comes back. One thread, one `poll(2)`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use manman_child::{sys, ChildIo, ExitInfo, LocalChild, Source, MAX_PENDING_INPUT};

use crate::buffer::OutputBuffer;
use crate::protocol::{encode, Event, KeeperDir, KeeperSpec, Request};

/// An agent that reads slower than the game writes gets lines from the buffer as it catches
/// up; at most this much is queued on its socket at once.
const CLIENT_QUEUE: usize = 256 * 1024;
/// With the game gone and no agent to tell, the keeper waits this long, then leaves (the
/// exit stays in `exit.json`).
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(600);

/// The longest request line the agent sends (console input of at most MAX_PENDING_INPUT,
/// JSON-escaped).
const MAX_REQUEST_BYTES: usize = 8 * MAX_PENDING_INPUT + 1024;

/// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// The next line it needs.
    next: u64,
    exit_sent: bool,
}

struct Keeper {
    dir: KeeperDir,
    listener: UnixListener,
    buffer: OutputBuffer,
    child: Option<Box<LocalChild>>,
    exit: Option<Event>,
    exited_at: Option<Instant>,
    client: Option<Client>,
    released: bool,
}

/// The keeper's `main` after argument parsing: detach, start the game, serve. Writes
/// `ready PID` (or `error REASON`) on stdout for the agent that launched it.
pub fn run(dir: &Path) -> i32 {
    // The game's user must not read our memory or descriptors (the agent's socket, its spec).
    sys::forbid_inspection();
    // SAFETY: single-threaded at this point; fork and setsid have no preconditions beyond
    // that. The parent exits at once (the agent reaps it); the child, no group leader, can
    // start its own session, away from the agent's process group and terminal.
    unsafe {
        match libc::fork() {
            -1 => {
                println!("error cannot fork: {}", std::io::Error::last_os_error());
                return 1;
            }
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        // Orphaned descendants of the game are reparented to us, not to init.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let dir = KeeperDir(dir.to_path_buf());
    let mut keeper = match Keeper::start(dir) {
        Ok(k) => k,
        Err(e) => {
            println!("error {e}");
            return 1;
        }
    };
    let pid = keeper.child.as_ref().map(|c| c.pid()).unwrap_or(0);
    println!("ready {pid}");
    let _ = std::io::stdout().flush();
    // The agent reads our stdout until EOF: close it.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own stdout descriptor.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    log::info!(pid = pid; "keeping the game");
    keeper.serve();
    0
}

impl Keeper {
    fn start(dir: KeeperDir) -> Result<Keeper, String> {
        let raw = std::fs::read(dir.spec())
            .map_err(|e| format!("cannot read {}: {e}", dir.spec().display()))?;
        let spec: KeeperSpec =
            serde_json::from_slice(&raw).map_err(|e| format!("bad spec.json: {e}"))?;
        // Listening before the game starts: once the agent reads `ready`, it can attach.
        let socket = dir.socket();
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", socket.display()))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let child = LocalChild::spawn_bound_to_us(&spec.spec, &spec.env)
            .map_err(|e| format!("cannot start {}: {e}", spec.spec.program))?;
        Ok(Keeper {
            dir,
            listener,
            buffer: OutputBuffer::default(),
            child: Some(Box::new(child)),
            exit: None,
            exited_at: None,
            client: None,
            released: false,
        })
    }

    fn serve(&mut self) {
        while !self.released {
            self.accept();
            self.read_client();
            if self.released {
                // The agent has the exit and waits for us to go: go now, not after a poll.
                break;
            }
            self.service_child();
            self.feed_client();
            self.write_client();
            if self
                .exited_at
                .is_some_and(|t| t.elapsed() > LINGER_AFTER_EXIT)
                && self.client.is_none()
            {
                log::warn!(
                    "the game ended and no agent came for its exit; leaving it in exit.json"
                );
                break;
            }
            let mut fds = vec![sys::pollfd(self.listener.as_raw_fd(), libc::POLLIN)];
            if let Some(c) = &self.client {
                let mut events = libc::POLLIN;
                if !c.outbuf.is_empty() {
                    events |= libc::POLLOUT;
                }
                fds.push(sys::pollfd(c.stream.as_raw_fd(), events));
            }
            if let Some(child) = &self.child {
                child.wait_fds(&mut fds);
            }
            let timeout = self.exit.as_ref().map(|_| Duration::from_secs(5));
            let _ = sys::poll(&mut fds, timeout);
        }
        let _ = std::fs::remove_file(self.dir.socket());
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // Only the agent (our own user) may drive the game; the socket's 0600 mode and
            // 0700 directory say the same, this holds even if they were changed.
            match peer_uid(&stream) {
                Ok(uid) if uid == unsafe { libc::geteuid() } => {}
                Ok(uid) => {
                    log::warn!(uid = uid; "refused a connection from another user");
                    continue;
                }
                Err(e) => {
                    log::warn!("refused a connection whose peer is unknown: {e}");
                    continue;
                }
            }
            let _ = stream.set_nonblocking(true);
            // One agent at a time: a new one replaces the old (which is gone or restarting).
            self.client = Some(Client {
                stream,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                next: u64::MAX,
                exit_sent: false,
            });
        }
    }

    fn read_client(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut closed = false;
        loop {
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    client.inbuf.extend_from_slice(&buf[..n]);
                    // A request is one short line (input is at most MAX_PENDING_INPUT): a
                    // client that sends more without a newline is not the agent.
                    if client.inbuf.len() > MAX_REQUEST_BYTES {
                        log::warn!("dropping a client whose request has no end");
                        closed = true;
                        client.inbuf.clear();
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut requests = Vec::new();
        while let Some(nl) = client.inbuf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = client.inbuf.drain(..=nl).collect();
            match serde_json::from_slice::<Request>(&line) {
                Ok(r) => requests.push(r),
                Err(e) => log::warn!("ignoring a malformed request: {e}"),
            }
        }
        for r in requests {
            self.handle(r);
        }
        if closed {
            self.client = None;
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Attach { after } => {
                let pid = self.child.as_ref().map(|c| c.pid()).unwrap_or(0);
                let start_time = self.child.as_ref().and_then(|c| c.start_time());
                if let Some(c) = self.client.as_mut() {
                    c.outbuf = encode(&Event::Hello { pid, start_time });
                    c.next = after + 1;
                    c.exit_sent = false;
                }
            }
            Request::Input { data } => match self.child.as_mut() {
                Some(child) if child.pending_input() + data.len() <= MAX_PENDING_INPUT => {
                    child.queue_input(data.as_bytes());
                }
                Some(_) => log::warn!("console input dropped: the game is not reading it"),
                None => {}
            },
            Request::Signal { signal } => {
                if let Some(child) = self.child.as_mut() {
                    child.signal_group(signal);
                }
            }
            Request::Release => {
                if self.exit.is_some() {
                    let _ = std::fs::remove_file(self.dir.exit());
                    self.released = true;
                }
            }
        }
    }

    fn service_child(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let buffer = &mut self.buffer;
        let mut emit = |source: Source, line: &str| {
            buffer.push(source, line);
        };
        if !child.service(&mut emit) {
            return;
        }
        let child = self.child.take().expect("checked above");
        let ExitInfo { code, signal } = child.finish(&mut emit);
        let exit = Event::Exit {
            code,
            signal,
            at_ms: now_ms(),
        };
        log::info!(code = code, signal = signal; "the game ended");
        write_atomically(&self.dir.exit(), &encode(&exit));
        self.exit = Some(exit);
        self.exited_at = Some(Instant::now());
    }

    /// Lines the client has not had yet, from the buffer, as far as its queue allows; then
    /// the exit once every line before it was queued.
    fn feed_client(&mut self) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if c.next == u64::MAX {
            return; // not attached yet
        }
        while c.outbuf.len() < CLIENT_QUEUE {
            let (missed, entry) = self.buffer.read_from(c.next);
            if missed > 0 {
                c.outbuf.extend(encode(&Event::Gap { missed }));
                c.next += missed;
            }
            let Some(entry) = entry else { break };
            c.outbuf.extend(encode(&Event::Line {
                seq: entry.seq,
                source: entry.source.as_str().to_string(),
                line: entry.line.clone(),
            }));
            c.next = entry.seq + 1;
        }
        if let (Some(exit), false) = (&self.exit, c.exit_sent) {
            if c.next > self.buffer.last_seq() && c.outbuf.len() < CLIENT_QUEUE {
                c.outbuf.extend(encode(exit));
                c.exit_sent = true;
            }
        }
    }

    fn write_client(&mut self) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if sys::write_pending(&mut c.stream, &mut c.outbuf).is_err() {
            self.client = None;
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes a file so that a reader sees the old content or the new, never half.
fn write_atomically(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(content)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        log::error!("cannot write {}: {e}", path.display());
    }
}

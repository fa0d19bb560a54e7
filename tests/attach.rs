//! `manman session attach` driven through a pseudo-terminal, as an operator's terminal drives
//! it: the console shows up, typed lines reach the game, a restarted log processor is resumed
//! without repeating a line, and `Ctrl-]` detaches with exit 0. Without a terminal it is line
//! by line.

mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use manman::testkit::{free_port, wait_for, KillOnDrop};
use support::stack::{Stack, T};

/// A pseudo-terminal pair: (controller, the terminal the child gets), 40 rows × 120 columns.
fn open_pty() -> (std::fs::File, OwnedFd) {
    let (mut controller, mut terminal) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty(3) fills two descriptors we then own.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

fn attach_command(s: &Stack, session: i64) -> Command {
    let mut cmd = s.cli_command(&["session", "attach", &session.to_string()]);
    cmd.env("TERM", "xterm");
    cmd
}

/// Everything the terminal has shown so far, escape sequences and all.
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn record(mut controller: std::fs::File) -> Screen {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child and every copy of its terminal are gone.
            while let Ok(n) = controller.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Screen(seen)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits for `what` on the terminal; on a timeout the panic shows what the terminal has.
    fn wait_for(&self, what: &str) {
        let start = std::time::Instant::now();
        while !self.text().contains(what) {
            assert!(
                start.elapsed() < T,
                "{what:?} not on the terminal within {T:?}; it shows:\n{}",
                self.text().escape_debug()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn attach_shows_the_console_takes_typed_lines_survives_a_log_processor_restart_and_detaches() {
    let mut s = Stack::start();
    let sgc = s.deploy_test_game("attach", free_port());
    let session = s.start_session(sgc);
    s.wait_status(session, "running");

    let (controller, terminal) = open_pty();
    let mut typing = controller.try_clone().unwrap();
    let mut child = attach_command(&s, session)
        .stdin(Stdio::from(terminal.try_clone().unwrap()))
        .stdout(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::from(terminal))
        .spawn()
        .unwrap();
    let screen = Screen::record(controller);

    // The recent lines first, stderr marked, and the status line.
    screen.wait_for("test-game starting");
    screen.wait_for("this line goes to stderr");
    assert!(screen.text().contains("err "), "stderr is marked");
    screen.wait_for(&format!("session {session}  running"));
    screen.wait_for("Ctrl-] detach");

    // A typed line (Enter is a carriage return on a terminal) reaches the game's stdin.
    typing.write_all(b"say one\r").unwrap();
    screen.wait_for("echo: say one");

    // The log processor restarts: the view says so, resumes, and repeats nothing.
    s.restart_log_processor();
    screen.wait_for("console stream interrupted");
    typing.write_all(b"say two\r").unwrap();
    screen.wait_for("echo: say two");
    let shown = screen.text();
    assert_eq!(shown.matches("echo: say one").count(), 1, "{shown}");
    assert_eq!(shown.matches("test-game starting").count(), 1, "{shown}");

    // History: Up recalls the last line sent.
    typing.write_all(b"\x1b[A\r").unwrap();
    wait_for("the recalled line echoed twice", T, || {
        (screen.text().matches("echo: say two").count() == 2).then_some(())
    });

    // A line longer than the terminal is wide (120 columns) scrolls sideways and is sent whole.
    let long = format!("say {}", "x".repeat(150));
    typing.write_all(format!("{long}\r").as_bytes()).unwrap();
    screen.wait_for(&format!("echo: {long}"));

    // Ctrl-] detaches; the session keeps running.
    typing.write_all(&[0x1d]).unwrap();
    let status = wait_for("attach to exit", T, || child.try_wait().unwrap());
    assert!(status.success(), "{status:?}\n{}", screen.text());
    screen.wait_for("detached from session");
    assert_eq!(s.status(session).0, "running");
}

#[test]
fn without_a_terminal_attach_is_line_by_line_and_ends_with_the_session() {
    let s = Stack::start();
    let sgc = s.deploy_test_game("attach-plain", free_port());
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let mut child = attach_command(&s, session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut guard = KillOnDrop(child);
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut until = |want: &str| {
        wait_for(&format!("a line with {want:?}"), T, || {
            while let Ok(line) = rx.try_recv() {
                lines.push(line);
            }
            lines.iter().any(|l| l.contains(want)).then_some(())
        });
        lines.clone()
    };
    let seen = until("this line goes to stderr");
    let stderr_line = seen.iter().find(|l| l.contains("goes to stderr")).unwrap();
    assert!(stderr_line.contains(" err "), "{stderr_line}");
    assert!(
        !seen.iter().any(|l| l.contains('\u{1b}')),
        "no escape sequences in plain mode: {seen:?}"
    );
    // A line on stdin is sent; `stop` ends the game, and with it the command (exit 0).
    stdin.write_all(b"say plain\n").unwrap();
    until("echo: say plain");
    stdin.write_all(b"stop\n").unwrap();
    let status = wait_for("attach to end with the session", T, || {
        guard.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
}

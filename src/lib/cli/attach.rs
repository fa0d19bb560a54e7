//! `manman session attach`: one view of a session's console to watch and type into, as
//! `docker attach` or a telnet session: the buffered lines then the live ones, an input line at
//! the bottom (history on the arrow keys), a status line (state, players, CPU, memory), and
//! `Ctrl-]` to detach. The console stream resumes after a blip without repeating a line. When
//! stdin or stdout is not a terminal it is line by line: lines out, each stdin line sent.
//!
//! Threads: one follows the console (`logs::follow_console`), one polls the session's state
//! every 2 s, one reads stdin; the main thread owns the terminal and sends input.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, style, terminal};

use super::logs::{escape_controls, follow_console, ConsoleEvent, Followed};
use super::shared::{Ctx, Exit, Failure, Outcome};
use crate::grpc::Endpoint;
use crate::proto::v1 as pb;

/// What the helper threads tell the main one.
enum Update {
    Line(pb::LogMessage),
    Notice(String),
    Status(String),
    /// The console stream is over: the session ended, or it failed for good.
    Over(Result<Followed, Failure>),
    /// A line typed on a non-terminal stdin.
    StdinLine(String),
}

pub fn attach(ctx: &Ctx, log_processor: &Endpoint, session_id: i64) -> Outcome {
    // The session must exist (and the token be valid) before the screen changes.
    let first = status_line(ctx, session_id)?;
    let (tx, rx) = unbounded();
    // Detached threads with their own clients: a quiet console or a slow status call must not
    // hold a detach up (the process exits with the main thread).
    let console = (ctx.clone(), log_processor.clone(), tx.clone());
    std::thread::spawn(move || {
        let (ctx, endpoint, tx) = console;
        let result = follow_console(&ctx, &endpoint, session_id, true, &mut |event| {
            let update = match event {
                ConsoleEvent::Line(m) => Update::Line(m.clone()),
                ConsoleEvent::Interrupted { why, retry_in } => Update::Notice(format!(
                    "console stream interrupted ({why}); resuming in {retry_in:?}"
                )),
            };
            tx.send(update).map_err(|_| Ok(()))
        });
        let _ = tx.send(Update::Over(result));
    });
    let status = (ctx.clone(), tx.clone());
    std::thread::spawn(move || {
        let (ctx, tx) = status;
        loop {
            std::thread::sleep(Duration::from_secs(2));
            if let Ok(line) = status_line(&ctx, session_id) {
                if tx.send(Update::Status(line)).is_err() {
                    return;
                }
            }
        }
    });
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        Terminal::run(ctx, session_id, first, &rx)
    } else {
        std::thread::spawn(move || read_stdin_lines(tx));
        plain(ctx, session_id, &rx)
    }
}

/// The status line's text: state, players, CPU and memory when known.
fn status_line(ctx: &Ctx, session_id: i64) -> Result<String, Failure> {
    let r = ctx.client.get_session_opt(
        &pb::GetSessionRequest { session_id },
        ctx.opt_for(Duration::from_secs(5)),
    )?;
    let s = r.session.unwrap_or_default();
    let mut line = format!("session {session_id}  {}", s.status);
    if s.players_online.is_some() {
        line.push_str(&format!("  players {}", super::sessions::players_text(&s)));
    }
    if s.sampled_at_ms > 0 {
        line.push_str(&format!(
            "  cpu {:.1}%  memory {:.0} MiB",
            s.cpu_percent,
            s.rss_bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    Ok(line)
}

fn send_input(ctx: &Ctx, session_id: i64, input: &str) -> Result<(), Failure> {
    ctx.client.send_input_opt(
        &pb::SendInputRequest {
            session_id,
            input: input.into(),
        },
        ctx.opt_for(Duration::from_secs(10)),
    )?;
    Ok(())
}

fn read_stdin_lines(tx: Sender<Update>) {
    use std::io::BufRead as _;
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if tx.send(Update::StdinLine(line)).is_err() {
            return;
        }
    }
}

/// How a console line is marked: stdout plain, stderr and the host's own lines tagged.
fn tag(source: &str) -> &'static str {
    match source {
        "stderr" => "err ",
        "host" => "host",
        "gap" => "gap ",
        _ => "    ",
    }
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Line by line, for pipes and scripts: `HH:MM:SS tag message`, notices on stderr.
fn plain(ctx: &Ctx, session_id: i64, rx: &Receiver<Update>) -> Outcome {
    let mut out = std::io::stdout();
    for update in rx {
        match update {
            Update::Line(m) => {
                let text = format!(
                    "{} {} {}\n",
                    clock(m.timestamp),
                    tag(&m.source),
                    escape_controls(&m.message)
                );
                if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    return match e.kind() {
                        std::io::ErrorKind::BrokenPipe => Ok(()),
                        _ => Err(Failure::new(Exit::IoError, format!("stdout: {e}"))),
                    };
                }
            }
            Update::Notice(n) => eprintln!("-- {n} --"),
            Update::Status(_) => {}
            Update::StdinLine(line) => send_input(ctx, session_id, &line)?,
            Update::Over(result) => return over(session_id, result, &mut std::io::stderr()),
        }
    }
    Ok(())
}

fn over(session_id: i64, result: Result<Followed, Failure>, out: &mut dyn Write) -> Outcome {
    let _ = result?;
    let _ = write!(out, "-- session {session_id} ended --\r\n");
    Ok(())
}

/// The interactive view: console lines scroll above a status line and an input line.
struct Terminal {
    out: std::io::Stdout,
    status: String,
    input: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down are in `history` (`history.len()`: the line being typed).
    recalled: usize,
}

/// Raw mode for as long as it lives, whatever happens (an error, a panic).
struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode, Failure> {
        terminal::enable_raw_mode()
            .map_err(|e| Failure::new(Exit::IoError, format!("the terminal: {e}")))?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
    }
}

/// `Ctrl-]`, as telnet and `docker attach` detach (some terminals report it as `Ctrl-5`).
fn is_detach(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL)
        && matches!(key.code, KeyCode::Char(']') | KeyCode::Char('5'))
}

impl Terminal {
    fn run(ctx: &Ctx, session_id: i64, status: String, rx: &Receiver<Update>) -> Outcome {
        let _raw = RawMode::enable()?;
        let mut t = Terminal {
            out: std::io::stdout(),
            status,
            input: Vec::new(),
            cursor: 0,
            history: Vec::new(),
            recalled: 0,
        };
        t.draw_bottom(true);
        let result = t.event_loop(ctx, session_id, rx);
        let _ = queue!(t.out, cursor::MoveToColumn(0), style::Print("\r\n"));
        let _ = t.out.flush();
        result
    }

    fn event_loop(&mut self, ctx: &Ctx, session_id: i64, rx: &Receiver<Update>) -> Outcome {
        loop {
            while let Ok(update) = rx.try_recv() {
                match update {
                    Update::Line(m) => self.print_line(
                        &clock(m.timestamp),
                        tag(&m.source),
                        &escape_controls(&m.message),
                    ),
                    Update::Notice(n) => self.print_line("", "--", &n),
                    Update::Status(s) => {
                        self.status = s;
                        self.draw_bottom(false);
                    }
                    Update::StdinLine(_) => {}
                    Update::Over(result) => {
                        self.clear_bottom();
                        return over(session_id, result, &mut self.out);
                    }
                }
            }
            let _ = self.out.flush();
            let ready = event::poll(Duration::from_millis(50))
                .map_err(|e| Failure::new(Exit::IoError, format!("the terminal: {e}")))?;
            if !ready {
                continue;
            }
            let key = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => key,
                Ok(TermEvent::Resize(..)) => {
                    self.draw_bottom(false);
                    continue;
                }
                Ok(_) => continue,
                Err(e) => return Err(Failure::new(Exit::IoError, format!("the terminal: {e}"))),
            };
            if is_detach(&key)
                || (key.code == KeyCode::Char('d')
                    && key.modifiers.contains(KeyModifiers::CONTROL)
                    && self.input.is_empty())
            {
                self.clear_bottom();
                let _ = write!(
                    self.out,
                    "-- detached from session {session_id} (it keeps running) --"
                );
                return Ok(());
            }
            self.edit(ctx, session_id, key);
        }
    }

    /// One key on the input line.
    fn edit(&mut self, ctx: &Ctx, session_id: i64, key: KeyEvent) {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => {
                let line: String = self.input.iter().collect();
                self.input.clear();
                self.cursor = 0;
                if !line.is_empty() {
                    match send_input(ctx, session_id, &line) {
                        Ok(()) => self.print_line("", "you ", &escape_controls(&line)),
                        Err(f) => self.print_line("", "--", &format!("not sent: {}", f.message)),
                    }
                    if self.history.last() != Some(&line) {
                        self.history.push(line);
                    }
                }
                self.recalled = self.history.len();
            }
            KeyCode::Char('c') if control => {
                if self.input.is_empty() {
                    self.print_line("", "--", "Ctrl-] detaches");
                }
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Char('u') if control => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char(c) if !control => {
                self.input.insert(self.cursor, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Up if self.recalled > 0 => {
                self.recalled -= 1;
                self.recall();
            }
            KeyCode::Down if self.recalled < self.history.len() => {
                self.recalled += 1;
                self.recall();
            }
            _ => return,
        }
        self.draw_bottom(false);
    }

    fn recall(&mut self) {
        self.input = self
            .history
            .get(self.recalled)
            .map(|l| l.chars().collect())
            .unwrap_or_default();
        self.cursor = self.input.len();
    }

    /// Prints a console line where the status line was; the status and input lines follow it
    /// (the terminal scrolls as a normal one would, so its scrollback keeps the console).
    fn print_line(&mut self, time: &str, tag: &str, text: &str) {
        self.clear_bottom();
        let colour = match tag {
            "err " => Some(style::Color::Red),
            "host" | "--" => Some(style::Color::Cyan),
            "you " => Some(style::Color::Green),
            _ => None,
        };
        let _ = queue!(self.out, style::Print(time), style::Print(" "));
        match colour {
            Some(c) => {
                let _ = queue!(
                    self.out,
                    style::SetForegroundColor(c),
                    style::Print(tag),
                    style::ResetColor
                );
            }
            None => {
                let _ = queue!(self.out, style::Print(tag));
            }
        }
        let _ = queue!(
            self.out,
            style::Print(" "),
            style::Print(text),
            style::Print("\r\n")
        );
        self.draw_bottom(true);
    }

    /// Moves to the status line's start and clears it and everything under it.
    fn clear_bottom(&mut self) {
        let _ = queue!(
            self.out,
            cursor::MoveToColumn(0),
            cursor::MoveUp(1),
            terminal::Clear(terminal::ClearType::FromCursorDown)
        );
    }

    /// Draws the status line and the input line; `fresh`: the cursor is at the start of an
    /// empty line where the status line goes (else both are redrawn in place).
    fn draw_bottom(&mut self, fresh: bool) {
        if !fresh {
            self.clear_bottom();
        }
        let width = terminal::size().map(|(w, _)| w as usize).unwrap_or(80);
        // Neither line may wrap: the redraw moves up exactly one line.
        let status: String = format!("{}   Ctrl-] detach", self.status)
            .chars()
            .take(width.saturating_sub(1))
            .collect();
        let (start, end) = visible_window(self.input.len(), self.cursor, width.saturating_sub(3));
        let input: String = self.input[start..end].iter().collect();
        let _ = queue!(
            self.out,
            style::SetAttribute(style::Attribute::Reverse),
            style::Print(&status),
            style::SetAttribute(style::Attribute::Reset),
            style::Print("\r\n"),
            style::Print("> "),
            style::Print(escape_controls(&input)),
            cursor::MoveToColumn((2 + self.cursor - start) as u16)
        );
        let _ = self.out.flush();
    }
}

/// The part of an input line of `len` characters shown in `room` columns: all of it when it
/// fits, else a window that keeps the cursor in view (the line scrolls sideways, as readline's
/// does, instead of wrapping).
fn visible_window(len: usize, cursor: usize, room: usize) -> (usize, usize) {
    let room = room.max(1);
    if len < room {
        return (0, len);
    }
    let start = (cursor + 1).saturating_sub(room);
    (start, (start + room).min(len))
}

#[cfg(test)]
mod tests {
    use super::visible_window;

    #[test]
    fn a_long_input_line_scrolls_sideways_keeping_the_cursor_in_view() {
        assert_eq!(visible_window(5, 5, 80), (0, 5));
        // 100 characters in 10 columns, cursor at the end: the last 9 and the cursor's cell.
        assert_eq!(visible_window(100, 100, 10), (91, 100));
        // The cursor moved back to the start: the window follows it.
        assert_eq!(visible_window(100, 0, 10), (0, 10));
        assert_eq!(visible_window(100, 50, 10), (41, 51));
        for cursor in 0..=100 {
            let (start, end) = visible_window(100, cursor, 10);
            assert!(
                start <= cursor && cursor - start < 10 && end - start <= 10,
                "{cursor}"
            );
        }
    }
}

//! Process output as lines: long lines cut, never lost; invalid UTF-8 kept lossily; each
//! tagged with the stream it came from.

use serde::{Deserialize, Serialize};

/// A line longer than this is delivered in pieces of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Stdout,
    Stderr,
    /// A marker line from the supervisor itself (lines lost while it was away, ...).
    Host,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
            Source::Host => "host",
        }
    }
}

/// Turns a byte stream into lines.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` for each complete line (without its `\n`, and `\r\n` → ``).
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(&str)) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&bytes[..nl]);
            if self.pending.last() == Some(&b'\r') {
                self.pending.pop();
            }
            self.emit_pending(emit);
            bytes = &bytes[nl + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE_BYTES {
            let rest = self.pending.split_off(MAX_LINE_BYTES);
            self.emit_pending(emit);
            self.pending = rest;
        }
    }

    /// Emits what is left (end of stream).
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            self.emit_pending(emit);
        }
    }

    fn emit_pending(&mut self, emit: &mut dyn FnMut(&str)) {
        emit(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l| out.push(l.to_string()));
        }
        s.finish(&mut |l| out.push(l.to_string()));
        out
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(
            split(&[b"he", b"llo\nwor", b"ld\r\n", b"tail"]),
            ["hello", "world", "tail"]
        );
        assert_eq!(split(&[b"\n\n"]), ["", ""]);
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let lines = split(&[&long, b"\n"]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.iter().map(|l| l.len()).sum::<usize>(), long.len());
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        assert_eq!(split(&[b"ok \xff\xfe end\n"]), ["ok \u{fffd}\u{fffd} end"]);
    }
}

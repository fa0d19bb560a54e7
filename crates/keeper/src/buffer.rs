//! The keeper's bounded buffer of the latest output lines, numbered from 1, so an agent that
//! comes back resumes after the last line it published (and learns how many it missed when
//! more than the buffer's bound went by).

use std::collections::VecDeque;

use manman_child::Source;

/// At most this many lines...
pub const MAX_LINES: usize = 4096;
/// ...and this many bytes of text are kept.
pub const MAX_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub source: Source,
    pub line: String,
}

#[derive(Debug, Default)]
pub struct OutputBuffer {
    entries: VecDeque<Entry>,
    bytes: usize,
    last_seq: u64,
}

impl OutputBuffer {
    pub fn push(&mut self, source: Source, line: &str) -> u64 {
        self.last_seq += 1;
        self.bytes += line.len();
        self.entries.push_back(Entry {
            seq: self.last_seq,
            source,
            line: line.to_string(),
        });
        while self.entries.len() > MAX_LINES || (self.bytes > MAX_BYTES && self.entries.len() > 1) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.line.len();
            }
        }
        self.last_seq
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Where a reader whose next wanted line is `next` can continue: the lines it missed
    /// (evicted before it came), and the entry to send next, if any.
    pub fn read_from(&self, next: u64) -> (u64, Option<&Entry>) {
        let Some(first) = self.entries.front() else {
            return (0, None);
        };
        if next < first.seq {
            return (first.seq - next, Some(first));
        }
        let index = (next - first.seq) as usize;
        (0, self.entries.get(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_and_resumes_after_a_sequence() {
        let mut b = OutputBuffer::default();
        for i in 0..5 {
            assert_eq!(b.push(Source::Stdout, &format!("l{i}")), i + 1);
        }
        assert_eq!(b.read_from(3).1.unwrap().line, "l2");
        assert_eq!(b.read_from(6), (0, None));
    }

    #[test]
    fn evicted_lines_are_counted_as_missed() {
        let mut b = OutputBuffer::default();
        for i in 0..(MAX_LINES + 10) {
            b.push(Source::Stderr, &format!("{i}"));
        }
        let (missed, next) = b.read_from(1);
        assert_eq!(missed, 10);
        assert_eq!(next.unwrap().seq, 11);
    }

    #[test]
    fn bytes_are_bounded_too() {
        let mut b = OutputBuffer::default();
        let big = "x".repeat(100 * 1024);
        for _ in 0..10 {
            b.push(Source::Stdout, &big);
        }
        assert!(b.bytes <= MAX_BYTES);
        assert_eq!(b.read_from(1).0, 5, "five of the ten fit in 512 KiB");
    }
}

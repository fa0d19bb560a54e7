//! The archive stream cut into upload parts: each full part goes to the uploader through a
//! bounded channel, so a slow upload makes the archive writer wait instead of piling parts up
//! in memory (memory is bounded by part size × (channel capacity + uploaders + 1)).

use std::io::{self, Write};

use crossbeam_channel::Sender;
use sha2::{Digest, Sha256};

/// One part of a multipart upload (numbered from 1, as S3 numbers them).
#[derive(Debug)]
pub struct Part {
    pub number: u32,
    pub bytes: Vec<u8>,
}

pub struct PartWriter {
    part_size: usize,
    buffer: Vec<u8>,
    next: u32,
    total: u64,
    hasher: Sha256,
    parts: Sender<Part>,
}

/// What was written: how many parts, how many bytes, and the SHA-256 of the whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub parts: u32,
    pub bytes: u64,
    pub sha256: String,
}

impl PartWriter {
    /// `part_size` at least 5 MiB for S3 (every part but the last).
    pub fn new(part_size: usize, parts: Sender<Part>) -> PartWriter {
        PartWriter {
            part_size,
            buffer: Vec::with_capacity(part_size),
            next: 1,
            total: 0,
            hasher: Sha256::new(),
            parts,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let bytes = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        let part = Part {
            number: self.next,
            bytes,
        };
        self.next += 1;
        self.parts
            .send(part)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload has stopped"))
    }

    /// Sends the last part (an empty stream still makes one part, as S3 needs at least one).
    pub fn finish(mut self) -> io::Result<Written> {
        if !self.buffer.is_empty() || self.next == 1 {
            self.send()?;
        }
        Ok(Written {
            parts: self.next - 1,
            bytes: self.total,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.total += n as u64;
        if self.buffer.len() == self.part_size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_full_but_the_last_and_numbered_from_one() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut w = PartWriter::new(10, tx);
        w.write_all(&[7u8; 25]).unwrap();
        let written = w.finish().unwrap();
        let parts: Vec<Part> = rx.try_iter().collect();
        assert_eq!(written.parts, 3);
        assert_eq!(written.bytes, 25);
        let sizes: Vec<(u32, usize)> = parts.iter().map(|p| (p.number, p.bytes.len())).collect();
        assert_eq!(sizes, vec![(1, 10), (2, 10), (3, 5)]);
        assert_eq!(written.sha256, hex::encode(Sha256::digest([7u8; 25])));
    }

    #[test]
    fn a_stopped_upload_stops_the_writer() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        drop(rx);
        let mut w = PartWriter::new(4, tx);
        assert_eq!(
            w.write_all(&[0; 8]).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}

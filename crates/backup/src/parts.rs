//! The archive stream cut into upload parts: each full part goes to the uploaders through a
//! bounded channel, so a slow upload makes the archive writer wait instead of piling parts up
//! in memory (memory is bounded by part size × (channel capacity + uploaders + 1)). The
//! uploaders hand each sent part's buffer back, so the same few buffers carry the whole stream,
//! and hash the parts in their order through one [`PartsDigest`] while they send them side by
//! side.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};

/// One part of a multipart upload (numbered from 1, as S3 numbers them).
#[derive(Debug)]
pub struct Part {
    pub number: u32,
    pub bytes: Vec<u8>,
}

/// Parts per size step: the first 1,000 parts have the base size, the next 1,000 twice it, and
/// so on, so that S3's 10,000 parts reach far beyond any world while memory stays that of the
/// base size for every archive up to 1,000 parts (8 GiB with 8 MiB parts).
pub const PARTS_PER_STEP: u32 = 1_000;

pub struct PartWriter {
    base_size: usize,
    part_size: usize,
    buffer: Vec<u8>,
    next: u32,
    total: u64,
    parts: Sender<Part>,
    /// Buffers of sent parts, back from the uploader.
    recycled: Option<Receiver<Vec<u8>>>,
}

/// What was written: how many parts and how many bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub parts: u32,
    pub bytes: u64,
}

impl PartWriter {
    /// `part_size` at least 5 MiB for S3 (every part but the last).
    pub fn new(part_size: usize, parts: Sender<Part>) -> PartWriter {
        PartWriter {
            base_size: part_size,
            part_size,
            buffer: Vec::with_capacity(part_size),
            next: 1,
            total: 0,
            parts,
            recycled: None,
        }
    }

    /// Takes the buffers of sent parts from `recycled` instead of allocating new ones.
    pub fn recycling(mut self, recycled: Receiver<Vec<u8>>) -> PartWriter {
        self.recycled = Some(recycled);
        self
    }

    fn fresh_buffer(&self) -> Vec<u8> {
        match self.recycled.as_ref().and_then(|r| r.try_recv().ok()) {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(self.part_size),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let fresh = self.fresh_buffer();
        let bytes = std::mem::replace(&mut self.buffer, fresh);
        let part = Part {
            number: self.next,
            bytes,
        };
        self.next += 1;
        self.part_size = self.base_size << ((self.next - 1) / PARTS_PER_STEP).min(10);
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
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
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

/// The archive's SHA-256 over parts that several uploaders take from one channel: each part is
/// added in its number's turn. A part is added as soon as it is taken (before anything that
/// can fail), so a turn never waits on an upload, only on another uploader's hashing.
pub struct PartsDigest {
    state: Mutex<(u32, Sha256)>,
    turn: Condvar,
}

impl Default for PartsDigest {
    fn default() -> Self {
        PartsDigest {
            state: Mutex::new((1, Sha256::new())),
            turn: Condvar::new(),
        }
    }
}

impl PartsDigest {
    /// Adds part `number` once every part before it is in.
    pub fn add(&self, part: &Part) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 != part.number {
            state = self.turn.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.1.update(&part.bytes);
        state.0 += 1;
        self.turn.notify_all();
    }

    /// The SHA-256 of every part added, in hex.
    pub fn finish(self) -> String {
        let (_, hasher) = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        hex::encode(hasher.finalize())
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
    #[test]
    fn parts_hashed_by_several_threads_give_the_stream_s_digest() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stream: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let digest = std::sync::Arc::new(PartsDigest::default());
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let (rx, digest) = (rx.clone(), digest.clone());
                std::thread::spawn(move || {
                    for part in rx {
                        digest.add(&part);
                    }
                })
            })
            .collect();
        let mut w = PartWriter::new(7, tx);
        w.write_all(&stream).unwrap();
        w.finish().unwrap();
        for t in takers {
            t.join().unwrap();
        }
        let digest = std::sync::Arc::into_inner(digest).unwrap().finish();
        assert_eq!(digest, hex::encode(Sha256::digest(&stream)));
    }

    #[test]
    fn parts_grow_every_thousand() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut w = PartWriter::new(2, tx);
        w.write_all(&vec![0; 2 * 1000 + 4 + 1]).unwrap();
        w.finish().unwrap();
        let sizes: Vec<usize> = rx.try_iter().map(|p| p.bytes.len()).collect();
        assert_eq!(sizes.len(), 1002);
        assert_eq!((sizes[999], sizes[1000], sizes[1001]), (2, 4, 1));
    }

    #[test]
    fn sent_buffers_come_back_for_the_next_parts() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (back_tx, back_rx) = crossbeam_channel::unbounded();
        let mut w = PartWriter::new(4, tx).recycling(back_rx);
        w.write_all(&[1; 4]).unwrap();
        let first = rx.try_recv().unwrap();
        let reused = first.bytes.as_ptr();
        back_tx.send(first.bytes).unwrap();
        w.write_all(&[2; 8]).unwrap();
        assert_eq!(rx.try_recv().unwrap().bytes, vec![2; 4]);
        assert_eq!(
            rx.try_recv().unwrap().bytes.as_ptr(),
            reused,
            "the returned buffer carries the third part"
        );
    }
}

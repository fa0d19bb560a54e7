use std::io::Read;
use std::io::Result as IoResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached when the destructor is
/// called, the rest is *not* read (ManMan patch: upstream allocated and read the whole declared
/// remainder in the responding thread, so `Content-Length: 9223372036854775807` aborted the
/// process and a client that never sent its body froze the handler); `abandoned` is set instead
/// and the connection is closed after the response, since its next request would start inside
/// the unread body.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    abandoned: Arc<AtomicBool>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize, abandoned: Arc<AtomicBool>) -> EqualReader<R> {
        EqualReader {
            reader,
            size,
            abandoned,
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(0) => {
                // EOF before the declared length: the connection is done.
                self.abandoned.store(true, Ordering::SeqCst);
                self.size = 0;
                Ok(0)
            }
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        if self.size > 0 {
            self.abandoned.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let mut equal_reader = EqualReader::new(org_reader.by_ref(), 5, Default::default());

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn an_unread_rest_is_abandoned_not_drained() {
        use std::io::Cursor;
        use std::sync::atomic::Ordering;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());
        let abandoned = std::sync::Arc::new(Default::default());

        {
            let mut equal_reader =
                EqualReader::new(org_reader.by_ref(), usize::MAX, std::sync::Arc::clone(&abandoned));

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        assert!(abandoned.load(Ordering::SeqCst));
        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, "ello world");
    }
}

//! Errors as people read them: a typed error and every `source()` under it on one line, the
//! way ripgrep reports "cannot read X: permission denied". Used only at the edges (a log line,
//! the CLI's stderr, an RPC status message); inside, errors stay typed.

use std::error::Error;

/// `error: its source: the source's source…`, skipping a source whose text the level above
/// already repeats (many wrappers print their source in their own message).
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// Lets `?` turn each of these typed errors into the one line a `String` edge wants (a
/// daemon's start, a supervised thread's result, a readiness answer): the error and its
/// sources, by [`chain`]. One implementation for every error read there.
macro_rules! read_as_one_line {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for String {
            fn from(e: $error) -> String {
                $crate::errors::chain(&e)
            }
        }
    )+};
}
pub(crate) use read_as_one_line;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read the spec")]
        Read(#[source] std::io::Error),
        #[error("bad spec: {0}")]
        Repeats(#[source] std::io::Error),
    }

    #[test]
    fn every_source_is_told_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            chain(&Outer::Read(io())),
            "cannot read the spec: no such file"
        );
        assert_eq!(chain(&Outer::Repeats(io())), "bad spec: no such file");
    }
}

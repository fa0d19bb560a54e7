//! Process output handed, line by line and tagged with its source, to a sink the caller
//! provides (the splitting itself is `manman_child::LineSplitter`).

pub use manman_child::{LineSplitter, Source, MAX_LINE_BYTES};

/// Receives every output line of every managed process. Called from supervisor threads:
/// it must not block for long (queue the line and return).
pub trait OutputSink: Send + Sync {
    fn line(&self, process: &str, source: Source, line: &str);
}

/// One output line, for [`ChannelOutput`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLine {
    pub process: String,
    pub source: Source,
    pub line: String,
}

/// Sends lines down a crossbeam channel.
pub struct ChannelOutput(pub crossbeam_channel::Sender<OutputLine>);

impl OutputSink for ChannelOutput {
    fn line(&self, process: &str, source: Source, line: &str) {
        let _ = self.0.send(OutputLine {
            process: process.to_string(),
            source,
            line: line.to_string(),
        });
    }
}

/// Discards output.
pub struct NullOutput;

impl OutputSink for NullOutput {
    fn line(&self, _: &str, _: Source, _: &str) {}
}

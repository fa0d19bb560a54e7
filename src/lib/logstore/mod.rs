//! Where archived session logs live: gzip objects in S3, one per session per UTC minute, and
//! their line format. The log processor writes them; the API reads them back.

mod bucket;
mod format;
mod presign;

pub use bucket::{ObjectStore, S3Config, StoreError};
pub use format::{decode_object, encode_lines, minute_of, object_key, ArchivedLine};

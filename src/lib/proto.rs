//! Generated gRPC messages and services (`proto/manman/v1/*.proto`, built by build.rs).
#![allow(clippy::all, missing_docs, unused_qualifications)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/manman.v1.rs"));
}

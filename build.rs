//! Generates the gRPC messages and services from `proto/` (prost + grpcio; needs `protoc`).

fn main() {
    let protos = ["proto/manman/v1/api.proto", "proto/manman/v1/logs.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    grpcio_compiler::prost_codegen::compile_protos(&protos, &["proto"], &out_dir)
        .expect("protoc must be installed (Debian: protobuf-compiler; scripts/test installs it)");
}

//! Generates the gRPC bindings with the pure-Rust protobuf compiler `protox`, so building
//! Mittari never needs a system `protoc`. The encoded descriptor set is kept for server
//! reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        proto_root.join("mittari/v1/metrics.proto"),
        proto_root.join("mittari/v1/models.proto"),
        proto_root.join("mittari/admin/v1/admin.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("mittari_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // Arrow IPC payloads stay the received buffer: decoded without a copy.
        .bytes(".mittari.v1.Table.arrow_ipc")
        // Row-carrying requests reserve their decoded size before prost decodes them.
        .codec_path("crate::bounded::BoundedCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

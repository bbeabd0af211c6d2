//! Generates the gRPC code and the reflection descriptor set from `proto/` with protox,
//! so building needs no system `protoc`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/incidentd/v1/access.proto",
        "proto/incidentd/v1/component.proto",
        "proto/incidentd/v1/event.proto",
        "proto/incidentd/v1/incident.proto",
        "proto/incidentd/v1/subscription.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("incidentd_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

//! Generates the gRPC code and the reflection descriptor set from `proto/` with protox,
//! so building needs no system `protoc`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every proto of the package: a new resource's file is picked up without an edit here.
    let dir = "proto/incidentd/v1";
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<String> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("incidentd_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

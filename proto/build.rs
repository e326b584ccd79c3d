//! Compiles proto/benchctl/v1/benchctl.proto with the protoc that the crates.io package
//! protoc-bin-vendored ships: no system protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/benchctl/v1/benchctl.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

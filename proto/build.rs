//! Compiles the .proto files with protox (pure Rust; no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["alpr/v1/alpr.proto"], ["proto"])?;
    // The descriptor set, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("alpr_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // No transport-specific constructors: the clients are generic over any gRPC channel, so
    // an outside client picks its own transport and this crate needs no server runtime.
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}

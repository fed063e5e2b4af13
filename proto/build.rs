//! Compiles proto/authpulse/v1/*.proto with protox (pure Rust), so building
//! needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/authpulse/v1/agent.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The RPC is named `Connect`; the generated `connect` constructor would
        // collide with it. Clients are built with `AgentServiceClient::new(channel)`.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}

//! gRPC plumbing shared by the daemons and their clients: a service served until shutdown in a
//! supervised thread, and client channels.

use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle::Supervisor;

/// Serves `service` on `listen` with `threads` completion queues until shutdown; returns the
/// bound port (so `:0` works in tests).
pub fn serve(
    service: grpcio::Service,
    listen: &str,
    threads: usize,
    supervisor: &mut Supervisor,
) -> Result<u16, String> {
    let env = Arc::new(grpcio::Environment::new(threads.max(1)));
    let mut server = grpcio::ServerBuilder::new(env)
        .register_service(service)
        .build()
        .map_err(|e| format!("cannot build gRPC server: {e}"))?;
    let port = server
        .add_listening_port(listen, grpcio::ServerCredentials::insecure())
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    server.start();
    supervisor
        .spawn("grpc", move |shutdown| {
            while !shutdown.wait(Duration::from_secs(3600)) {}
            // A stream blocked on a client that stopped reading would hold shutdown forever.
            server.cancel_all_calls();
            let _ = futures::executor::block_on(server.shutdown());
            Ok(())
        })
        .map_err(|e| format!("cannot spawn thread: {e}"))?;
    Ok(port)
}

/// A channel to `address` (connected lazily, reconnecting by itself).
pub fn channel(address: &str) -> grpcio::Channel {
    let env = Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    grpcio::ChannelBuilder::new(env).connect(address)
}

/// A blocking client of `manman.v1.ManManAPI` at `address` (the CLI, the host agent and the
/// log processor use it).
pub fn api_client(address: &str) -> crate::proto::v1::ManManApiClient {
    crate::proto::v1::ManManApiClient::new(channel(address))
}

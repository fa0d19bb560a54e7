//! gRPC plumbing shared by the daemons and their clients: a service served until shutdown in a
//! supervised thread (with TLS when given a certificate), client channels (with TLS when given
//! a CA), and call options that carry the bearer token.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, Env};
use crate::lifecycle::Supervisor;
use crate::secret;

/// A server certificate and its key, PEM (`GRPC_TLS_CERT`, `GRPC_TLS_KEY`).
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

fn read_pem(var: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(Path::new(path))
        .map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))?;
    if !pem.starts_with(b"-----BEGIN") {
        return Err(ConfigError::new(var, format!("{path} is not a PEM file")));
    }
    Ok(pem)
}

impl ServerTls {
    /// `GRPC_TLS_CERT` and `GRPC_TLS_KEY`: both or neither.
    pub fn from_env(env: &Env) -> Result<Option<ServerTls>, ConfigError> {
        match (env.get("GRPC_TLS_CERT"), env.get("GRPC_TLS_KEY")) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(ServerTls {
                cert_pem: read_pem("GRPC_TLS_CERT", cert)?,
                key_pem: read_pem("GRPC_TLS_KEY", key)?,
            })),
            (Some(_), None) => Err(ConfigError::new(
                "GRPC_TLS_KEY",
                "must be set with GRPC_TLS_CERT",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "GRPC_TLS_CERT",
                "must be set with GRPC_TLS_KEY",
            )),
        }
    }
}

/// Why the gRPC server could not start (the daemon stops at start, saying so).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the gRPC server")]
    Build(#[source] grpcio::Error),
    #[error("cannot listen on {0}")]
    Listen(String, #[source] grpcio::Error),
    #[error(transparent)]
    Thread(#[from] crate::lifecycle::SpawnError),
}

crate::errors::read_as_one_line!(ServeError);

/// Serves `service` on `listen` with `threads` completion queues until shutdown; returns the
/// bound port (so `:0` works in tests).
pub fn serve(
    service: grpcio::Service,
    listen: &str,
    tls: Option<&ServerTls>,
    threads: usize,
    supervisor: &mut Supervisor,
) -> Result<u16, ServeError> {
    let env = Arc::new(grpcio::Environment::new(threads.max(1)));
    let mut server = grpcio::ServerBuilder::new(env)
        .register_service(service)
        .build()
        .map_err(ServeError::Build)?;
    let credentials = match tls {
        Some(tls) => grpcio::ServerCredentialsBuilder::new()
            .add_cert(tls.cert_pem.clone(), tls.key_pem.clone())
            .build(),
        None => grpcio::ServerCredentials::insecure(),
    };
    let port = server
        .add_listening_port(listen, credentials)
        .map_err(|e| ServeError::Listen(listen.to_string(), e))?;
    server.start();
    supervisor.spawn("grpc", move |shutdown| {
        while !shutdown.wait(Duration::from_secs(3600)) {}
        // A stream blocked on a client that stopped reading would hold shutdown forever.
        server.cancel_all_calls();
        let _ = futures::executor::block_on(server.shutdown());
        Ok(())
    })?;
    Ok(port)
}

/// Where a client finds a gRPC server: its address, and the CA that signed its certificate
/// when it serves TLS (`GRPC_TLS_CA`).
#[derive(Clone)]
pub struct Endpoint {
    pub address: String,
    pub tls_ca: Option<Vec<u8>>,
}

impl Endpoint {
    pub fn plain(address: &str) -> Endpoint {
        Endpoint {
            address: address.to_string(),
            tls_ca: None,
        }
    }

    /// The address in `var` (or `default`), with TLS when `GRPC_TLS_CA` names a CA file.
    pub fn from_env(env: &Env, var: &str, default: &str) -> Result<Endpoint, ConfigError> {
        Endpoint::at(&env.string(var, default), env)
    }

    /// `address`, with TLS when `GRPC_TLS_CA` names a CA file.
    pub fn at(address: &str, env: &Env) -> Result<Endpoint, ConfigError> {
        Ok(Endpoint {
            address: address.to_string(),
            tls_ca: match env.get("GRPC_TLS_CA") {
                Some(path) => Some(read_pem("GRPC_TLS_CA", path)?),
                None => None,
            },
        })
    }

    /// A channel (connected lazily, reconnecting by itself).
    pub fn channel(&self) -> grpcio::Channel {
        let env = Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
        let builder = grpcio::ChannelBuilder::new(env);
        match &self.tls_ca {
            Some(ca) => builder
                .set_credentials(
                    grpcio::ChannelCredentialsBuilder::new()
                        .root_cert(ca.clone())
                        .build(),
                )
                .connect(&self.address),
            None => builder.connect(&self.address),
        }
    }

    pub fn api_client(&self) -> crate::proto::v1::ManManApiClient {
        crate::proto::v1::ManManApiClient::new(self.channel())
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            self.address,
            if self.tls_ca.is_some() { " (TLS)" } else { "" }
        )
    }
}

/// A plaintext channel to `address`.
pub fn channel(address: &str) -> grpcio::Channel {
    Endpoint::plain(address).channel()
}

/// A blocking plaintext client of `manman.v1.ManManAPI` at `address` (tests; daemons and the
/// CLI build theirs from an [`Endpoint`]).
pub fn api_client(address: &str) -> crate::proto::v1::ManManApiClient {
    Endpoint::plain(address).api_client()
}

/// Call options with a deadline and, when given, `authorization: Bearer <token>`.
pub fn call_option(token: Option<&str>, timeout: Duration) -> grpcio::CallOption {
    authorized(token).timeout(timeout)
}

/// Call options carrying the bearer token and no deadline (a log stream lasts as long as its
/// session).
pub fn authorized(token: Option<&str>) -> grpcio::CallOption {
    let option = grpcio::CallOption::default();
    let Some(token) = token else { return option };
    let mut headers = grpcio::MetadataBuilder::new();
    // A token that is not a valid header value is left out: the server then says which
    // token is missing rather than the client failing obscurely.
    match headers.add_str("authorization", &format!("Bearer {token}")) {
        Ok(_) => option.headers(headers.build()),
        Err(_) => option,
    }
}

/// The token a client presents: `MANMAN_TOKEN`, else the file `MANMAN_TOKEN_FILE` (which must
/// be 0600), else `~/.config/manman/token` when it exists. Never a command-line argument:
/// `ps` would show it.
pub fn client_token(env: &Env) -> Result<Option<String>, ConfigError> {
    if let Some(token) = secret::from_env(env, "MANMAN_TOKEN", "MANMAN_TOKEN_FILE")? {
        return Ok(Some(token));
    }
    let default = env
        .get("HOME")
        .map(|home| Path::new(home).join(".config/manman/token"));
    match default {
        Some(path) if path.exists() => secret::read_file(&path)
            .map(Some)
            .map_err(|e| ConfigError::new("MANMAN_TOKEN_FILE", e)),
        _ => Ok(None),
    }
}

/// Writes a batch of messages to a server stream, blocking this (plain) thread until gRPC
/// takes them. All but the last may wait in gRPC's buffer; the last goes out at once, or a
/// quiet stream would hold its newest message back until the next one.
pub fn send_batch<T: Send + 'static>(
    sink: &mut grpcio::ServerStreamingSink<T>,
    batch: Vec<T>,
) -> Result<(), grpcio::Error> {
    use futures::SinkExt;
    let last = batch.len().saturating_sub(1);
    futures::executor::block_on(async {
        for (i, m) in batch.into_iter().enumerate() {
            let flags = grpcio::WriteFlags::default().buffer_hint(i < last);
            sink.feed((m, flags)).await?;
        }
        sink.flush().await
    })
}

/// Whether the client of a server stream cancelled or disconnected (polled without blocking).
pub fn client_gone<T>(sink: &mut grpcio::ServerStreamingSink<T>) -> bool {
    use futures::Sink;
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    matches!(
        std::pin::Pin::new(sink).poll_ready(&mut cx),
        std::task::Poll::Ready(Err(_))
    )
}

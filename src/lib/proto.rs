//! Generated gRPC messages and services (`proto/manman/v1/*.proto`, built by build.rs).
#![allow(clippy::all, missing_docs, unused_qualifications)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/manman.v1.rs"));
}

impl v1::GameConfig {
    /// Every port the config defines, each bound to a free port of the host's range (host port
    /// 0: the API picks it): `deploy --port auto` and the dashboard's deploy.
    pub fn bindings_on_free_ports(&self) -> Vec<v1::PortBinding> {
        self.ports
            .iter()
            .map(|p| v1::PortBinding {
                host_port: 0,
                container_port: p.port,
                protocol: p.protocol.clone(),
            })
            .collect()
    }
}

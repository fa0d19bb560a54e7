//! How operators write a port: `PORT[/PROTOCOL]` for a config's ports and
//! `HOST[:CONTAINER][/PROTOCOL]` (or `auto`) for a deployment's bindings, TCP unless it says
//! otherwise. One parser for the CLI's `--port` flags and the dashboard's forms.

/// `25565/udp` → (`25565`, `udp`); `25565` → (`25565`, `tcp`).
pub fn split_protocol(text: &str) -> (&str, &str) {
    text.split_once('/').unwrap_or((text, "tcp"))
}

/// `25565`, `25565/udp`: the port number and its protocol.
pub fn parse_port(text: &str) -> Result<(i32, String), String> {
    let (port, protocol) = split_protocol(text);
    let port = port
        .trim()
        .parse()
        .map_err(|_| format!("invalid port {text:?} (expected PORT or PORT/PROTOCOL)"))?;
    Ok((port, protocol.trim().to_string()))
}

/// A deployment's `--port`, as the operator asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRequest {
    /// `auto`: every port the config defines, each on a free host port.
    EveryPort,
    /// `HOST[:CONTAINER][/PROTOCOL]` or `auto:CONTAINER[/PROTOCOL]`; host port 0 means a free
    /// one, chosen by the API.
    One {
        host_port: i32,
        container_port: i32,
        protocol: String,
    },
}

/// `auto`, `auto:25565`, `7000:25565/udp`, `25565` (the same port on both sides).
pub fn parse_binding(text: &str) -> Result<PortRequest, String> {
    if text == "auto" {
        return Ok(PortRequest::EveryPort);
    }
    let (spec, protocol) = split_protocol(text);
    let (host, container) = spec.split_once(':').unwrap_or((spec, spec));
    let number = |s: &str| {
        s.parse::<i32>().map_err(|_| {
            format!(
                "invalid --port {text:?} (expected HOST[:CONTAINER][/PROTOCOL], auto or auto:CONTAINER)"
            )
        })
    };
    Ok(PortRequest::One {
        host_port: if host == "auto" { 0 } else { number(host)? },
        container_port: number(container)?,
        protocol: protocol.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_tcp_unless_they_say_otherwise() {
        assert_eq!(parse_port("25565").unwrap(), (25565, "tcp".to_string()));
        assert_eq!(parse_port("19132/udp").unwrap(), (19132, "udp".to_string()));
        assert_eq!(split_protocol("7000:25565/udp"), ("7000:25565", "udp"));
        assert!(parse_port("minecraft")
            .unwrap_err()
            .contains("expected PORT or PORT/PROTOCOL"));
    }

    #[test]
    fn bindings_name_a_host_port_a_container_port_or_auto() {
        let one = |host_port, container_port, protocol: &str| PortRequest::One {
            host_port,
            container_port,
            protocol: protocol.into(),
        };
        assert_eq!(parse_binding("auto").unwrap(), PortRequest::EveryPort);
        assert_eq!(parse_binding("25565").unwrap(), one(25565, 25565, "tcp"));
        assert_eq!(
            parse_binding("7000:25565/udp").unwrap(),
            one(7000, 25565, "udp")
        );
        assert_eq!(parse_binding("auto:25565").unwrap(), one(0, 25565, "tcp"));
        for bad in ["auto:auto", "7000:", "x:1", "", "1:2:3"] {
            assert!(
                parse_binding(bad).unwrap_err().contains("HOST[:CONTAINER]"),
                "{bad}"
            );
        }
    }
}

//! How operators write a port: `PORT[/PROTOCOL]`, TCP unless it says otherwise. One parser
//! for the CLI's `--port` flags and the dashboard's forms.

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
}

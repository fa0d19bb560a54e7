//! The page's forms as API requests: what a person typed, checked and turned into the
//! message the control API takes.

use serde_json::Value;

use super::transport::{bad, Call, Failure};
use crate::proto::v1 as pb;

/// A config from the page's form: game, name, program, args (one per line), stop command,
/// restart policy, ports (`25565/tcp`, comma-separated), readiness line.
pub(super) fn config_from_form(call: &Call<'_>) -> Result<pb::GameConfig, Failure> {
    let mut ports = Vec::new();
    for p in call
        .text("ports")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (port, protocol) =
            crate::wire::ports::parse_port(p).map_err(|e| bad(format!("ports: {e}")))?;
        ports.push(pb::PortDefinition { port, protocol });
    }
    let args = call.body["args"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .filter(|a| !a.is_empty())
        .collect();
    let ready = call.text("ready_line");
    Ok(pb::GameConfig {
        game_id: call.number("game_id")?,
        name: call.text("name"),
        program: call.text("program"),
        args,
        stop_command: call.text("stop_command"),
        restart_policy: call.text("restart_policy"),
        ports,
        readiness: (!ready.is_empty()).then(|| pb::ReadinessProbe {
            console_pattern: ready,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One line of console input: refused if empty or if it holds a line break (which would
/// smuggle a second command past the one the operator saw).
pub(super) fn console_line(body: &Value) -> Result<String, Failure> {
    let input = body["input"].as_str().unwrap_or_default();
    if input.is_empty() || input.contains(['\n', '\r']) {
        return Err(bad("input must be one non-empty line"));
    }
    Ok(input.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tiny_http::Method;

    fn call(body: Value) -> Call<'static> {
        Call {
            method: &Method::Post,
            segments: vec!["api", "configs"],
            query: Vec::new(),
            body,
        }
    }

    #[test]
    fn the_config_form_becomes_the_request() {
        let c = config_from_form(&call(json!({
            "game_id": "3", "name": " vanilla ", "program": "java",
            "args": "-jar\n\nserver.jar", "ports": "25565, 19132/udp", "ready_line": "Done",
        })))
        .unwrap();
        assert_eq!((c.game_id, c.name.as_str()), (3, "vanilla"));
        assert_eq!(c.args, ["-jar", "server.jar"]);
        let ports: Vec<_> = c
            .ports
            .iter()
            .map(|p| (p.port, p.protocol.as_str()))
            .collect();
        assert_eq!(ports, [(25565, "tcp"), (19132, "udp")]);
        assert_eq!(c.readiness.unwrap().console_pattern, "Done");
        let bad_port = config_from_form(&call(json!({"ports": "minecraft"}))).unwrap_err();
        assert_eq!(bad_port.0, 400);
        assert!(config_from_form(&call(json!({"game_id": "three"}))).is_err());
    }

    #[test]
    fn console_input_is_one_line() {
        assert_eq!(console_line(&json!({"input": "say hi"})).unwrap(), "say hi");
        for evil in [
            json!({"input": "say hi\nop mallory"}),
            json!({"input": ""}),
            json!({}),
        ] {
            assert_eq!(console_line(&evil).unwrap_err().0, 400, "{evil}");
        }
    }
}

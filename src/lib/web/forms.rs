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
    let limits = limits_from_form(call)?;
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
        limits: Some(limits),
        ..Default::default()
    })
}

/// The form's limits: memory and disk as sizes (`4G`), CPU in cores, processes; blank: none.
fn limits_from_form(call: &Call<'_>) -> Result<pb::ResourceLimits, Failure> {
    let size = |field: &str| -> Result<Option<i64>, Failure> {
        let text = call.text(field);
        if text.is_empty() {
            return Ok(None);
        }
        let bytes = crate::wire::game_process::parse_bytes(&text)
            .map_err(|e| bad(format!("{field}: {e}")))?;
        Ok(Some(
            i64::try_from(bytes).map_err(|_| bad(format!("{field}: too large")))?,
        ))
    };
    let number = |field: &str| -> Result<Option<f64>, Failure> {
        let text = call.text(field);
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<f64>()
            .map(Some)
            .map_err(|_| bad(format!("{field}: {text:?} is not a number")))
    };
    Ok(pb::ResourceLimits {
        memory_max_bytes: size("memory_max")?,
        disk_max_bytes: size("disk_max")?,
        cpu_max_cores: number("cpu_max")?,
        pids_max: number("pids_max")?.map(|n| n as i32),
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
        assert_eq!(
            c.limits,
            Some(pb::ResourceLimits::default()),
            "blank: no limits"
        );
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
        let limited = config_from_form(&call(json!({
            "game_id": "3", "memory_max": "4G", "cpu_max": "2.5", "disk_max": "20G", "pids_max": "64",
        })))
        .unwrap()
        .limits
        .unwrap();
        assert_eq!(limited.memory_max_bytes, Some(4 << 30));
        assert_eq!(limited.cpu_max_cores, Some(2.5));
        assert_eq!(limited.pids_max, Some(64));
        for (field, text) in [("memory_max", "lots"), ("cpu_max", "two")] {
            let refused =
                config_from_form(&call(json!({"game_id": "3", field: text}))).unwrap_err();
            assert_eq!(refused.0, 400, "{field}");
        }
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

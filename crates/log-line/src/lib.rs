//! ManMan's log format, one JSON object per line (timestamp, level, target, message, fields)
//! for journald and humans: [`json_line`] for the daemons' env_logger, and [`StderrLogger`]
//! for the keeper, which stays too small for env_logger's filter syntax.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

/// Writes every record at `level` or above to stderr as a JSON line.
pub struct StderrLogger {
    level: log::LevelFilter,
}

impl StderrLogger {
    /// Installs the logger at the level `LOG_LEVEL` names (`info` when unset or when it is a
    /// filter list, whose first bare level is used). Safe to call twice.
    pub fn init_from_env() {
        let level = std::env::var("LOG_LEVEL")
            .ok()
            .and_then(|v| v.split(',').find_map(|part| part.trim().parse().ok()))
            .unwrap_or(log::LevelFilter::Info);
        if log::set_logger(Box::leak(Box::new(StderrLogger { level }))).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(std::io::stderr().lock(), "{}", json_line(record));
        }
    }

    fn flush(&self) {}
}

/// One log record as a JSON object, structured fields included (`log::info!(host = 3; "...")`).
pub fn json_line(record: &log::Record<'_>) -> String {
    let mut fields = Map::new();
    fields.insert(
        "ts".into(),
        Json::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    fields.insert("level".into(), Json::String(record.level().to_string()));
    fields.insert("target".into(), Json::String(record.target().to_string()));
    fields.insert("msg".into(), Json::String(record.args().to_string()));
    let mut visitor = FieldVisitor(&mut fields);
    let _ = record.key_values().visit(&mut visitor);
    Json::Object(fields).to_string()
}

struct FieldVisitor<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for FieldVisitor<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(b) = value.to_bool() {
            Json::Bool(b)
        } else if let Some(i) = value.to_i64() {
            Json::from(i)
        } else if let Some(u) = value.to_u64() {
            Json::from(u)
        } else if let Some(f) = value.to_f64() {
            Json::from(f)
        } else {
            Json::String(value.to_string())
        };
        // Fields may not overwrite the fixed keys, so every line keeps the same shape.
        let name = key.as_str();
        let name = if ["ts", "level", "target", "msg"].contains(&name) {
            format!("field_{name}")
        } else {
            name.to_string()
        };
        self.0.insert(name, json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_one_json_object_with_fields() {
        let kvs: &[(&str, i64)] = &[("session_id", 7), ("msg", 1)];
        let record = log::Record::builder()
            .args(format_args!("session moved"))
            .level(log::Level::Info)
            .target("manman::processor")
            .key_values(&kvs)
            .build();
        let line = json_line(&record);
        assert!(!line.contains('\n'));
        let parsed: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "INFO");
        assert_eq!(parsed["target"], "manman::processor");
        assert_eq!(parsed["msg"], "session moved");
        assert_eq!(parsed["session_id"], 7);
        assert_eq!(parsed["field_msg"], 1);
        assert!(parsed["ts"].as_str().unwrap().ends_with('Z'));
    }
}

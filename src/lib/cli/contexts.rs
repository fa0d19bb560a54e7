//! Named contexts: where the CLI connects (API and log processor addresses, the CA, the token),
//! kept in `~/.config/manman/config.toml` (mode 0600: it may hold a token) so that a new shell
//! needs no exported variable, and an operator switches between production and staging with
//! `manman context use` or `--context`, as with kubectl.
//!
//! Layers, strongest first: a command-line flag, the environment (`API_ADDRESS`,
//! `LOG_PROCESSOR_ADDRESS`, `GRPC_TLS_CA`, `MANMAN_TOKEN`/`MANMAN_TOKEN_FILE`), the chosen
//! context (`--context`, `MANMAN_CONTEXT`, else the file's `current`), the built-in defaults.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::output;
use super::shared::{Exit, Failure, Outcome};
use crate::config::Env;
use crate::secret::{self, SecretFileError};

/// The bottom layer: where the CLI connects when nothing says otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:50051";
pub const DEFAULT_LOG_PROCESSOR: &str = "127.0.0.1:50053";

/// The file's shape: which context is current, and each by name.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One control plane: every field optional (what is missing falls to the default).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_processor: Option<String>,
    /// The CA of the API's and log processor's certificates (TLS when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// The token itself (the file is 0600); `token_file` is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("set HOME, XDG_CONFIG_HOME or MANMAN_CONFIG: nowhere to keep the CLI's config")]
    NoHome,
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("no context {name:?} in {} (manman context list shows them; manman context add {name} --api HOST:PORT makes one)", path.display())]
    Unknown { name: String, path: PathBuf },
}

impl From<ContextError> for Failure {
    fn from(e: ContextError) -> Failure {
        Failure::new(Exit::Config, e.to_string())
    }
}

/// Where the config file is: `MANMAN_CONFIG`, else `$XDG_CONFIG_HOME/manman/config.toml`,
/// else `~/.config/manman/config.toml`.
pub fn config_path(env: &Env) -> Result<PathBuf, ContextError> {
    if let Some(path) = env.get("MANMAN_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let dir = match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".config"),
        (None, None) => return Err(ContextError::NoHome),
    };
    Ok(dir.join("manman/config.toml"))
}

impl ConfigFile {
    /// The file at `path`; an empty one when there is none. A file others may read is refused
    /// (it may hold a token), with the `chmod` that fixes it.
    pub fn load(path: &Path) -> Result<ConfigFile, ContextError> {
        if !path.exists() {
            return Ok(ConfigFile::default());
        }
        let text = match secret::read_file(path) {
            Ok(text) => text,
            Err(SecretFileError::Empty(_)) => return Ok(ConfigFile::default()),
            Err(e) => return Err(e.into()),
        };
        toml::from_str(&text).map_err(|e| ContextError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the file (0600, replaced atomically, its directory made 0700 if missing).
    pub fn save(&self, path: &Path) -> Result<(), ContextError> {
        let text = toml::to_string(self).expect("a config file serialises");
        secret::write_file(path, text.trim_end())?;
        Ok(())
    }

    /// The context to use: `chosen` (from `--context`/`MANMAN_CONTEXT`), else `current`.
    pub fn pick(
        &self,
        chosen: Option<&str>,
        path: &Path,
    ) -> Result<Option<(String, Context)>, ContextError> {
        let Some(name) = chosen.or(self.current.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get(name) {
            Some(c) => Ok(Some((name.to_string(), c.clone()))),
            None => Err(ContextError::Unknown {
                name: name.to_string(),
                path: path.to_path_buf(),
            }),
        }
    }
}

impl Context {
    /// Lays the context under `env`: a variable the environment sets wins. The token is one
    /// setting: `MANMAN_TOKEN` or `MANMAN_TOKEN_FILE` in the environment hides both of the
    /// context's.
    pub fn apply_under(&self, env: &mut Env) {
        for (var, value) in [
            ("API_ADDRESS", &self.api),
            ("LOG_PROCESSOR_ADDRESS", &self.log_processor),
            ("GRPC_TLS_CA", &self.ca),
        ] {
            if let Some(value) = value {
                env.set_default(var, value);
            }
        }
        if env.get("MANMAN_TOKEN").is_none() && env.get("MANMAN_TOKEN_FILE").is_none() {
            match (&self.token, &self.token_file) {
                (Some(token), _) => env.set_default("MANMAN_TOKEN", token),
                (None, Some(file)) => env.set_default("MANMAN_TOKEN_FILE", file),
                (None, None) => {}
            }
        }
    }

    /// How the token is given, never the token itself.
    fn token_shown(&self) -> String {
        match (&self.token, &self.token_file) {
            (Some(_), _) => "(in the config file)".into(),
            (None, Some(file)) => file.clone(),
            (None, None) => "-".into(),
        }
    }
}

/// The process environment with the chosen context under it, and that context's name.
pub fn resolve(chosen: Option<&str>) -> Result<(Env, Option<String>), ContextError> {
    let mut env = Env::from_process();
    let path = config_path(&env)?;
    let file = ConfigFile::load(&path)?;
    let picked = file.pick(chosen, &path)?;
    if let Some((_, context)) = &picked {
        context.apply_under(&mut env);
    }
    Ok((env, picked.map(|(name, _)| name)))
}

/// What `manman context add` takes (the token from a file or from stdin, never an argument
/// that `ps` would show).
pub struct ContextAdd<'a> {
    pub name: &'a str,
    pub api: &'a str,
    pub log_processor: Option<&'a str>,
    pub ca: Option<&'a Path>,
    pub token_file: Option<&'a Path>,
    pub token_stdin: bool,
    pub make_current: bool,
    pub replace: bool,
}

/// `manman context …`: reads and writes the config file; talks to nothing.
pub mod commands {
    use super::*;

    fn open() -> Result<(PathBuf, ConfigFile), Failure> {
        let path = config_path(&Env::from_process())?;
        let file = ConfigFile::load(&path)?;
        Ok((path, file))
    }

    pub fn list(json: bool) -> Outcome {
        let (_, file) = open()?;
        let current = file.current.as_deref();
        let items = file
            .contexts
            .iter()
            .map(|(name, c)| {
                json!({"name": name, "current": current == Some(name.as_str()), "api": c.api,
                       "log_processor": c.log_processor, "ca": c.ca, "token": c.token_shown()})
            })
            .collect::<Vec<_>>();
        if json {
            let total = items.len();
            println!(
                "{}",
                serde_json::to_string_pretty(&output::json_list(items, total)).expect("json")
            );
            return Ok(());
        }
        if file.contexts.is_empty() {
            println!("(none: manman context add NAME --api HOST:PORT makes one)");
            return Ok(());
        }
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let rows = file
            .contexts
            .iter()
            .map(|(name, c)| {
                vec![
                    if current == Some(name.as_str()) {
                        "*"
                    } else {
                        ""
                    }
                    .into(),
                    name.clone(),
                    dash(&c.api),
                    dash(&c.log_processor),
                    dash(&c.ca),
                    c.token_shown(),
                ]
            })
            .collect::<Vec<_>>();
        print!(
            "{}",
            output::table(
                &["CURRENT", "NAME", "API", "LOG PROCESSOR", "CA", "TOKEN"],
                &rows
            )
        );
        Ok(())
    }

    pub fn use_context(name: &str) -> Outcome {
        let (path, mut file) = open()?;
        if !file.contexts.contains_key(name) {
            return Err(ContextError::Unknown {
                name: name.into(),
                path,
            }
            .into());
        }
        file.current = Some(name.to_string());
        file.save(&path)?;
        println!("current context: {name}");
        Ok(())
    }

    pub fn add(add: &ContextAdd<'_>) -> Outcome {
        let (path, mut file) = open()?;
        if file.contexts.contains_key(add.name) && !add.replace {
            return Err(Failure::new(
                Exit::Conflict,
                format!(
                    "context {:?} exists in {} (--replace to overwrite it)",
                    add.name,
                    path.display()
                ),
            ));
        }
        let absolute = |p: &Path, what: &str| -> Result<String, Failure> {
            std::fs::canonicalize(p)
                .map(|p| p.display().to_string())
                .map_err(|e| Failure::invalid(format!("{what} {}: {e}", p.display())))
        };
        let token = match add.token_stdin {
            true => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| Failure::invalid(format!("reading the token: {e}")))?;
                let token = line.trim().to_string();
                if token.is_empty() {
                    return Err(Failure::invalid("--token-stdin: stdin held no token"));
                }
                Some(token)
            }
            false => None,
        };
        let context = Context {
            api: Some(add.api.to_string()),
            log_processor: add.log_processor.map(str::to_string),
            ca: add.ca.map(|p| absolute(p, "--ca")).transpose()?,
            token_file: add
                .token_file
                .map(|p| absolute(p, "--token-file"))
                .transpose()?,
            token,
        };
        file.contexts.insert(add.name.to_string(), context);
        if add.make_current || file.current.is_none() {
            file.current = Some(add.name.to_string());
        }
        file.save(&path)?;
        let current = file.current.as_deref() == Some(add.name);
        println!(
            "context {} saved in {}{}",
            add.name,
            path.display(),
            if current { " (current)" } else { "" }
        );
        Ok(())
    }

    pub fn remove(name: &str) -> Outcome {
        let (path, mut file) = open()?;
        if file.contexts.remove(name).is_none() {
            return Err(Failure::new(
                Exit::NotFound,
                format!("no context {name:?} in {}", path.display()),
            ));
        }
        if file.current.as_deref() == Some(name) {
            file.current = None;
        }
        file.save(&path)?;
        println!("context {name} removed");
        Ok(())
    }

    /// The settings a command would use now, and where each comes from.
    pub fn show(chosen: Option<&str>, json: bool) -> Outcome {
        let process = Env::from_process();
        let (path, file) = open()?;
        let picked = file.pick(chosen, &path)?;
        let context = picked.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
        let from_context = |v: &Option<String>| v.clone().map(|v| (v, "context"));
        let setting = |var: &str, ctx: Option<(String, &'static str)>, default: &str| match (
            process.get(var),
            ctx,
        ) {
            (Some(v), _) => (v.to_string(), format!("environment ({var})")),
            (None, Some((v, from))) => (v, from.to_string()),
            (None, None) => (default.to_string(), "default".into()),
        };
        let token = match (
            process.get("MANMAN_TOKEN"),
            process.get("MANMAN_TOKEN_FILE"),
        ) {
            (Some(_), _) => ("(set)".into(), "environment (MANMAN_TOKEN)".into()),
            (None, Some(f)) => (f.to_string(), "environment (MANMAN_TOKEN_FILE)".into()),
            (None, None) if context.token.is_some() || context.token_file.is_some() => {
                (context.token_shown(), "context".into())
            }
            (None, None) => (
                "~/.config/manman/token, if it exists".into(),
                "default".into(),
            ),
        };
        let rows = vec![
            (
                "api",
                setting("API_ADDRESS", from_context(&context.api), DEFAULT_API),
            ),
            (
                "log_processor",
                setting(
                    "LOG_PROCESSOR_ADDRESS",
                    from_context(&context.log_processor),
                    DEFAULT_LOG_PROCESSOR,
                ),
            ),
            (
                "ca",
                setting("GRPC_TLS_CA", from_context(&context.ca), "- (plaintext)"),
            ),
            ("token", token),
        ];
        let name = picked.map(|(n, _)| n);
        if json {
            let mut out = json!({"context": name, "config_file": path.display().to_string()});
            for (key, (value, from)) in &rows {
                out[*key] = json!({"value": value, "from": from});
            }
            println!("{}", serde_json::to_string_pretty(&out).expect("json"));
            return Ok(());
        }
        println!(
            "context: {} ({})",
            name.as_deref().unwrap_or("none"),
            path.display()
        );
        let table_rows = rows
            .into_iter()
            .map(|(k, (v, from))| vec![k.to_string(), v, from])
            .collect::<Vec<_>>();
        print!(
            "{}",
            output::table(&["SETTING", "VALUE", "FROM"], &table_rows)
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_environment_wins_over_the_context_and_the_token_is_one_setting() {
        let f = file(
            r#"
            current = "prod"
            [contexts.prod]
            api = "api.prod:50051"
            ca = "/etc/prod-ca.pem"
            token = "mm_tok_prod"
            [contexts.staging]
            api = "api.staging:50051"
            token_file = "/home/op/staging.token"
            "#,
        );
        let path = Path::new("/x/config.toml");
        let (name, prod) = f.pick(None, path).unwrap().unwrap();
        assert_eq!(name, "prod");
        let mut env = Env::from_pairs(&[("API_ADDRESS", "override:1")]);
        prod.apply_under(&mut env);
        assert_eq!(env.get("API_ADDRESS"), Some("override:1"));
        assert_eq!(env.get("GRPC_TLS_CA"), Some("/etc/prod-ca.pem"));
        assert_eq!(env.get("MANMAN_TOKEN"), Some("mm_tok_prod"));

        // A token file in the environment hides the context's inline token.
        let mut env = Env::from_pairs(&[("MANMAN_TOKEN_FILE", "/mine")]);
        prod.apply_under(&mut env);
        assert_eq!(env.get("MANMAN_TOKEN"), None);
        assert_eq!(env.get("MANMAN_TOKEN_FILE"), Some("/mine"));

        let (_, staging) = f.pick(Some("staging"), path).unwrap().unwrap();
        let mut env = Env::from_pairs(&[]);
        staging.apply_under(&mut env);
        assert_eq!(env.get("API_ADDRESS"), Some("api.staging:50051"));
        assert_eq!(env.get("MANMAN_TOKEN_FILE"), Some("/home/op/staging.token"));
        assert_eq!(env.get("GRPC_TLS_CA"), None);

        let err = f.pick(Some("dev"), path).unwrap_err();
        assert!(
            err.to_string()
                .contains("no context \"dev\" in /x/config.toml"),
            "{err}"
        );
        assert!(file("").pick(None, path).unwrap().is_none());
    }

    #[test]
    fn the_file_is_private_and_typos_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("manman-contexts-{}", std::process::id()));
        let path = dir.join("manman/config.toml");
        let mut f = ConfigFile::default();
        f.contexts.insert(
            "demo".into(),
            Context {
                api: Some("127.0.0.1:1".into()),
                ..Context::default()
            },
        );
        f.current = Some("demo".into());
        f.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), f);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "[contexts.demo]\napi_adress = \"x\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("api_adress"), "{err}");
        assert!(ConfigFile::load(&dir.join("missing.toml"))
            .unwrap()
            .contexts
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

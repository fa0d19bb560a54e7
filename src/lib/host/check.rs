//! `manman-host --check`: what the agent needs on this machine, one thing at a time, each with
//! its fix: the configuration, the data directory's owner and mode, the credential (or the
//! enrollment secret), the broker with this host's user, the API, the keeper binary and the
//! cgroup the sessions' limits need. Changes nothing but the sessions' cgroup subtree, which
//! the agent would make at start anyway.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::HostConfig;
use crate::config::Env;
use crate::diagnosis::{reach, Ca, Check, Verdict};

/// Every check; a configuration that does not load is the one failure reported.
pub fn diagnose(env: &Env) -> Vec<Check> {
    let config = match HostConfig::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::bad(
                "config",
                Verdict::Fail,
                format!("{}: {}", e.var, e.problem),
                "fix that variable in /etc/manman/host.env",
            )]
        }
    };
    let mut checks = vec![Check::ok(
        "config",
        format!(
            "host {} with data in {}",
            config.server_name,
            config.data_dir.display()
        ),
    )];
    checks.push(data_dir(&config.data_dir));
    checks.push(credential(&config));
    checks.push(broker(&config.rabbitmq_url));
    // The config has read and checked GRPC_TLS_CA already.
    match config.api.tls_ca.clone().map(Ca::from_pem).transpose() {
        Ok(ca) => {
            reach(
                &mut checks,
                "api",
                &config.api.address,
                ca.as_ref(),
                "manman-api",
            );
        }
        Err(e) => checks.push(Check::bad(
            "api",
            Verdict::Fail,
            format!("GRPC_TLS_CA {e}"),
            "point GRPC_TLS_CA at the CA that signed the API's certificate",
        )),
    }
    checks.push(keeper(config.keeper.as_deref()));
    checks.push(cgroups(config.cgroup_subtree.as_deref()));
    checks
}

fn data_dir(dir: &Path) -> Check {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            return Check::bad(
                "data dir",
                Verdict::Fail,
                format!("{}: {e}", dir.display()),
                format!("install -d -o manman -g manman -m 750 {}", dir.display()),
            )
        }
    };
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o777;
    if meta.uid() != me {
        return Check::bad(
            "data dir",
            Verdict::Fail,
            format!(
                "{} belongs to uid {}, not to this agent (uid {me})",
                dir.display(),
                meta.uid()
            ),
            format!("chown -R manman:manman {}", dir.display()),
        );
    }
    if mode & 0o022 != 0 {
        return Check::bad(
            "data dir",
            Verdict::Fail,
            format!("{} is writable by others (mode {mode:04o})", dir.display()),
            format!("chmod go-w {}", dir.display()),
        );
    }
    Check::ok(
        "data dir",
        format!("{} (mode {mode:04o}, ours)", dir.display()),
    )
}

fn credential(config: &HostConfig) -> Check {
    let file = super::identity::credential_file(&config.data_dir);
    match crate::secret::read_file(&file) {
        Ok(_) => Check::ok("credential", format!("enrolled ({})", file.display())),
        Err(crate::secret::SecretFileError::Read(_, e))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            match config.enrollment_secret {
                Some(_) => Check::ok(
                    "credential",
                    "not enrolled yet: the agent enrolls with HOST_ENROLLMENT_SECRET at start",
                ),
                None => Check::bad(
                    "credential",
                    Verdict::Fail,
                    format!("no credential ({}) and no enrollment secret", file.display()),
                    format!(
                        "on the control plane: manman host add {} (or --reissue); then set HOST_ENROLLMENT_SECRET_FILE",
                        config.server_name
                    ),
                ),
            }
        }
        Err(e) => Check::bad(
            "credential",
            Verdict::Fail,
            e.to_string(),
            format!("chmod 600 {} (or --reissue if it is lost)", file.display()),
        ),
    }
}

/// Connects with the host's own broker user and looks for the exchanges it publishes to.
fn broker(url: &str) -> Check {
    let shown = crate::config::redact_url(url);
    let mut conn = match crate::bus::connection::open_first(url, "manman-host --check") {
        Ok(c) => c,
        Err(e) => {
            return Check::bad(
                "broker",
                Verdict::Fail,
                format!("{shown}: {e}"),
                "check RABBITMQ_URL (user, password, vhost) and that RabbitMQ is reachable; scripts/provision-host-broker-user makes the host's user",
            )
        }
    };
    let result = conn.open_channel(None).and_then(|ch| {
        ch.exchange_declare_passive(crate::wire::routing::DEFAULT_EXTERNAL_EXCHANGE)
            .map(|_| ())
    });
    let _ = conn.close();
    match result {
        Ok(()) => Check::ok("broker", format!("{shown}: connected, topology present")),
        Err(e) => Check::bad(
            "broker",
            Verdict::Warn,
            format!("{shown}: connected, but: {e}"),
            "start manman-processor once (it declares the topology) or check the user's permissions on the vhost",
        ),
    }
}

fn keeper(path: Option<&Path>) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    match path {
        None => Check::bad(
            "keeper",
            Verdict::Warn,
            "no manman-keeper: games end when the agent stops or restarts",
            "install manman-keeper next to manman-host or set HOST_KEEPER",
        ),
        Some(p) => match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                Check::ok("keeper", p.display().to_string())
            }
            Ok(_) => Check::bad(
                "keeper",
                Verdict::Fail,
                format!("{} is not an executable file", p.display()),
                format!("chmod 755 {}", p.display()),
            ),
            Err(e) => Check::bad(
                "keeper",
                Verdict::Fail,
                format!("{}: {e}", p.display()),
                "install manman-keeper there or set HOST_KEEPER",
            ),
        },
    }
}

fn cgroups(subtree: Option<&str>) -> Check {
    let Some(name) = subtree else {
        return Check::bad(
            "cgroups",
            Verdict::Warn,
            "HOST_CGROUP=off: games run without memory/CPU limits",
            "unset HOST_CGROUP to give each session a cgroup",
        );
    };
    match manman_cgroup::Tree::open(name) {
        Ok(tree) => Check::ok("cgroups", tree.describe()),
        Err(e) => Check::bad(
            "cgroups",
            Verdict::Warn,
            format!("no cgroup for sessions ({e}): configs with limits are refused"),
            "run the agent from its unit (Delegate=yes), or as root on a cgroup v2 or hybrid host",
        ),
    }
}

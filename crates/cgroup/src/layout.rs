//! Which cgroup hierarchies the host mounts, which controllers each carries, and where this
//! process sits in each: read from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

/// The v1 controllers ManMan uses (others, such as `cpuset` or `devices`, are left alone).
pub const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "freezer", "blkio"];
/// The v2 controllers ManMan enables for sessions when the unified hierarchy offers them.
pub const V2_CONTROLLERS: [&str; 4] = ["memory", "cpu", "io", "pids"];

/// How the host's cgroups are arranged, as said in the agent's log and on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The unified hierarchy only (current distributions).
    V2,
    /// v1 controllers beside a unified hierarchy without them (systemd's hybrid setup).
    Hybrid,
    /// v1 controllers only.
    V1,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V2 => "v2",
            Mode::Hybrid => "hybrid",
            Mode::V1 => "v1",
        }
    }
}

/// One mounted hierarchy and our place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// v1: the controllers it carries (`cpu`, `cpuacct` when co-mounted); v2: empty.
    pub controllers: Vec<String>,
    /// The directory of the cgroup this process is in.
    pub own_dir: PathBuf,
}

/// The hierarchies of this host, as this process sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub unified: Option<Mounted>,
    /// The v1 hierarchies carrying at least one of [`V1_CONTROLLERS`].
    pub v1: Vec<Mounted>,
}

impl Hierarchies {
    /// This process's hierarchies, from `/proc/self`.
    pub fn of_this_process() -> std::io::Result<Hierarchies> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let membership = std::fs::read_to_string("/proc/self/cgroup")?;
        Ok(Hierarchies::parse(&mountinfo, &membership))
    }

    /// From the text of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn parse(mountinfo: &str, membership: &str) -> Hierarchies {
        let mut found = Hierarchies::default();
        for line in mountinfo.lines() {
            let Some(mount) = Mount::parse(line) else {
                continue;
            };
            if mount.fstype == "cgroup2" {
                if found.unified.is_none() {
                    if let Some(own) = own_path(membership, None) {
                        found.unified = Some(Mounted {
                            controllers: Vec::new(),
                            own_dir: mount.dir_of(own),
                        });
                    }
                }
            } else if mount.fstype == "cgroup" {
                let controllers: Vec<String> = mount
                    .super_options
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_string)
                    .collect();
                let already = found
                    .v1
                    .iter()
                    .any(|m| m.controllers.iter().any(|c| controllers.contains(c)));
                if controllers.is_empty() || already {
                    continue;
                }
                if let Some(own) = own_path(membership, Some(&controllers)) {
                    found.v1.push(Mounted {
                        own_dir: mount.dir_of(own),
                        controllers,
                    });
                }
            }
        }
        found
    }

    pub fn mode(&self) -> Option<Mode> {
        match (&self.unified, self.v1.is_empty()) {
            (Some(_), true) => Some(Mode::V2),
            (Some(_), false) => Some(Mode::Hybrid),
            (None, false) => Some(Mode::V1),
            (None, true) => None,
        }
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_with(&self, controller: &str) -> Option<&Mounted> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }
}

/// A line of `/proc/self/mountinfo`: `id parent maj:min root mountpoint options [optional…] -
/// fstype source super_options`.
struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let (before, after) = line.split_once(" - ")?;
        let mut left = before.split(' ');
        let (root, point) = (left.nth(3)?, left.next()?);
        let mut right = after.split(' ');
        let fstype = right.next()?;
        let super_options = right.nth(1).unwrap_or("");
        Some(Mount {
            root,
            point,
            fstype,
            super_options,
        })
    }

    /// The directory of the cgroup at `path` (as `/proc/self/cgroup` names it) under this
    /// mount, whose own root may be a subdirectory (a cgroup namespace, a container).
    fn dir_of(&self, path: &str) -> PathBuf {
        let relative = path
            .strip_prefix(self.root)
            .unwrap_or(path)
            .trim_start_matches('/');
        Path::new(&unescape(self.point)).join(relative)
    }
}

/// mountinfo escapes spaces and a few other bytes as `\040`-style octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Our path in the hierarchy with these v1 `controllers`, or the unified one (`0::/path`).
fn own_path<'a>(membership: &'a str, controllers: Option<&[String]>) -> Option<&'a str> {
    membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controllers {
            None => id == "0" && list.is_empty(),
            Some(wanted) => list.split(',').any(|c| wanted.iter().any(|w| w == c)),
        };
        matches.then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_MEMBERSHIP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/14e6
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn a_hybrid_host_has_v1_controllers_and_a_unified_hierarchy() {
        let h = Hierarchies::parse(HYBRID_MOUNTS, HYBRID_MEMBERSHIP);
        assert_eq!(h.mode(), Some(Mode::Hybrid));
        assert_eq!(
            h.unified.as_ref().unwrap().own_dir,
            Path::new("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            h.v1_with("memory").unwrap().own_dir,
            Path::new("/sys/fs/cgroup/memory/process_api/14e6")
        );
        assert_eq!(
            h.v1_with("cpu").unwrap().own_dir,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert!(h.v1_with("cpuset").is_none(), "not one we use");
        assert!(h.v1_with("blkio").is_none(), "not mounted");
    }

    #[test]
    fn a_v2_host_under_systemd_and_co_mounted_v1_controllers() {
        let mounts = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let membership = "0::/system.slice/manman-host.service\n";
        let h = Hierarchies::parse(mounts, membership);
        assert_eq!(h.mode(), Some(Mode::V2));
        assert_eq!(
            h.unified.unwrap().own_dir,
            Path::new("/sys/fs/cgroup/system.slice/manman-host.service")
        );
        let v1 = "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Hierarchies::parse(v1, "3:cpu,cpuacct:/user.slice\n");
        assert_eq!(h.mode(), Some(Mode::V1));
        let m = h.v1_with("cpuacct").unwrap();
        assert_eq!(m.controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            m.own_dir,
            Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice")
        );
    }

    #[test]
    fn a_container_sees_its_mount_root_stripped_and_nothing_without_mounts() {
        let mounts = "50 40 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::parse(mounts, "0::/docker/abc/inner\n");
        assert_eq!(
            h.unified.unwrap().own_dir,
            Path::new("/sys/fs/cgroup/inner")
        );
        assert_eq!(Hierarchies::parse("", "").mode(), None);
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
    }

    #[test]
    fn this_machine_has_some_hierarchy() {
        let h = Hierarchies::of_this_process().unwrap();
        assert!(h.mode().is_some(), "{h:?}");
    }
}

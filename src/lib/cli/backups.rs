//! `manman backup create|list|show|pin|unpin|delete|restore`, and the `--backup-*` flags of
//! `config create|update`.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::output::{print, printable, when};
use super::shared::{Ctx, Exit, Failure, Outcome};
use crate::proto::v1 as pb;
use crate::views::{backup_json, restore_json};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Back up a deployment's files to S3 now (the config's pre actions first, if its
    /// session runs). Waits for the end, showing progress, unless --no-wait.
    Create {
        /// Deployment id (see `manman deploy list`).
        deployment: i64,
        /// A note kept with the backup ("before the 1.21 update").
        #[arg(long)]
        note: Option<String>,
        /// Never pruned by retention.
        #[arg(long)]
        pin: bool,
        /// Return once the host has accepted it.
        #[arg(long)]
        no_wait: bool,
    },
    /// List backups, newest first (of one deployment with --deployment).
    List {
        #[arg(long)]
        deployment: Option<i64>,
        /// Most rows to show.
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Show one backup (progress while it runs).
    Show { id: i64 },
    /// Keep a backup whatever the retention says.
    Pin { id: i64 },
    /// Let retention prune it again.
    Unpin { id: i64 },
    /// Delete a backup's archive from S3 (the record stays, `deleted`).
    Delete { id: i64 },
    /// Put a backup back: stops the deployment's session, replaces its directory with the
    /// verified archive (the old one kept as `sgc-N.previous` until the next restore) and
    /// starts the session again. --to restores into another deployment (on any host): how a
    /// server moves.
    Restore {
        id: i64,
        /// The deployment to restore into [default: the backup's own].
        #[arg(long)]
        to: Option<i64>,
        /// Return once the restore is under way.
        #[arg(long)]
        no_wait: bool,
    },
}

/// What a backup of this config takes and how (`config create|update`).
#[derive(Args, Default)]
pub struct BackupFlags {
    /// A path to back up, relative to the deployment's directory, repeatable [default: all].
    #[arg(long = "backup-path", help_heading = "Backups")]
    pub paths: Vec<String>,
    /// A glob to leave out (`logs/**`, `*.tmp`), repeatable.
    #[arg(long = "backup-exclude", help_heading = "Backups")]
    pub excludes: Vec<String>,
    /// A console command sent before the copy while the session runs, repeatable, in order;
    /// `COMMAND=>REGEX` waits for a console line matching REGEX (e.g.
    /// 'save-all flush=>Saved the game'). A wait that times out fails the backup.
    #[arg(long = "backup-pre", help_heading = "Backups")]
    pub pre: Vec<String>,
    /// A console command sent after the copy (also after a failure), e.g. `save-on`.
    #[arg(long = "backup-post", help_heading = "Backups")]
    pub post: Vec<String>,
    /// Seconds each pre/post action waits for its line [default: 60].
    #[arg(long = "backup-wait-timeout", help_heading = "Backups")]
    pub wait_timeout: Option<i32>,
    /// Retention: keep the newest N completed backups (pinned ones on top).
    #[arg(long = "keep-last", help_heading = "Backups")]
    pub keep_last: Option<i32>,
    /// Retention: keep completed backups younger than D days (either rule keeps one).
    #[arg(long = "keep-days", help_heading = "Backups")]
    pub keep_days: Option<i32>,
}

impl BackupFlags {
    pub fn into_policy(self) -> pb::BackupPolicy {
        let action = |spec: String| {
            let (command, wait_for) = match spec.split_once("=>") {
                Some((c, w)) => (c.trim().to_string(), w.trim().to_string()),
                None => (spec, String::new()),
            };
            pb::ConsoleAction {
                command,
                wait_for,
                timeout_seconds: self.wait_timeout,
            }
        };
        pb::BackupPolicy {
            paths: self.paths.clone(),
            excludes: self.excludes.clone(),
            pre: self.pre.iter().cloned().map(action).collect(),
            post: self.post.iter().cloned().map(action).collect(),
            keep_last: self.keep_last,
            keep_days: self.keep_days,
        }
    }
}

const HEADERS: [&str; 8] = [
    "BACKUP",
    "DEPLOYMENT",
    "STATUS",
    "CREATED",
    "SIZE",
    "FILES",
    "PINNED",
    "NOTE/REASON",
];

fn row(b: &pb::Backup) -> Vec<String> {
    vec![
        b.backup_id.to_string(),
        b.sgc_id.to_string(),
        b.status.clone(),
        when(b.created_at_ms),
        if b.size_bytes > 0 {
            bytes(b.size_bytes)
        } else {
            "-".into()
        },
        if b.file_count > 0 {
            b.file_count.to_string()
        } else {
            "-".into()
        },
        if b.pinned { "yes".into() } else { "".into() },
        if b.reason.is_empty() {
            b.note.clone()
        } else {
            b.reason.clone()
        },
    ]
}

/// 1536 → "1.5 KiB".
fn bytes(n: i64) -> String {
    let mut v = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{n} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    unreachable!()
}

fn get(ctx: &Ctx, id: i64) -> Result<pb::Backup, Failure> {
    Ok(ctx
        .client
        .get_backup_opt(&pb::GetBackupRequest { backup_id: id }, ctx.opt())?
        .backup
        .unwrap_or_default())
}

fn show(ctx: &Ctx, b: &pb::Backup) {
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&backup_json(b)).expect("serialisable")
        );
        return;
    }
    println!(
        "backup {} of deployment {} (host {}): {}",
        b.backup_id, b.sgc_id, b.server_id, b.status
    );
    if !b.note.is_empty() {
        println!("  note: {}", printable(&b.note));
    }
    if b.status == "running" || b.status == "pending" {
        println!("  progress: {}", progress(b));
    }
    if b.size_bytes > 0 {
        println!(
            "  archive: {} ({} files of {}), sha256 {}",
            bytes(b.size_bytes),
            b.file_count,
            bytes(b.bytes_total),
            b.sha256
        );
        println!("  s3 key: {}", b.s3_key);
    }
    println!(
        "  created {}, ended {}",
        when(b.created_at_ms),
        when(b.ended_at_ms)
    );
    if b.ended_at_ms > 0 && b.started_at_ms > 0 {
        println!(
            "  took {:.1} s",
            (b.ended_at_ms - b.started_at_ms) as f64 / 1000.0
        );
    }
    if b.paused_ms > 0 {
        let read_from = if b.snapshot {
            "while a copy-on-write snapshot was taken"
        } else {
            "while the files were read"
        };
        println!(
            "  game saves paused {:.1} s, {read_from}",
            b.paused_ms as f64 / 1000.0
        );
    } else if b.snapshot {
        println!("  read from a copy-on-write snapshot");
    }
    if b.pinned {
        println!("  pinned: retention keeps it");
    }
    if !b.reason.is_empty() {
        println!("  reason: {}", printable(&b.reason));
    }
}

fn progress(b: &pb::Backup) -> String {
    match b.bytes_total {
        0 => format!("{} read", bytes(b.bytes_done)),
        total => format!(
            "{} of {} ({:.0} %)",
            bytes(b.bytes_done),
            bytes(total),
            b.bytes_done as f64 * 100.0 / total as f64
        ),
    }
}

pub fn run(ctx: &Ctx, cmd: BackupCmd) -> Outcome {
    match cmd {
        BackupCmd::Create {
            deployment,
            note,
            pin,
            no_wait,
        } => {
            let request = pb::CreateBackupRequest {
                sgc_id: deployment,
                note: note.unwrap_or_default(),
                pinned: pin,
            };
            let b = ctx
                .client
                .create_backup_opt(&request, ctx.opt_for(Duration::from_secs(60)))?
                .backup
                .unwrap_or_default();
            if no_wait {
                show(ctx, &b);
                return Ok(());
            }
            let b = follow(ctx, b)?;
            show(ctx, &b);
            match b.status.as_str() {
                "completed" => Ok(()),
                _ => Err(Failure::new(
                    Exit::Failed,
                    format!("backup {} {}: {}", b.backup_id, b.status, b.reason),
                )),
            }
        }
        BackupCmd::List { deployment, limit } => {
            let r = ctx.client.list_backups_opt(
                &pb::ListBackupsRequest {
                    sgc_id: deployment.unwrap_or(0),
                    page_after: 0,
                    page_size: limit,
                },
                ctx.opt(),
            )?;
            let items = r.backups.iter().map(backup_json).collect();
            let rows = r.backups.iter().map(row).collect();
            print(ctx, items, &HEADERS, rows);
            Ok(())
        }
        BackupCmd::Show { id } => {
            show(ctx, &get(ctx, id)?);
            Ok(())
        }
        BackupCmd::Pin { id } | BackupCmd::Unpin { id } => {
            let pinned = matches!(cmd, BackupCmd::Pin { .. });
            let b = ctx
                .client
                .pin_backup_opt(
                    &pb::PinBackupRequest {
                        backup_id: id,
                        pinned,
                    },
                    ctx.opt(),
                )?
                .backup
                .unwrap_or_default();
            show(ctx, &b);
            Ok(())
        }
        BackupCmd::Delete { id } => {
            let b = ctx
                .client
                .delete_backup_opt(
                    &pb::DeleteBackupRequest { backup_id: id },
                    ctx.opt_for(Duration::from_secs(60)),
                )?
                .backup
                .unwrap_or_default();
            show(ctx, &b);
            Ok(())
        }
        BackupCmd::Restore { id, to, no_wait } => restore(ctx, id, to.unwrap_or(0), no_wait),
    }
}

/// Polls a running backup, printing its progress on stderr, until it has ended.
fn follow(ctx: &Ctx, mut b: pb::Backup) -> Result<pb::Backup, Failure> {
    let mut last = String::new();
    while b.status == "pending" || b.status == "running" {
        let now = progress(&b);
        if !ctx.json && now != last {
            eprintln!("backup {}: {}", b.backup_id, now);
            last = now;
        }
        std::thread::sleep(Duration::from_millis(500));
        b = get(ctx, b.backup_id)?;
    }
    Ok(b)
}

fn restore(ctx: &Ctx, id: i64, to: i64, no_wait: bool) -> Outcome {
    let started = Instant::now();
    let mut r = ctx
        .client
        .restore_backup_opt(
            &pb::RestoreBackupRequest {
                backup_id: id,
                to_sgc_id: to,
            },
            ctx.opt(),
        )?
        .restore
        .unwrap_or_default();
    let mut last = String::new();
    while !no_wait && (r.status == "stopping" || r.status == "restoring") {
        if !ctx.json && r.status != last {
            eprintln!("restore {}: {}", r.restore_id, r.status);
            last = r.status.clone();
        }
        std::thread::sleep(Duration::from_millis(500));
        r = ctx
            .client
            .get_restore_opt(
                &pb::GetRestoreRequest {
                    restore_id: r.restore_id,
                },
                ctx.opt(),
            )?
            .restore
            .unwrap_or_default();
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&restore_json(&r)).expect("serialisable")
        );
    } else {
        println!(
            "restore {} of backup {} into deployment {}: {} after {:.1} s{}",
            r.restore_id,
            r.backup_id,
            r.sgc_id,
            r.status,
            started.elapsed().as_secs_f64(),
            match r.started_session_id {
                0 => String::new(),
                s => format!("; started session {s}"),
            }
        );
        if !r.reason.is_empty() {
            println!("  reason: {}", printable(&r.reason));
        }
    }
    match r.status.as_str() {
        "failed" => Err(Failure::new(
            Exit::Failed,
            format!("restore {} failed: {}", r.restore_id, r.reason),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_wait_for_the_line_after_the_arrow() {
        let flags = BackupFlags {
            pre: vec!["save-off".into(), "save-all flush => Saved the game".into()],
            post: vec!["save-on".into()],
            wait_timeout: Some(30),
            keep_last: Some(3),
            ..BackupFlags::default()
        };
        let p = flags.into_policy();
        assert_eq!(p.pre[0].command, "save-off");
        assert_eq!(p.pre[0].wait_for, "");
        assert_eq!(
            (p.pre[1].command.as_str(), p.pre[1].wait_for.as_str()),
            ("save-all flush", "Saved the game")
        );
        assert_eq!(p.pre[1].timeout_seconds, Some(30));
        assert_eq!(p.keep_last, Some(3));
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12), "12 B");
    }
}

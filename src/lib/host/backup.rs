//! The agent's backups and restores, each in a thread of its own. A backup sends the config's
//! pre actions to the running game (waiting for their lines), streams the deployment's files
//! as a zstd tar straight into the multipart upload the API opened (one uploader thread PUTs
//! each part to its pre-signed URL while the next is written; nothing is staged on disk),
//! sends the post actions (always, also after a failure), uploads the manifest and reports
//! the result. A restore downloads the manifest and streams the archive into a fresh directory
//! beside the deployment's, verified file by file, and swaps it in.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use manman_backup::{
    extract_verified, swap_into_place, write_archive, ArchiveHooks, Manifest, Part, PartWriter,
    Selection,
};
use regex::Regex;

use super::line_watch::LineWatchers;
use super::sessions::process_name;
use crate::procman::Manager;
use crate::proto::v1 as pb;
use crate::retry::Backoff;
use crate::wire::backup::{ConsoleAction, CreateBackup, RestoreBackup};

/// Parts waiting for the uploader: memory holds this + 3 parts (one being written, one being
/// sent, one handed back), 32 MiB with the default 8 MiB parts, for any archive up to 8 GiB.
const QUEUED_PARTS: usize = 1;
/// Part URLs asked for at a time once the command's run out.
const MORE_URLS: i32 = 64;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// A manifest larger than this is refused (20,000 files take about 4 MiB).
const MAX_MANIFEST: u64 = 512 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Tries for each request that may simply be repeated (a part, a report).
fn requests() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5), 2.0)
}

/// One request to S3, tried again while the failure is the network's or the server's (5xx);
/// a 4xx (an expired or refused URL) is final, with what S3 said.
fn http(
    request: impl Fn() -> ureq::Request,
    body: Option<&[u8]>,
) -> Result<ureq::Response, Failure> {
    let tried = requests().retry(5, |_| {
        let sent = match body {
            Some(bytes) => request().send_bytes(bytes),
            None => request().call(),
        };
        match sent {
            Ok(r) => Ok(Ok(r)),
            Err(ureq::Error::Status(code, r)) if code < 500 => {
                let body = r.into_string().unwrap_or_default();
                Ok(Err(format!(
                    "HTTP {code}: {}",
                    body.chars().take(300).collect::<String>()
                )))
            }
            Err(e) => Err(Box::new(e)),
        }
    });
    match tried {
        Ok(answer) => answer,
        Err(e) => Err(e.to_string()),
    }
}

pub struct Backups {
    pub manager: Arc<Manager>,
    pub data_dir: PathBuf,
    pub api: pb::ManManApiClient,
    pub credential: String,
    pub watchers: Arc<LineWatchers>,
    /// Deployments with a backup or restore under way here: one at a time each.
    busy: Mutex<HashSet<i64>>,
    http: ureq::Agent,
}

/// Why a backup or restore did not succeed (the text the operator reads in `backup show`).
type Failure = String;

impl Backups {
    pub fn new(
        manager: Arc<Manager>,
        data_dir: PathBuf,
        api: pb::ManManApiClient,
        credential: String,
        watchers: Arc<LineWatchers>,
    ) -> Backups {
        Backups {
            manager,
            data_dir,
            api,
            credential,
            watchers,
            busy: Mutex::new(HashSet::new()),
            http: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(HTTP_TIMEOUT)
                .timeout_write(HTTP_TIMEOUT)
                .build(),
        }
    }

    fn call(&self) -> grpcio::CallOption {
        crate::grpc::call_option(Some(&self.credential), Duration::from_secs(30))
    }

    fn deployment_dir(&self, sgc_id: i64) -> PathBuf {
        self.data_dir.join(format!("sgc-{sgc_id}"))
    }

    /// Runs `work` in a thread of its own for `sgc_id`, refused while another is under way.
    fn spawn(
        self: &Arc<Self>,
        sgc_id: i64,
        name: String,
        work: impl FnOnce(&Backups) + Send + 'static,
    ) -> Result<(), Failure> {
        if !crate::sync::lock(&self.busy).insert(sgc_id) {
            return Err(format!(
                "deployment {sgc_id} has a backup or restore under way on this host"
            ));
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                work(&me);
                crate::sync::lock(&me.busy).remove(&sgc_id);
            })
            .map(|_| ())
            .map_err(|e| {
                crate::sync::lock(&self.busy).remove(&sgc_id);
                format!("cannot start a thread: {e}")
            })
    }

    /// Accepts the backup (checked again here: the host trusts no command blindly) and runs it.
    pub fn start_backup(self: &Arc<Self>, cmd: CreateBackup) -> Result<(), Failure> {
        cmd.policy.validate()?;
        if !(5 << 20..=512 << 20).contains(&cmd.part_size) || cmd.part_urls.is_empty() {
            return Err("a part is 5 .. 512 MiB and the command carries part URLs".into());
        }
        let name = format!("backup-{}", cmd.backup_id);
        self.spawn(cmd.sgc_id, name, move |me| me.run_backup(cmd))
    }

    pub fn start_restore(self: &Arc<Self>, cmd: RestoreBackup) -> Result<(), Failure> {
        let name = format!("restore-{}", cmd.restore_id);
        self.spawn(cmd.sgc_id, name, move |me| {
            let result = me.restore(&cmd);
            if let Err(e) = &result {
                log::warn!(restore_id = cmd.restore_id; "restore failed: {e}");
            } else {
                log::info!(restore_id = cmd.restore_id, sgc_id = cmd.sgc_id; "restored");
            }
            let request = pb::FinishRestoreRequest {
                restore_id: cmd.restore_id,
                ok: result.is_ok(),
                reason: result.err().unwrap_or_default(),
            };
            let sent = requests().retry(10, |_| me.api.finish_restore_opt(&request, me.call()));
            if let Err(e) = sent {
                log::warn!(restore_id = cmd.restore_id; "result not reported: {e}");
            }
        })
    }

    fn is_live(&self, session_id: i64) -> bool {
        self.manager
            .status(&process_name(session_id))
            .is_ok_and(|s| s.state.is_live())
    }

    fn run_backup(&self, cmd: CreateBackup) {
        let id = cmd.backup_id;
        let session = cmd.session_id.filter(|s| self.is_live(*s));
        log::info!(backup_id = id, sgc_id = cmd.sgc_id, live = session.is_some(); "backup started");
        let mut failure = None;
        if let Some(session_id) = session {
            for (i, action) in cmd.policy.pre.iter().enumerate() {
                if let Err(e) = self.act(session_id, action) {
                    failure = Some(format!("pre action {} ({:?}): {e}", i + 1, action.command));
                    break;
                }
            }
        }
        let paused = Instant::now();
        let reading = match failure {
            Some(f) => Err(f),
            None => self.read_into_upload(&cmd, session),
        };
        // The post actions go as soon as the files are read (the game saves again while the
        // last parts upload), also when the copy or a pre action failed.
        let paused_ms = paused.elapsed().as_millis() as i64;
        if let Some(session_id) = session.filter(|s| self.is_live(*s)) {
            for (i, action) in cmd.policy.post.iter().enumerate() {
                if let Err(e) = self.act(session_id, action) {
                    log::warn!(backup_id = id; "post action {} ({:?}): {e}", i + 1, action.command);
                }
            }
        }
        let copied = reading.and_then(|reading| self.finish_upload(&cmd, reading));
        let request = match copied {
            Ok(done) => pb::FinishBackupRequest {
                // Only a running game with pre actions was paused.
                paused_ms: if session.is_some() && !cmd.policy.pre.is_empty() {
                    paused_ms
                } else {
                    0
                },
                ..done
            },
            Err(reason) => {
                log::warn!(backup_id = id; "backup failed: {reason}");
                pb::FinishBackupRequest {
                    backup_id: id,
                    ok: false,
                    reason,
                    ..Default::default()
                }
            }
        };
        match requests().retry(10, |_| self.api.finish_backup_opt(&request, self.call())) {
            Ok(_) => log::info!(backup_id = id, ok = request.ok; "backup reported"),
            Err(e) => log::warn!(backup_id = id; "backup result not reported: {e}"),
        }
    }

    /// Sends one console command and waits for its line, if it has one to wait for.
    fn act(&self, session_id: i64, action: &ConsoleAction) -> Result<(), Failure> {
        let watch = match &action.wait_for {
            Some(p) => {
                let pattern = Regex::new(p).map_err(|e| format!("wait_for: {e}"))?;
                Some(self.watchers.watch(session_id, pattern))
            }
            None => None,
        };
        self.manager
            .send_input(
                &process_name(session_id),
                format!("{}\n", action.command).as_bytes(),
            )
            .map_err(|e| format!("not sent: {}", crate::errors::chain(&e)))?;
        let Some(watch) = watch else { return Ok(()) };
        // Waited in slices: a session that stops meanwhile ends the wait (a stop wins).
        let until = Instant::now() + action.timeout();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no console line matching {:?} within {} s",
                    action.wait_for.as_deref().unwrap_or_default(),
                    action.timeout().as_secs()
                ));
            }
            if watch.wait(left.min(Duration::from_millis(250))).is_some() {
                return Ok(());
            }
            if !self.is_live(session_id) {
                return Err(format!("session {session_id} stopped during the backup"));
            }
        }
    }

    /// The archive streamed into the upload, the manifest beside it: the finished report.
    /// Reads the selected files into the upload: returns once every file is read (the last
    /// parts may still be on their way), with what [`finish_upload`](Self::finish_upload)
    /// needs.
    fn read_into_upload(
        &self,
        cmd: &CreateBackup,
        session: Option<i64>,
    ) -> Result<Reading, Failure> {
        let started = Instant::now();
        let root = self.deployment_dir(cmd.sgc_id);
        if !root.is_dir() {
            return Err(format!(
                "deployment {} has no directory on this host ({}): nothing to back up",
                cmd.sgc_id,
                root.display()
            ));
        }
        let selection = Selection::new(&cmd.policy.paths, &cmd.policy.excludes)
            .map_err(|e| crate::errors::chain(&e))?;
        let (parts_tx, parts_rx) = crossbeam_channel::bounded::<Part>(QUEUED_PARTS);
        let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<Vec<u8>>(QUEUED_PARTS + 1);
        let uploader = {
            let urls = cmd.part_urls.clone();
            let (http, api, call, id) = (
                self.http.clone(),
                self.api.clone(),
                self.call(),
                cmd.backup_id,
            );
            std::thread::Builder::new()
                .name(format!("upload-{id}"))
                .spawn(move || upload_parts(&http, &api, &call, id, urls, parts_rx, recycle_tx))
                .map_err(|e| format!("cannot start the uploader: {e}"))?
        };
        let mut hooks = Progress {
            backups: self,
            backup_id: cmd.backup_id,
            session,
            total: 0,
            last_report: Instant::now(),
            ended_by_api: false,
        };
        let writer = PartWriter::new(cmd.part_size as usize, parts_tx).recycling(recycle_rx);
        let archived = write_archive(&root, &selection, writer, &mut hooks)
            .map_err(|e| crate::errors::chain(&e))
            .and_then(|(writer, summary)| {
                let written = writer
                    .finish()
                    .map_err(|e| format!("writing the last part: {e}"))?;
                Ok((written, summary))
            });
        Ok(Reading {
            started,
            archived,
            uploader,
        })
    }

    /// Waits for the last parts, uploads the manifest: the finished report.
    fn finish_upload(
        &self,
        cmd: &CreateBackup,
        reading: Reading,
    ) -> Result<pb::FinishBackupRequest, Failure> {
        // The writer (and with it the channel) is gone: the uploader ends either way.
        let uploaded = reading
            .uploader
            .join()
            .unwrap_or_else(|_| Err("the uploader panicked".into()));
        let ((written, summary), (parts, sha256)) = match (reading.archived, uploaded) {
            (Ok(a), Ok(uploaded)) => (a, uploaded),
            // An upload failure shows in the archive only as a closed pipe: its own reason
            // is the one worth reading.
            (_, Err(upload)) => return Err(upload),
            (Err(archive), _) => return Err(archive),
        };
        let manifest = summary.manifest.to_json();
        http(
            || {
                self.http
                    .put(&cmd.manifest_url)
                    .set("Content-Type", "application/json")
            },
            Some(&manifest),
        )
        .map_err(|e| format!("uploading the manifest: {e}"))?;
        if !summary.missing.is_empty() {
            log::warn!(backup_id = cmd.backup_id; "configured paths not found: {}", summary.missing.join(", "));
        }
        if !summary.skipped.is_empty() {
            log::info!(backup_id = cmd.backup_id; "skipped {} entries that are not files, directories or links", summary.skipped.len());
        }
        log::info!(backup_id = cmd.backup_id, bytes = written.bytes, files = summary.manifest.files(),
            seconds = reading.started.elapsed().as_secs_f64(); "archive uploaded");
        Ok(pb::FinishBackupRequest {
            backup_id: cmd.backup_id,
            ok: true,
            reason: String::new(),
            parts: parts
                .into_iter()
                .map(|(number, etag)| pb::UploadedPart {
                    number: number as i32,
                    etag,
                })
                .collect(),
            size_bytes: written.bytes as i64,
            file_count: summary.manifest.files() as i32,
            sha256,
            bytes_total: summary.manifest.content_bytes() as i64,
            paused_ms: 0,
        })
    }

    fn restore(&self, cmd: &RestoreBackup) -> Result<(), Failure> {
        let get =
            |url: &str| http(|| self.http.get(url), None).map_err(|e| format!("downloading: {e}"));
        let mut manifest = Vec::new();
        get(&cmd.manifest_url)?
            .into_reader()
            .take(MAX_MANIFEST)
            .read_to_end(&mut manifest)
            .map_err(|e| format!("downloading the manifest: {e}"))?;
        let manifest = Manifest::from_json(&manifest).map_err(|e| crate::errors::chain(&e))?;
        let live = self.deployment_dir(cmd.sgc_id);
        let fresh = self.data_dir.join(format!("sgc-{}.restoring", cmd.sgc_id));
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh)
                .map_err(|e| format!("removing {}: {e}", fresh.display()))?;
        }
        let archive = get(&cmd.archive_url)?.into_reader();
        let extracted = extract_verified(archive, &fresh, &manifest, &mut |_| {});
        if let Err(e) = extracted {
            let _ = std::fs::remove_dir_all(&fresh);
            return Err(crate::errors::chain(&e));
        }
        swap_into_place(&fresh, &live).map_err(|e| crate::errors::chain(&e))?;
        Ok(())
    }
}

/// A backup whose files are read: the archive's outcome and the uploader still finishing.
struct Reading {
    started: Instant,
    archived: Result<(manman_backup::Written, manman_backup::ArchiveSummary), Failure>,
    uploader: std::thread::JoinHandle<Result<Uploaded, Failure>>,
}

/// What the uploader sent: each part's number and ETag, and the archive's SHA-256.
type Uploaded = (Vec<(u32, String)>, String);

/// A running archive's hooks: progress to the API every few seconds, and the reasons to stop
/// (the session ended under the backup, or the API ended the backup).
struct Progress<'a> {
    backups: &'a Backups,
    backup_id: i64,
    session: Option<i64>,
    total: u64,
    last_report: Instant,
    ended_by_api: bool,
}

impl Progress<'_> {
    fn report(&mut self, done: u64) {
        self.last_report = Instant::now();
        let request = pb::ReportBackupProgressRequest {
            backup_id: self.backup_id,
            bytes_done: done as i64,
            bytes_total: self.total as i64,
        };
        match self
            .backups
            .api
            .report_backup_progress_opt(&request, self.backups.call())
        {
            Ok(_) => {}
            Err(grpcio::Error::RpcFailure(s))
                if s.code() == grpcio::RpcStatusCode::FAILED_PRECONDITION =>
            {
                self.ended_by_api = true;
            }
            // Progress is news, not state: a missed report is not worth stopping for.
            Err(e) => log::debug!(backup_id = self.backup_id; "progress not reported: {e}"),
        }
    }
}

impl ArchiveHooks for Progress<'_> {
    fn planned(&mut self, _files: usize, bytes: u64) {
        self.total = bytes;
        self.report(0);
    }

    fn progress(&mut self, done: u64) {
        if self.last_report.elapsed() >= PROGRESS_EVERY {
            self.report(done);
        }
    }

    fn stop_reason(&mut self) -> Option<String> {
        if self.ended_by_api {
            return Some("the API ended this backup (its deadline passed)".into());
        }
        // A stop wins over a backup: the game's files change under it as it saves and exits.
        match self.session {
            Some(s) if !self.backups.is_live(s) => {
                Some(format!("session {s} stopped during the backup"))
            }
            _ => None,
        }
    }
}

/// The uploader thread: each part PUT to its pre-signed URL (more URLs asked of the API as
/// needed), each tried a few times, hashed on the way (the archive's SHA-256, here beside the
/// writer's thread rather than in it), and its buffer handed back to the writer. Returns the
/// parts' numbers and ETags, for the API to join, and the archive's SHA-256.
fn upload_parts(
    http: &ureq::Agent,
    api: &pb::ManManApiClient,
    call: &grpcio::CallOption,
    backup_id: i64,
    mut urls: Vec<String>,
    parts: Receiver<Part>,
    recycle: crossbeam_channel::Sender<Vec<u8>>,
) -> Result<Uploaded, Failure> {
    use sha2::Digest;
    let mut archive = sha2::Sha256::new();
    let mut done = Vec::new();
    for part in parts {
        archive.update(&part.bytes);
        while urls.len() < part.number as usize {
            let request = pb::PresignBackupPartsRequest {
                backup_id,
                first_part: urls.len() as i32 + 1,
                count: MORE_URLS,
            };
            let more = requests()
                .retry(5, |_| api.presign_backup_parts_opt(&request, call.clone()))
                .map_err(|e| format!("no more part URLs from the API: {e}"))?;
            if more.urls.is_empty() {
                return Err("the API gave no more part URLs".into());
            }
            urls.extend(more.urls);
        }
        let url = &urls[part.number as usize - 1];
        let response = self::http(|| http.put(url), Some(&part.bytes))
            .map_err(|e| format!("uploading part {}: {e}", part.number))?;
        let etag = response
            .header("ETag")
            .ok_or_else(|| format!("S3 gave part {} no ETag", part.number))?
            .to_string();
        done.push((part.number, etag));
        let _ = recycle.try_send(part.bytes);
    }
    Ok((done, hex::encode(archive.finalize())))
}

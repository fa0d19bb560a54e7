//! The agent's backups and restores, each in a thread of its own. A backup sends the config's
//! pre actions to the running game (waiting for their lines), streams the deployment's files
//! as a zstd tar straight into the multipart upload the API opened (two uploader threads PUT
//! parts to their pre-signed URLs while the next is written; nothing is staged on disk),
//! sends the post actions (always, also after a failure), uploads the manifest and reports
//! the result. A restore downloads the manifest and streams the archive into a fresh directory
//! beside the deployment's, verified file by file, and swaps it in.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use manman_backup::{
    extract_verified, remove_tree, swap_into_place, take_snapshot, write_archive, ArchiveHooks,
    Manifest, Part, PartWriter, PartsDigest, Selection, Snapshot, Snapshotted,
};
use regex::Regex;

use super::line_watch::LineWatchers;
use super::sessions::process_name;
use crate::procman::Manager;
use crate::proto::v1 as pb;
use crate::retry::Backoff;
use crate::wire::backup::{ConsoleAction, CreateBackup, RestoreBackup};

/// Parts waiting for an uploader: none (the writer hands its full part to a free uploader), so
/// memory holds UPLOADERS + 2 parts (one being written, one being sent by each uploader, one
/// handed back), 32 MiB with the default 8 MiB parts, for any archive up to 8 GiB.
const QUEUED_PARTS: usize = 0;
/// Parts sent side by side: one request's latency (S3 answers each part only once it has it
/// all) no longer idles the link between parts.
const UPLOADERS: usize = 2;
/// Part URLs asked for at a time once the command's run out.
const MORE_URLS: i32 = 64;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// A manifest larger than this is refused (20,000 files take about 4 MiB).
const MAX_MANIFEST: u64 = 512 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// A deployment's snapshot is `sgc-N.snapshot` beside its directory `sgc-N`.
const SNAPSHOT_SUFFIX: &str = ".snapshot";

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
        let live_dir = self.deployment_dir(cmd.sgc_id);
        // A running game's files are snapshotted where the filesystem can (its saves resume
        // as soon as the snapshot is taken); else they are read live with the saves paused.
        let snapshot = match (&failure, session) {
            (None, Some(_)) => self.snapshot(&cmd, &live_dir),
            _ => None,
        };
        let mut paused_ms = 0;
        let post_actions = |paused_ms: &mut i64| {
            *paused_ms = paused.elapsed().as_millis() as i64;
            if let Some(session_id) = session.filter(|s| self.is_live(*s)) {
                for (i, action) in cmd.policy.post.iter().enumerate() {
                    if let Err(e) = self.act(session_id, action) {
                        log::warn!(backup_id = id; "post action {} ({:?}): {e}", i + 1, action.command);
                    }
                }
            }
        };
        let reading = match (failure, &snapshot) {
            (Some(f), _) => {
                post_actions(&mut paused_ms);
                Err(f)
            }
            (None, Some(snapshot)) => {
                post_actions(&mut paused_ms);
                // The snapshot does not change when the game stops: nothing to stop for.
                self.read_into_upload(&cmd, None, snapshot.dir())
            }
            (None, None) => {
                let reading = self.read_into_upload(&cmd, session, &live_dir);
                // The post actions go as soon as the files are read (the game saves again
                // while the last parts upload), also when the copy failed.
                post_actions(&mut paused_ms);
                reading
            }
        };
        let snapshot_taken = snapshot.is_some();
        drop(snapshot);
        let copied = reading.and_then(|reading| self.finish_upload(&cmd, reading));
        let request = match copied {
            Ok(done) => pb::FinishBackupRequest {
                // Only a running game with pre actions was paused.
                paused_ms: if session.is_some() && !cmd.policy.pre.is_empty() {
                    paused_ms
                } else {
                    0
                },
                snapshot: snapshot_taken,
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

    /// A copy-on-write snapshot of the deployment's selected files beside its directory, or
    /// None where the filesystem cannot take one (the reason is logged once per backup).
    fn snapshot(&self, cmd: &CreateBackup, live_dir: &Path) -> Option<Snapshot> {
        let dir = self.snapshot_dir(cmd.sgc_id);
        let taken = Selection::new(&cmd.policy.paths, &cmd.policy.excludes)
            .map_err(|e| crate::errors::chain(&e))
            .and_then(|selection| {
                remove_tree(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
                take_snapshot(live_dir, &selection, &dir).map_err(|e| crate::errors::chain(&e))
            });
        match taken {
            Ok(Snapshotted::Taken(snapshot)) => {
                log::info!(backup_id = cmd.backup_id, files = snapshot.files(); "snapshot taken");
                Some(snapshot)
            }
            Ok(Snapshotted::Unsupported(why)) => {
                log::info!(backup_id = cmd.backup_id; "no snapshot ({why}): the saves stay paused while the files are read");
                None
            }
            Err(why) => {
                log::warn!(backup_id = cmd.backup_id; "no snapshot ({why}): the saves stay paused while the files are read");
                let _ = remove_tree(&dir);
                None
            }
        }
    }

    fn snapshot_dir(&self, sgc_id: i64) -> PathBuf {
        self.data_dir.join(format!("sgc-{sgc_id}{SNAPSHOT_SUFFIX}"))
    }

    /// Removes the snapshots an earlier agent left (killed during a backup): at start, before
    /// any backup runs.
    pub fn remove_left_snapshots(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("sgc-") && name.ends_with(SNAPSHOT_SUFFIX) {
                match remove_tree(&entry.path()) {
                    Ok(()) => log::info!("removed the snapshot {name} an earlier agent left"),
                    Err(e) => log::warn!("snapshot {name} not removed: {e}"),
                }
            }
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
        root: &Path,
    ) -> Result<Reading, Failure> {
        let started = Instant::now();
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
        let shared = Arc::new(Uploaders {
            http: self.http.clone(),
            api: self.api.clone(),
            call: self.call(),
            backup_id: cmd.backup_id,
            urls: Mutex::new(cmd.part_urls.clone()),
            digest: PartsDigest::default(),
            failed: AtomicBool::new(false),
        });
        let mut uploaders = Vec::with_capacity(UPLOADERS);
        for i in 0..UPLOADERS {
            let (me, parts, recycle) = (shared.clone(), parts_rx.clone(), recycle_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("upload-{}-{i}", cmd.backup_id))
                .spawn(move || me.upload(parts, recycle))
                .map_err(|e| format!("cannot start an uploader: {e}"))?;
            uploaders.push(thread);
        }
        drop(parts_rx);
        let uploader = UploadThreads {
            shared,
            threads: uploaders,
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
        let archived = write_archive(root, &selection, writer, &mut hooks)
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
        // The writer (and with it the channel) is gone: the uploaders end either way.
        let uploaded = reading.uploader.join();
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
            snapshot: false,
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
    uploader: UploadThreads,
}

/// Each part's number and ETag, for the API to join.
type SentParts = Vec<(u32, String)>;
/// What the uploaders sent: each part's number and ETag in order, and the archive's SHA-256.
type Uploaded = (SentParts, String);

/// The uploader threads of one backup.
struct UploadThreads {
    shared: Arc<Uploaders>,
    threads: Vec<std::thread::JoinHandle<Result<SentParts, Failure>>>,
}

impl UploadThreads {
    /// Waits for every uploader: the parts in order and the digest, or the first failure.
    fn join(self) -> Result<Uploaded, Failure> {
        let mut parts = Vec::new();
        let mut failure = None;
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(sent)) => parts.extend(sent),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => failure = failure.or(Some("an uploader panicked".into())),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        parts.sort_unstable_by_key(|p| p.0);
        let shared = Arc::into_inner(self.shared)
            .ok_or_else(|| Failure::from("the uploaders' state is still shared"))?;
        Ok((parts, shared.digest.finish()))
    }
}

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

/// What the uploaders share: the part URLs (more asked of the API as needed), the archive's
/// digest taken in part order, and whether one of them has failed (the others stop then).
struct Uploaders {
    http: ureq::Agent,
    api: pb::ManManApiClient,
    call: grpcio::CallOption,
    backup_id: i64,
    urls: Mutex<Vec<String>>,
    digest: PartsDigest,
    failed: AtomicBool,
}

impl Uploaders {
    /// The URL of part `number`, asking the API for more once the command's have run out.
    fn url(&self, number: u32) -> Result<String, Failure> {
        let mut urls = crate::sync::lock(&self.urls);
        while urls.len() < number as usize {
            let request = pb::PresignBackupPartsRequest {
                backup_id: self.backup_id,
                first_part: urls.len() as i32 + 1,
                count: MORE_URLS,
            };
            let more = requests()
                .retry(5, |_| {
                    self.api
                        .presign_backup_parts_opt(&request, self.call.clone())
                })
                .map_err(|e| format!("no more part URLs from the API: {e}"))?;
            if more.urls.is_empty() {
                return Err("the API gave no more part URLs".into());
            }
            urls.extend(more.urls);
        }
        Ok(urls[number as usize - 1].clone())
    }

    /// One uploader thread: each part it takes hashed in its turn, PUT to its pre-signed URL
    /// (tried a few times) and its buffer handed back to the writer. Returns the parts' numbers
    /// and ETags, for the API to join.
    fn upload(
        &self,
        parts: Receiver<Part>,
        recycle: crossbeam_channel::Sender<Vec<u8>>,
    ) -> Result<SentParts, Failure> {
        let mut done = Vec::new();
        for part in parts {
            self.digest.add(&part);
            if self.failed.load(Ordering::Relaxed) {
                return Ok(done);
            }
            let sent = self.url(part.number).and_then(|url| {
                let response = http(|| self.http.put(&url), Some(&part.bytes))
                    .map_err(|e| format!("uploading part {}: {e}", part.number))?;
                response
                    .header("ETag")
                    .map(str::to_string)
                    .ok_or_else(|| format!("S3 gave part {} no ETag", part.number))
            });
            match sent {
                Ok(etag) => done.push((part.number, etag)),
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            let _ = recycle.try_send(part.bytes);
        }
        Ok(done)
    }
}

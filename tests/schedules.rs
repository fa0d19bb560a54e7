//! Schedules end to end: a cron firing claimed by one of two API replicas exactly once (and by
//! the one left when the other is gone), steps run in order with their waits and a restart, a
//! failed step announced as `manman.schedule.failed` (or passed over when it may fail), missed
//! firings skipped once, and bad schedules refused.

mod support;

use std::time::Duration;

use support::stack::*;
use support::*;

fn runs(s: &Stack, schedule: &serde_json::Value) -> Vec<serde_json::Value> {
    let id = schedule["schedule_id"].to_string();
    s.cli_json(&["schedule", "show", &id])["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Makes `schedule_id` due `ago` (an SQL interval) ago, as if its time had come (or passed
/// while no API ran).
fn make_due(s: &Stack, schedule_id: i64, ago: &str) {
    s.db.client()
        .execute(
            "UPDATE schedules SET next_run_at = now() - $2::text::interval WHERE schedule_id = $1",
            &[&schedule_id, &ago],
        )
        .unwrap();
}

fn running_game(s: &Stack, name: &str) -> (i64, i64) {
    let sgc = s.deploy_test_game(name, manman::testkit::free_port());
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    (sgc, session)
}

/// Lines the game echoed (`echo: …`) for `session` that start with `prefix`, from the
/// database's log references is not needed: the collector sees the live console.
fn count_echoes(logs: &Collector, session: i64, line: &str, quiet: Duration) -> usize {
    logs.drain(quiet)
        .iter()
        .filter(|l| l.body["session_id"] == session && l.body["message"].as_str() == Some(line))
        .count()
}

#[test]
fn a_firing_runs_once_with_two_api_replicas_and_once_after_one_is_killed() {
    let s = Stack::start();
    // A second API replica, a process of its own on the same database and broker.
    let health = manman::testkit::free_port();
    // Ended with the test whatever happens (the guard the agent processes use).
    let mut second = Agent(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_manman-api"))
            .env("DATABASE_URL", s.db.url())
            .env("RABBITMQ_URL", s.vhost.url())
            .env("GRPC_PORT", manman::testkit::free_port().to_string())
            .env("HEALTH_PORT", health.to_string())
            .env("MAINTENANCE_TICK_SECONDS", "1")
            .env("LOG_LEVEL", "warn")
            .spawn()
            .unwrap(),
    ));
    wait_for("the second replica ready", T, || {
        manman::testkit::http_get(health, "/readyz")
            .starts_with("HTTP/1.1 200")
            .then_some(())
    });
    let logs = Collector::console_lines(&s.vhost);
    let (sgc, session) = running_game(&s, "ticking");
    let schedule = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "* * * * *",
        "--action",
        "command",
        "--command",
        "say tick",
    ]);
    assert_eq!(schedule["timezone"], "UTC");
    // The next minute: one run, one line at the game.
    let first = wait_for("the first firing", Duration::from_secs(75), || {
        runs(&s, &schedule)
            .into_iter()
            .find(|r| r["status"] == "completed")
    });
    assert_eq!(
        count_echoes(&logs, session, "echo: say tick", Duration::from_secs(3)),
        1
    );
    assert_eq!(runs(&s, &schedule).len(), 1, "one run for the minute");
    assert_eq!(first["results"][0]["ok"], true, "{first}");

    // One replica killed (no shutdown of its own); the next firing, made due now, runs once.
    let alive = second.0.as_mut().unwrap().try_wait().unwrap().is_none();
    assert!(alive, "the second replica ran all along");
    second.kill();
    make_due(&s, schedule["schedule_id"].as_i64().unwrap(), "1 second");
    wait_for("the second firing", T, || {
        (runs(&s, &schedule)
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
            == 2)
            .then_some(())
    });
    assert_eq!(
        count_echoes(&logs, session, "echo: say tick", Duration::from_secs(3)),
        1
    );
    let next = s.cli_json(&["schedule", "show", &schedule["schedule_id"].to_string()]);
    assert!(next["next_run_at"].is_string(), "fires again: {next}");
    assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
    s.wait_status(session, "stopped");
}

#[test]
fn steps_run_in_order_with_their_waits_and_a_restart() {
    let s = Stack::start();
    let logs = Collector::console_lines(&s.vhost);
    let (sgc, session) = running_game(&s, "nightly");
    let schedule = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 * * *",
        "--timezone",
        "Europe/Berlin",
        "--step",
        "command:say Restarting in 2 seconds",
        "--step",
        "wait:2s",
        "--step",
        "command:say now",
        "--step",
        "restart",
    ]);
    assert_eq!(schedule["timezone"], "Europe/Berlin");
    assert_eq!(schedule["steps"].as_array().unwrap().len(), 4);
    let id = schedule["schedule_id"].to_string();
    let run = s.cli_json(&["schedule", "run-now", &id]);
    assert_eq!(run["status"], "running");
    let done = wait_for("the run", Duration::from_secs(60), || {
        runs(&s, &schedule)
            .into_iter()
            .find(|r| r["status"] != "running")
    });
    assert_eq!(done["status"], "completed", "{done}");
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{done}");
    assert!(results.iter().all(|r| r["ok"] == true), "{done}");
    assert_eq!(
        logs.echoed_until(session, "echo: say now"),
        ["echo: say Restarting in 2 seconds", "echo: say now"]
    );
    // The restart: the old session stopped the usual way, a new one runs.
    assert_eq!(s.status(session).0, "stopped");
    let detail = results[3]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "schedule {id} (due at once); restarted as session"
        )),
        "{detail}"
    );
    let listed = s.cli_json(&["schedule", "list", "--deployment", &sgc.to_string()]);
    assert_eq!(
        listed["items"][0]["last_run"]["status"], "completed",
        "{listed}"
    );
    let restarted: i64 = detail
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the new session in {detail:?}"));
    s.wait_status(restarted, "running");
    let (_, shown, _) = s.cli(&["schedule", "show", &id]);
    assert!(shown.contains("ok   step 2 wait 2 s"), "{shown}");
    assert_eq!(s.cli(&["session", "stop", &restarted.to_string()]).0, 0);
    s.wait_status(restarted, "stopped");
}

#[test]
fn a_failed_step_is_announced_unless_it_may_fail() {
    let s = Stack::start();
    let failures = Collector::bind(
        &s.vhost,
        manman::wire::routing::DEFAULT_EXTERNAL_EXCHANGE,
        "manman.schedule.#",
    );
    // No session runs: a console command has nowhere to go.
    let sgc = s.deploy_test_game("idle", manman::testkit::free_port());
    let strict = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 * * *",
        "--step",
        "command:say hello",
        "--step",
        "start",
    ]);
    s.cli_json(&["schedule", "run-now", &strict["schedule_id"].to_string()]);
    let failed = wait_for("the failed run", T, || {
        runs(&s, &strict)
            .into_iter()
            .find(|r| r["status"] == "failed")
    });
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no live session"),
        "{failed}"
    );
    assert_eq!(
        failed["results"].as_array().unwrap().len(),
        1,
        "the start never ran"
    );
    let event = failures.expect("manman.schedule.failed");
    assert_eq!(event.routing_key, "manman.schedule.failed");
    assert_eq!(event.body["schedule_id"], strict["schedule_id"]);

    // The same with the command allowed to fail: the start runs.
    let lenient = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 * * *",
        "--step",
        "command:say hello",
        "--step",
        "start",
        "--continue-on-failure",
        "1",
    ]);
    s.cli_json(&["schedule", "run-now", &lenient["schedule_id"].to_string()]);
    let done = wait_for("the lenient run", T, || {
        runs(&s, &lenient)
            .into_iter()
            .find(|r| r["status"] != "running")
    });
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["results"][0]["ok"], false);
    assert_eq!(done["results"][1]["ok"], true);
    let session = s.cli_json(&["session", "list", "--deployment", &sgc.to_string()])["items"][0]
        ["session_id"]
        .as_i64()
        .unwrap();
    s.wait_status(session, "running");
    assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
    s.wait_status(session, "stopped");
}

#[test]
fn missed_firings_are_skipped_once_and_bad_schedules_are_refused() {
    let s = Stack::start();
    let sgc = s.deploy_test_game("missed", manman::testkit::free_port());
    let schedule = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 1 * *",
        "--action",
        "backup",
    ]);
    let id = schedule["schedule_id"].as_i64().unwrap();
    // The control plane was down for ten minutes past a firing.
    make_due(&s, id, "10 minutes");
    let skipped = wait_for("the missed firing recorded", T, || {
        runs(&s, &schedule)
            .into_iter()
            .find(|r| r["status"] == "skipped")
    });
    assert!(
        skipped["reason"].as_str().unwrap().starts_with("missed"),
        "{skipped}"
    );
    std::thread::sleep(Duration::from_secs(2)); // two more ticks: nothing more is recorded
    assert_eq!(runs(&s, &schedule).len(), 1, "skipped once");
    let shown = s.cli_json(&["schedule", "show", &id.to_string()]);
    let next =
        chrono::DateTime::parse_from_rfc3339(shown["next_run_at"].as_str().unwrap()).unwrap();
    assert!(
        next > chrono::Utc::now(),
        "the next firing is ahead: {shown}"
    );

    // Only when running: no session, so the firing is skipped with that reason.
    let only = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 * * *",
        "--action",
        "restart",
        "--only-when-running",
    ]);
    make_due(&s, only["schedule_id"].as_i64().unwrap(), "0 seconds");
    let skipped = wait_for("the skipped firing", T, || {
        runs(&s, &only)
            .into_iter()
            .find(|r| r["status"] == "skipped")
    });
    assert!(skipped["reason"]
        .as_str()
        .unwrap()
        .contains("no running session"));

    // Pause, resume, delete.
    let paused = s.cli_json(&["schedule", "pause", &id.to_string()]);
    assert_eq!(
        (paused["paused"].clone(), paused["next_run_at"].clone()),
        (true.into(), serde_json::Value::Null)
    );
    let resumed = s.cli_json(&["schedule", "resume", &id.to_string()]);
    assert!(resumed["next_run_at"].is_string());
    assert_eq!(s.cli(&["schedule", "delete", &id.to_string()]).0, 0);
    assert_eq!(s.cli(&["schedule", "show", &id.to_string()]).0, 4);

    // Refused, each with its reason.
    let deployment = sgc.to_string();
    let oversized = format!("command:say {}", "x".repeat(2_000));
    for (args, expected) in [
        (vec!["--cron", "0 4 * *", "--action", "restart"], "cron"),
        (
            vec!["--cron", "0 0 4 * * *", "--action", "restart"],
            "no seconds",
        ),
        (
            vec![
                "--cron",
                "0 4 * * *",
                "--timezone",
                "Mars/Olympus",
                "--action",
                "restart",
            ],
            "time zone",
        ),
        (vec!["--cron", "0 4 * * *", "--action", "reboot"], "step"),
        (
            vec!["--cron", "0 4 * * *", "--step", "wait:1m"],
            "only waits",
        ),
        (
            vec!["--cron", "0 4 * * *", "--step", "command:say a\nstop"],
            "one line",
        ),
        (vec!["--cron", "0 4 * * *"], "--action or"),
        (
            vec!["--cron", "0 4 * * *", "--step", &oversized],
            "1 to 1000 bytes",
        ),
    ] {
        let mut cmd = vec!["schedule", "create", "--deployment", &deployment];
        cmd.extend(args);
        let (code, _, err) = s.cli(&cmd);
        assert_eq!(code, 65, "{cmd:?}: {err}");
        assert!(err.contains(expected), "{cmd:?}: {err}");
    }
}

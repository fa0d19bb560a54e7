//! Maintenance that waits for the players, end to end: the test game counted through its
//! console (`list`; `players N` changes the count), the API tending the maintenance, the agent
//! carrying out its stops and starts. A restart warns at its marks (the lines reach the game),
//! waits while anyone plays and restarts once they leave; players who never leave meet the
//! deadline; a cancel ends it; a config without a count and bad plans are refused.

mod support;

use manman::testkit::free_port;
use support::stack::*;
use support::*;

const COUNTED: [&str; 8] = [
    "--players",
    "console",
    "--players-command",
    "list",
    "--players-reply",
    r"There are (\d+) of a max of (\d+) players online",
    "--players-interval",
    "5",
];

/// A running test game with `players` playing, counted through its console; its session once
/// the count has reached the API.
fn run_with_players(s: &Stack, name: &str, players: u32) -> i64 {
    let env = format!("PLAYERS={players}");
    let mut extra = COUNTED.to_vec();
    extra.extend(["--env", &env]);
    let sgc = s.deploy_test_game_with(name, free_port(), &extra);
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    wait_for("the player count", T, || {
        let sample = s.cli_json(&["session", "show", &session.to_string()])["sample"].clone();
        (sample["players_online"] == players).then_some(())
    });
    session
}

/// The session's maintenance once `done(m)` holds.
fn maintenance_when(
    s: &Stack,
    session: i64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(
        "the maintenance",
        std::time::Duration::from_secs(60),
        || {
            let m = s.cli_json(&["session", "show", &session.to_string()])["maintenance"].clone();
            done(&m).then_some(m)
        },
    )
}

#[test]
fn a_restart_when_empty_warns_waits_for_the_players_and_restarts_once_they_leave() {
    let s = Stack::start();
    let logs = Collector::console_lines(&s.vhost);
    let session = run_with_players(&s, "crowded", 2);
    let id = session.to_string();
    let m = s.cli_json(&[
        "session",
        "restart",
        &id,
        "--when-empty",
        "--deadline",
        "10m",
        "--warn",
        "say Restarting in {minutes} minutes",
        "--warn-at",
        "10m,1m",
    ]);
    assert_eq!(m["status"], "waiting", "{m}");
    assert_eq!(m["action"], "restart");
    assert_eq!(m["warn_at_seconds"], serde_json::json!([600, 60]));

    // The 10-minute mark is now: one warning reaches the game.
    logs.echoed_until(session, "echo: say Restarting in 10 minutes");
    // Two players keep it waiting: it has seen them, and the session still runs.
    let waiting = maintenance_when(&s, session, |m| m["players_seen"] == 2);
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["warned_seconds"], serde_json::json!([600]));
    let (_, shown, _) = s.cli(&["session", "show", &id]);
    assert!(
        shown.contains("restart pending: waiting for 2 players, deadline"),
        "{shown}"
    );
    assert_eq!(s.status(session).0, "running");
    // The dashboard's session call carries it too.
    let (port, _web) = s.start_web();
    let (cookie, _) = manman::testkit::dashboard_login(port, &s.admin_token);
    let page: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{port}/api/sessions/{id}"))
        .set("Cookie", &cookie)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(page["maintenance"]["status"], "waiting", "{page}");

    // They leave: the restart goes ahead, a new session of the deployment runs.
    assert_eq!(s.cli(&["session", "input", &id, "players 0"]).0, 0);
    let done = maintenance_when(&s, session, |m| m["status"] == "done");
    let reason = done["reason"].as_str().unwrap();
    assert!(reason.starts_with("the server was empty"), "{reason}");
    let restarted = done["new_session_id"].as_i64().expect("restarted");
    assert_ne!(restarted, session);
    assert_eq!(s.status(session).0, "stopped");
    s.wait_status(restarted, "running");
    assert_eq!(s.cli(&["session", "stop", &restarted.to_string()]).0, 0);
    s.wait_status(restarted, "stopped");
}

#[test]
fn players_who_never_leave_meet_the_deadline() {
    let s = Stack::start();
    let session = run_with_players(&s, "loyal", 3);
    let m = s.cli_json(&[
        "session",
        "stop",
        &session.to_string(),
        "--when-empty",
        "--deadline",
        "6s",
    ]);
    assert_eq!(m["status"], "waiting", "{m}");
    let done = maintenance_when(&s, session, |m| m["status"] == "done");
    assert_eq!(
        done["reason"], "the deadline passed with 3 players; stopped",
        "{done}"
    );
    assert!(done["new_session_id"].is_null(), "a stop starts nothing");
    s.wait_status(session, "stopped");
}

#[test]
fn cancel_ends_it_and_bad_requests_are_refused() {
    let s = Stack::start();
    let session = run_with_players(&s, "patient", 1);
    let id = session.to_string();
    let m = s.cli_json(&[
        "session",
        "restart",
        &id,
        "--when-empty",
        "--deadline",
        "1h",
    ]);
    assert_eq!(m["status"], "waiting");
    // One at a time per session.
    let (code, _, err) = s.cli(&["session", "stop", &id, "--when-empty"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("already has maintenance"), "{err}");

    let cancelled = s.cli_json(&["session", "cancel-maintenance", &id]);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        cancelled["reason"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by"),
        "{cancelled}"
    );
    let (code, _, err) = s.cli(&["session", "cancel-maintenance", &id]);
    assert_eq!(code, 4, "nothing left to cancel: {err}");
    assert_eq!(s.status(session).0, "running", "a cancel leaves it running");

    // Plans the CLI or the API refuse, each with its reason.
    for (args, expected) in [
        (vec!["--deadline", "10x"], "unit"),
        (vec!["--deadline", "0s"], "deadline"),
        (
            vec!["--deadline", "30m", "--warn", "say x", "--warn-at", "2h"],
            "not within",
        ),
        (vec!["--warn", "say bye\nstop"], "one line"),
    ] {
        let mut cmd = vec!["session", "restart", &id, "--when-empty"];
        cmd.extend(args);
        let (code, _, err) = s.cli(&cmd);
        assert_eq!(code, 65, "{cmd:?}: {err}");
        assert!(err.contains(expected), "{cmd:?}: {err}");
    }

    // A game nobody can count: --when-empty cannot know when it is empty.
    let uncounted = s.deploy_test_game("uncounted", free_port());
    let other = s.start_session(uncounted);
    s.wait_status(other, "running");
    let (code, _, err) = s.cli(&["session", "restart", &other.to_string(), "--when-empty"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("no player count"), "{err}");
    for session in [session, other] {
        assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
        s.wait_status(session, "stopped");
    }
}

#[test]
fn a_schedule_step_waits_for_the_players_as_when_empty_does() {
    let s = Stack::start();
    let logs = Collector::console_lines(&s.vhost);
    let session = run_with_players(&s, "scheduled", 1);
    let sgc = s.cli_json(&["session", "show", &session.to_string()])["sgc_id"]
        .as_i64()
        .unwrap();
    let schedule = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &sgc.to_string(),
        "--cron",
        "0 4 * * *",
        "--step",
        "restart-when-empty:5m",
        "--warn",
        "say Restarting in {minutes} minutes",
    ]);
    let step = &schedule["steps"][0];
    assert_eq!(step["action"], "restart", "{schedule}");
    let id = schedule["schedule_id"].to_string();
    s.cli_json(&["schedule", "run-now", &id]);
    // The default marks within 5 minutes: the 5-minute one is now.
    logs.echoed_until(session, "echo: say Restarting in 5 minutes");
    let waiting = maintenance_when(&s, session, |m| m["players_seen"] == 1);
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["created_by"], format!("schedule {id}"));
    assert_eq!(waiting["warn_at_seconds"], serde_json::json!([300, 60]));

    assert_eq!(
        s.cli(&["session", "input", &session.to_string(), "players 0"])
            .0,
        0
    );
    let run = wait_for("the run", std::time::Duration::from_secs(60), || {
        let runs = s.cli_json(&["schedule", "show", &id])["runs"].clone();
        let run = runs[0].clone();
        (run["status"] != "running").then_some(run)
    });
    assert_eq!(run["status"], "completed", "{run}");
    let detail = run["results"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the server was empty; restarted as session"),
        "{detail}"
    );
    let restarted: i64 = detail.rsplit(' ').next().unwrap().parse().unwrap();
    s.wait_status(restarted, "running");

    // A deployment nobody can count: the step fails with the reason.
    let uncounted = s.deploy_test_game("uncounted", free_port());
    let other = s.start_session(uncounted);
    s.wait_status(other, "running");
    let strict = s.cli_json(&[
        "schedule",
        "create",
        "--deployment",
        &uncounted.to_string(),
        "--cron",
        "0 4 * * *",
        "--step",
        "stop-when-empty:5m",
    ]);
    s.cli_json(&["schedule", "run-now", &strict["schedule_id"].to_string()]);
    let failed = wait_for("the failed run", T, || {
        let run = s.cli_json(&["schedule", "show", &strict["schedule_id"].to_string()])["runs"][0]
            .clone();
        (run["status"] == "failed").then_some(run)
    });
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no player count"),
        "{failed}"
    );
    for session in [restarted, other] {
        assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
        s.wait_status(session, "stopped");
    }
}

//! Usage history end to end: the agent's heartbeats become one point per session per bucket
//! (a second here, a minute in production) in the processor's heartbeat batch; a game whose
//! memory grows shows a rising series in `GetSessionHistory`, `manman session history` and its
//! host's summed series; points past the retention are pruned; bad windows are refused.

mod support;

use std::time::Duration;

use support::stack::*;
use support::*;

fn history(s: &Stack, session: i64) -> Vec<serde_json::Value> {
    s.cli_json(&["session", "history", &session.to_string(), "--since", "1h"])["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn rss(p: &serde_json::Value) -> i64 {
    p["rss_bytes"].as_i64().unwrap()
}

#[test]
fn a_growing_game_shows_a_rising_series_and_old_points_are_pruned() {
    let s = Stack::start_with(|p| {
        // The housekeeping pass (stale hosts, inbox, history) every second, keeping a minute.
        p.stale_interval = Duration::from_secs(1);
        p.history_keep = Duration::from_secs(60);
    });
    let sgc = s.deploy_test_game("growing", manman::testkit::free_port());
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    let before = wait_for("two points of history", T, || {
        let points = history(&s, session);
        (points.len() >= 2).then_some(points)
    });
    let base = rss(before.last().unwrap());
    for _ in 0..3 {
        assert_eq!(
            s.cli(&["session", "input", &session.to_string(), "grow"]).0,
            0
        );
    }
    // 48 MiB more: the series rises past it.
    let after = wait_for(
        "a point with the grown memory",
        Duration::from_secs(60),
        || {
            let points = history(&s, session);
            points
                .last()
                .is_some_and(|p| rss(p) > base + (40 << 20))
                .then_some(points)
        },
    );
    assert!(after.len() > before.len(), "one point per heartbeat bucket");
    let times: Vec<&str> = after.iter().map(|p| p["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(times, sorted, "oldest first, one point per bucket");
    assert!(
        rss(after.first().unwrap()) < rss(after.last().unwrap()) - (40 << 20),
        "a rising series: {after:?}"
    );

    // The host's series sums its sessions: at least this one's latest memory.
    let host = s.cli_json(&["host", "history", &s.server_id().to_string()])["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        host.iter().any(|p| rss(p) >= rss(after.last().unwrap())),
        "{host:?}"
    );
    let (_, table, _) = s.cli(&["session", "history", &session.to_string()]);
    assert!(table.starts_with("TIME"), "{table}");

    // A point older than the retention goes at the next housekeeping pass; fresh ones stay.
    s.db.client()
        .execute(
            "INSERT INTO session_history (session_id, bucket, cpu_percent, rss_bytes)
             VALUES ($1, now() - interval '2 minutes', 1, 1)",
            &[&session],
        )
        .unwrap();
    let old = |s: &Stack| -> i64 {
        s.db.client()
            .query_one(
                "SELECT count(*) FROM session_history
                  WHERE session_id = $1 AND bucket < now() - interval '61 seconds'",
                &[&session],
            )
            .unwrap()
            .get(0)
    };
    wait_for("the old point pruned", T, || (old(&s) == 0).then_some(()));
    assert!(!history(&s, session).is_empty(), "fresh points stay");

    // Windows that are not one are refused.
    let client = manman::api::client(&format!("127.0.0.1:{}", s.api_port));
    let refused = client.get_session_history_opt(
        &manman::proto::v1::GetSessionHistoryRequest {
            session_id: session,
            since_ms: 2_000_000_000_000,
            until_ms: 1_000_000_000_000,
        },
        s.opt(),
    );
    assert!(
        matches!(refused, Err(grpcio::Error::RpcFailure(ref st)) if st.code() == grpcio::RpcStatusCode::INVALID_ARGUMENT),
        "{refused:?}"
    );
    let (code, _, err) = s.cli(&[
        "session",
        "history",
        &session.to_string(),
        "--since",
        "soon",
    ]);
    assert_eq!(code, 65, "{err}");

    // The dashboard's history call takes an hour or a day, nothing else.
    let (port, _web) = s.start_web();
    let (cookie, _) = manman::testkit::dashboard_login(port, &s.admin_token);
    let get = |path: &str| match ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .set("Cookie", &cookie)
        .call()
    {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let (code, body) = get(&format!("/api/sessions/{session}/history?window=day"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("rss_bytes"), "{body}");
    for bad in ["window=week", "window=%00", "window=hour%0d%0a"] {
        let (code, body) = get(&format!("/api/sessions/{session}/history?{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    // An oversized query is cut at the request head, before any route sees it.
    let long = format!("window={}", "h".repeat(10_000));
    let (code, _) = get(&format!("/api/sessions/{session}/history?{long}"));
    assert_eq!(code, 431);
    let (code, _) = get("/api/hosts/999999/history");
    assert_eq!(code, 404);
    assert_eq!(s.cli(&["session", "stop", &session.to_string()]).0, 0);
    s.wait_status(session, "stopped");
}

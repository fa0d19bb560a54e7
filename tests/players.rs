//! Player counts end to end: the host agent asks each running game who is playing (Steam A2S
//! over UDP, the Minecraft status ping over TCP, a console command and its reply, against
//! stand-ins in `scripts/test-game` that answer as real servers do) and the count reaches
//! `session show`, `manman status`, the status API and the agent's `/metrics`; a game that does
//! not answer is "unknown", never 0.

mod support;

use manman::testkit::{free_port, http_get};
use support::stack::*;
use support::*;

/// How the config asks: `a2s`, `minecraft` (on the config's port) or `console`.
fn query_flags(kind: &str, port: u16) -> Vec<String> {
    match kind {
        "console" => vec![
            "--players".into(),
            "console".into(),
            "--players-command".into(),
            "list".into(),
            "--players-reply".into(),
            r"There are (\d+) of a max of (\d+) players online".into(),
        ],
        kind => vec!["--players".into(), format!("{kind}:{port}")],
    }
}

/// The test game with `env`, counted by `kind`, its config port on the same host port;
/// returns the running session.
fn run_counted(s: &Stack, name: &str, env: &str, kind: &str) -> i64 {
    let port = free_port();
    let query = query_flags(kind, port);
    let mut extra = vec!["--players-interval", "5", "--env", env];
    extra.extend(query.iter().map(String::as_str));
    let sgc = s.deploy_test_game_with(name, port, &extra);
    let session = s.start_session(sgc);
    s.wait_status(session, "running");
    session
}

/// The session's sample once it has a player count.
fn counted(s: &Stack, session: i64) -> serde_json::Value {
    wait_for("a player count in session show", T, || {
        let sample = s.cli_json(&["session", "show", &session.to_string()])["sample"].clone();
        sample["players_online"].as_i64().map(|_| sample)
    })
}

#[test]
fn counts_from_a2s_minecraft_and_the_console_reach_every_view() {
    let s = Stack::start();
    let steam = run_counted(&s, "steam", "A2S_PLAYERS=3", "a2s");
    let minecraft = run_counted(&s, "minecraft", "MC_PLAYERS=2", "minecraft");
    let console = run_counted(&s, "console", "PLAYERS=7", "console");

    let a2s = counted(&s, steam);
    assert_eq!(
        (a2s["players_online"].clone(), a2s["players_max"].clone()),
        (3.into(), 10.into())
    );
    assert_eq!(
        a2s["player_names"],
        serde_json::json!(["alice", "bob", "carol"])
    );
    let mc = counted(&s, minecraft);
    assert_eq!(
        (mc["players_online"].clone(), mc["players_max"].clone()),
        (2.into(), 20.into())
    );
    assert_eq!(mc["player_names"], serde_json::json!(["Notch", "jeb_"]));
    let by_console = counted(&s, console);
    assert_eq!(
        (
            by_console["players_online"].clone(),
            by_console["players_max"].clone()
        ),
        (7.into(), 20.into())
    );

    // The same in the table of `session show`, `manman status`, the agent's /metrics.
    let (code, out, err) = s.cli(&["session", "show", &steam.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("players 3/10 (alice, bob, carol)"), "{out}");
    let (code, out, err) = s.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PLAYERS") && out.contains("2/20"), "{out}");
    let (host, _) = s.host.as_ref().unwrap();
    let metrics = http_get(host.health_port, "/metrics");
    assert!(
        metrics.contains(&format!(
            "manman_host_session_players{{session_id=\"{console}\"}} 7"
        )),
        "{metrics}"
    );
}

#[test]
fn a_server_that_does_not_answer_is_unknown_never_zero() {
    let s = Stack::start();
    // A Minecraft query against a game with nothing listening on its port.
    let session = run_counted(&s, "silent", "NOTHING=1", "minecraft");
    // Heartbeats come and go; the count stays unknown.
    let sampled = wait_for("a heartbeat sample", T, || {
        let sample = s.cli_json(&["session", "show", &session.to_string()])["sample"].clone();
        (!sample.is_null()).then_some(sample)
    });
    assert!(sampled["players_online"].is_null(), "{sampled}");
    let (code, out, err) = s.cli(&["session", "show", &session.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("players unknown"), "{out}");
    // Bad queries are refused with the reason, before anything runs.
    let game = s.cli_json(&["game", "create", "bad-query"])["game_id"].to_string();
    for (flags, says) in [
        (vec!["--players", "quake:27960"], "unknown kind"),
        (vec!["--players", "a2s"], "needs a port"),
        (
            vec![
                "--players",
                "console",
                "--players-command",
                "list",
                "--players-reply",
                "no group",
            ],
            "group",
        ),
        (
            vec!["--players-command", "list"],
            "go with --players console",
        ),
    ] {
        let mut args = vec![
            "config",
            "create",
            "--game",
            &game,
            "--name",
            "q",
            "--program",
            "/bin/true",
        ];
        args.extend(flags.iter().copied());
        let (code, _, err) = s.cli(&args);
        assert_ne!(code, 0, "{flags:?} was accepted");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
}

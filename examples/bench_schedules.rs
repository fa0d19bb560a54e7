//! Schedule benchmark (`scripts/bench-schedules`): 10,000 schedules across 1,000 deployments all
//! due in the same minute, fired by two API replicas on one database: how late each firing
//! started after its minute, that none ran twice, and the replicas' CPU for claiming.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Timelike, Utc};
use manman::api::{self, ApiConfig};
use manman::lifecycle::Supervisor;
use manman::testkit::{cpu_time, percentile, wait_for, ScratchDb, ScratchVhost};

const DEPLOYMENTS: i64 = 1_000;
const SCHEDULES: i64 = 10_000;

fn main() {
    let db = ScratchDb::new("mmbench_sched");
    let vhost = ScratchVhost::new("mmbench_sched");
    let mut sups = Vec::new();
    for _ in 0..2 {
        let mut sup = Supervisor::new();
        api::start(
            ApiConfig::embedded(vhost.url(), db.config.clone()),
            &mut sup,
        )
        .unwrap();
        sups.push(sup);
    }
    // The next minute, at least 20 s away so the seeding is done before it.
    let now = Utc::now();
    let mut minute =
        now.with_second(0).unwrap().with_nanosecond(0).unwrap() + TimeDelta::minutes(1);
    if minute - now < TimeDelta::seconds(20) {
        minute += TimeDelta::minutes(1);
    }
    // A wait then a start: the run is recorded and waits, nothing else happens in the window.
    db.client()
        .batch_execute(&format!(
            "INSERT INTO servers (name) VALUES ('bench-host');
             INSERT INTO games (name) VALUES ('bench');
             INSERT INTO game_configs (game_id, name, command)
                  SELECT 1, 'cfg-' || g, '/bin/true' FROM generate_series(1, {DEPLOYMENTS}) g;
             INSERT INTO server_game_configs (server_id, game_config_id)
                  SELECT 1, config_id FROM game_configs;
             INSERT INTO schedules (sgc_id, name, cron, steps, next_run_at, created_by)
                  SELECT 1 + (g % {DEPLOYMENTS}), 'bench-' || g, '* * * * *',
                         '[{{\"action\": \"wait\", \"seconds\": 3600}}, {{\"action\": \"start\"}}]',
                         '{}', 'bench'
                    FROM generate_series(1, {SCHEDULES}) g;",
            minute.to_rfc3339()
        ))
        .expect("seed");
    println!(
        "{SCHEDULES} schedules across {DEPLOYMENTS} deployments, all due at {minute}; two API replicas"
    );
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let wall = Instant::now();
    let count = || -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM schedule_runs", &[])
            .unwrap()
            .get(0)
    };
    wait_for("every firing", Duration::from_secs(180), || {
        (count() >= SCHEDULES).then_some(())
    });
    let cpu = cpu_time(libc::RUSAGE_SELF) - cpu_before;
    let rows = db
        .client()
        .query(
            "SELECT extract(epoch FROM started_at - scheduled_for)::float8 FROM schedule_runs",
            &[],
        )
        .unwrap();
    let mut late: Vec<f64> = rows.iter().map(|r| r.get::<_, f64>(0)).collect();
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let twice: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM (SELECT schedule_id, scheduled_for FROM schedule_runs
               GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    let waited = wall.elapsed().as_secs_f64();
    println!(
        "runs: {} (twice: {twice}); started after their minute: p50 {:.2} s, p99 {:.2} s, max {:.2} s (goal: all within 5 s)",
        late.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or(0.0)
    );
    println!(
        "CPU of both replicas (this process), from the seeding to the last firing: {:.2} s in {waited:.0} s (mostly idle ticks until the minute)",
        cpu.as_secs_f64()
    );
    let next: Vec<(Option<chrono::DateTime<Utc>>, i64)> = db
        .client()
        .query(
            "SELECT next_run_at, count(*) FROM schedules GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    println!("next firings (time, schedules): {next:?}");
    drop(sups);
}

//! Where a deployment goes when the operator does not say: the online host with the most free
//! memory for the config, and free host ports from the host's range. Both run in the deploy's
//! transaction with the host rows locked, so concurrent deploys never pick the same port or
//! overcommit a host.

use std::collections::HashSet;

use postgres::GenericClient;

const MIB: i64 = 1 << 20;

/// A host as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub server_id: i64,
    /// Its memory less what its active deployments' configs reserve, and never more than the
    /// kernel says is available now.
    pub free_bytes: i64,
}

/// Locks every online host that reports its memory and returns them, most free memory first
/// (ties: lowest id). Locking them all serialises automatic placements: each sees what the one
/// before it reserved.
pub fn candidates(c: &mut impl GenericClient) -> Result<Vec<Candidate>, postgres::Error> {
    Ok(c
        .query(
            "WITH online AS (
                 SELECT server_id, memory_total_bytes, memory_available_bytes FROM servers
                  WHERE status = 'online' AND memory_total_bytes IS NOT NULL
                  ORDER BY server_id FOR UPDATE)
             SELECT o.server_id,
                    least(o.memory_total_bytes - coalesce(sum(gc.memory_estimate_mb::bigint * $1), 0),
                          o.memory_available_bytes)::bigint AS free
               FROM online o
               LEFT JOIN server_game_configs g ON g.server_id = o.server_id AND g.status = 'active'
               LEFT JOIN game_configs gc ON gc.config_id = g.game_config_id
              GROUP BY o.server_id, o.memory_total_bytes, o.memory_available_bytes
              ORDER BY free DESC, o.server_id",
            &[&MIB],
        )?
        .iter()
        .map(|r| Candidate {
            server_id: r.get(0),
            free_bytes: r.get(1),
        })
        .collect())
}

/// The best candidate with room for `need_mb`, or why there is none.
pub fn choose(candidates: &[Candidate], need_mb: u32) -> Result<i64, String> {
    let need = i64::from(need_mb) * MIB;
    match candidates.first() {
        None => {
            Err("no online host reports its memory (agents report it in their heartbeat)".into())
        }
        Some(best) if best.free_bytes < need => Err(format!(
            "no online host has {need_mb} MiB free (the most is {} MiB on host {})",
            best.free_bytes.max(0) / MIB,
            best.server_id
        )),
        Some(best) => Ok(best.server_id),
    }
}

/// Locks one host's row (deploys to it are serialised from here to the commit) and returns
/// its port range; `None` if there is no such host.
pub fn lock_host(
    c: &mut impl GenericClient,
    server_id: i64,
) -> Result<Option<(i32, i32)>, postgres::Error> {
    Ok(c.query_opt(
        "SELECT port_range_low, port_range_high FROM servers WHERE server_id = $1 FOR UPDATE",
        &[&server_id],
    )?
    .map(|r| (r.get(0), r.get(1))))
}

/// Host ports of `protocol` taken on a host: bound by its other active deployments (not
/// `config_id`'s own, which a redeploy replaces) or held by a live session.
pub fn ports_in_use(
    c: &mut impl GenericClient,
    server_id: i64,
    config_id: i64,
    protocol: &str,
) -> Result<HashSet<i32>, postgres::Error> {
    Ok(c.query(
        "SELECT (b->>'host_port')::int FROM server_game_configs g,
                    jsonb_array_elements(g.port_bindings) b
              WHERE g.server_id = $1 AND g.status = 'active' AND g.game_config_id <> $2
                AND b->>'protocol' = $3
             UNION
             SELECT port FROM server_ports WHERE server_id = $1 AND protocol = $3",
        &[&server_id, &config_id, &protocol],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// The lowest port of `range` not in `taken`.
pub fn free_port(range: (i32, i32), taken: &HashSet<i32>) -> Option<i32> {
    (range.0..=range.1).find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_free_memory_wins_if_it_is_enough() {
        let hosts = [
            Candidate {
                server_id: 4,
                free_bytes: 6 * 1024 * MIB,
            },
            Candidate {
                server_id: 2,
                free_bytes: 2 * 1024 * MIB,
            },
        ];
        assert_eq!(choose(&hosts, 4096), Ok(4));
        assert_eq!(choose(&hosts, 0), Ok(4));
        let err = choose(&hosts, 8192).unwrap_err();
        assert_eq!(
            err,
            "no online host has 8192 MiB free (the most is 6144 MiB on host 4)"
        );
        assert!(choose(&[], 0).is_err());
    }

    #[test]
    fn ports_are_taken_from_the_bottom_of_the_range() {
        let taken: HashSet<i32> = [7000, 7001, 7003].into();
        assert_eq!(free_port((7000, 8000), &taken), Some(7002));
        assert_eq!(free_port((7000, 7001), &taken), None);
    }
}

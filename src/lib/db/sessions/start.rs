//! Starting a session: a `pending` row, refused while the deployment has a live one.

use crate::wire::SessionStatus;

/// Why a session could not be created.
#[derive(Debug, Clone, PartialEq)]
pub enum StartConflict {
    /// The deployment already has a live session.
    LiveSession(i64),
    /// Another live session on the host holds this port.
    PortTaken { port: i32, protocol: String },
}

/// Creates a `pending` session for a deployment and allocates its host ports, atomically: the
/// `server_ports` primary key guarantees two live sessions never share a port.
pub fn create_pending(
    c: &mut impl postgres::GenericClient,
    sgc_id: i64,
    server_id: i64,
    ports: &[crate::wire::commands::PortBinding],
) -> Result<Result<i64, StartConflict>, postgres::Error> {
    let mut tx = c.transaction()?;
    // Serialise starts of one deployment.
    tx.execute(
        "SELECT 1 FROM server_game_configs WHERE sgc_id = $1 FOR UPDATE",
        &[&sgc_id],
    )?;
    let live: Vec<&str> = SessionStatus::LIVE.iter().map(|s| s.as_str()).collect();
    if let Some(r) = tx.query_opt(
        "SELECT session_id FROM sessions WHERE sgc_id = $1 AND status = ANY($2) LIMIT 1",
        &[&sgc_id, &live],
    )? {
        return Ok(Err(StartConflict::LiveSession(r.get(0))));
    }
    let session_id: i64 = tx
        .query_one(
            "INSERT INTO sessions (sgc_id) VALUES ($1) RETURNING session_id",
            &[&sgc_id],
        )?
        .get(0);
    for p in ports {
        let inserted = tx.execute(
            "INSERT INTO server_ports (server_id, port, protocol, session_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&server_id, &p.host_port, &p.protocol, &session_id],
        )?;
        if inserted == 0 {
            return Ok(Err(StartConflict::PortTaken {
                port: p.host_port,
                protocol: p.protocol.clone(),
            }));
        }
    }
    tx.commit()?;
    Ok(Ok(session_id))
}

/// The live sessions of a deployment (for a forced start).
pub fn live_of_deployment(
    c: &mut impl postgres::GenericClient,
    sgc_id: i64,
) -> Result<Vec<i64>, postgres::Error> {
    let live: Vec<&str> = SessionStatus::LIVE.iter().map(|s| s.as_str()).collect();
    Ok(c.query(
        "SELECT session_id FROM sessions WHERE sgc_id = $1 AND status = ANY($2)",
        &[&sgc_id, &live],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

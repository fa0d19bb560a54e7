//! The Steam A2S query (Valve's server query protocol) over UDP: A2S_INFO for the player
//! count and maximum, A2S_PLAYER for the names, each answering a challenge first when the
//! server asks for one (as servers do since 2020).

use std::net::UdpSocket;
use std::time::Duration;

use crate::wire::players::Players;

const HEADER: [u8; 4] = [0xFF; 4];
const INFO: u8 = b'T';
const PLAYER: u8 = b'U';
const CHALLENGE: u8 = b'A';
const INFO_REPLY: u8 = b'I';
const PLAYER_REPLY: u8 = b'D';

/// An A2S_INFO request, with the challenge the server gave (if any).
pub fn info_request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut r = HEADER.to_vec();
    r.push(INFO);
    r.extend_from_slice(b"Source Engine Query\0");
    if let Some(c) = challenge {
        r.extend_from_slice(&c);
    }
    r
}

/// An A2S_PLAYER request; without a challenge yet, it asks for one (`FF FF FF FF`).
pub fn player_request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut r = HEADER.to_vec();
    r.push(PLAYER);
    r.extend_from_slice(&challenge.unwrap_or([0xFF; 4]));
    r
}

/// A reply: the challenge to send back, or the payload after its type byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Challenge([u8; 4]),
    Payload(u8, &'a [u8]),
}

pub fn reply(packet: &[u8]) -> Result<Reply<'_>, String> {
    let body = packet
        .strip_prefix(&HEADER[..])
        .ok_or("not a single-packet A2S reply")?;
    let (&kind, rest) = body.split_first().ok_or("an empty A2S reply")?;
    if kind == CHALLENGE {
        let c: [u8; 4] = rest
            .get(..4)
            .and_then(|c| c.try_into().ok())
            .ok_or("a short challenge")?;
        return Ok(Reply::Challenge(c));
    }
    Ok(Reply::Payload(kind, rest))
}

/// Reads a NUL-terminated string at `*at`.
fn string(b: &[u8], at: &mut usize) -> Result<String, String> {
    let end = b[*at..]
        .iter()
        .position(|x| *x == 0)
        .ok_or("an unterminated string")?;
    let s = String::from_utf8_lossy(&b[*at..*at + end]).into_owned();
    *at += end + 1;
    Ok(s)
}

fn byte(b: &[u8], at: &mut usize) -> Result<u8, String> {
    let v = *b.get(*at).ok_or("a short reply")?;
    *at += 1;
    Ok(v)
}

/// The count and maximum from an A2S_INFO payload (protocol, name, map, folder, game, app id,
/// players, max players, bots…). Bots are not players.
pub fn parse_info(payload: &[u8]) -> Result<Players, String> {
    let mut at = 0;
    byte(payload, &mut at)?; // protocol
    for _ in 0..4 {
        string(payload, &mut at)?; // name, map, folder, game
    }
    at += 2; // app id
    let players = byte(payload, &mut at)?;
    let max = byte(payload, &mut at)?;
    let bots = byte(payload, &mut at)?;
    Ok(Players {
        online: u32::from(players.saturating_sub(bots)),
        max: Some(u32::from(max)),
        names: Vec::new(),
    })
}

/// The names from an A2S_PLAYER payload (count, then index, name, score, duration each).
/// Players still connecting have empty names and are left out.
pub fn parse_players(payload: &[u8]) -> Result<Vec<String>, String> {
    let mut at = 0;
    let count = byte(payload, &mut at)?;
    let mut names = Vec::new();
    for _ in 0..count {
        byte(payload, &mut at)?; // index
        let name = string(payload, &mut at)?;
        at += 8; // score (i32), duration (f32)
        if at > payload.len() {
            return Err("a short player entry".into());
        }
        if !name.is_empty() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Sends `request` (built with the challenge, if any) and returns the payload of the `want`
/// reply, answering one challenge.
fn exchange(
    socket: &UdpSocket,
    request: impl Fn(Option<[u8; 4]>) -> Vec<u8>,
    want: u8,
) -> Result<Vec<u8>, String> {
    let mut challenge = None;
    let mut buf = [0u8; 1400];
    for _ in 0..2 {
        socket
            .send(&request(challenge))
            .map_err(|e| format!("cannot send: {e}"))?;
        let n = socket
            .recv(&mut buf)
            .map_err(|e| format!("no reply: {e}"))?;
        match reply(&buf[..n])? {
            Reply::Challenge(c) => challenge = Some(c),
            Reply::Payload(kind, payload) if kind == want => return Ok(payload.to_vec()),
            Reply::Payload(kind, _) => return Err(format!("an unexpected reply type {kind:#x}")),
        }
    }
    Err("the server asked for a challenge twice".into())
}

/// Queries 127.0.0.1:`port`: the count and maximum, with the names when A2S_PLAYER answers.
pub fn query(port: u16, timeout: Duration) -> Result<Players, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    socket
        .connect(("127.0.0.1", port))
        .map_err(|e| format!("cannot reach port {port}: {e}"))?;
    let mut players = parse_info(&exchange(&socket, info_request, INFO_REPLY)?)?;
    // Names are a bonus: a server that does not answer A2S_PLAYER still has a count.
    if let Ok(payload) = exchange(&socket, player_request, PLAYER_REPLY) {
        players.names = parse_players(&payload).unwrap_or_default();
    }
    Ok(players)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An A2S_INFO reply as a Valheim dedicated server sends it (header, 'I', protocol 17,
    /// name, map, folder, game, app id 0, 3 players, max 10, 0 bots, then the rest).
    fn valheim_info() -> Vec<u8> {
        let mut p = vec![0xFF, 0xFF, 0xFF, 0xFF, b'I', 0x11];
        for s in ["ManMan Valheim", "ManMan Valheim", "valheim", "Valheim"] {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(&[0x00, 0x00, 3, 10, 0, b'd', b'l', 0, 1]);
        p.extend_from_slice(b"0.217.46\0");
        p
    }

    #[test]
    fn info_players_and_challenges_parse() {
        assert_eq!(
            info_request(None),
            b"\xFF\xFF\xFF\xFFTSource Engine Query\0".to_vec()
        );
        assert_eq!(
            player_request(None),
            vec![0xFF, 0xFF, 0xFF, 0xFF, b'U', 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let packet = valheim_info();
        let Reply::Payload(INFO_REPLY, payload) = reply(&packet).unwrap() else {
            panic!("an info reply");
        };
        assert_eq!(
            parse_info(payload).unwrap(),
            Players {
                online: 3,
                max: Some(10),
                names: vec![]
            }
        );
        assert_eq!(
            reply(&[0xFF, 0xFF, 0xFF, 0xFF, b'A', 1, 2, 3, 4]).unwrap(),
            Reply::Challenge([1, 2, 3, 4])
        );
        let mut players = vec![2u8];
        for (i, name) in ["alice", ""].iter().enumerate() {
            players.push(i as u8);
            players.extend_from_slice(name.as_bytes());
            players.push(0);
            players.extend_from_slice(&7i32.to_le_bytes());
            players.extend_from_slice(&12.5f32.to_le_bytes());
        }
        assert_eq!(parse_players(&players).unwrap(), ["alice"]);
        // Hostile or broken replies are errors, never a panic or a made-up count.
        for bad in [
            &[][..],
            &[0xFE, 0xFF, 0xFF, 0xFF, b'I'][..],
            &[0xFF, 0xFF, 0xFF, 0xFF][..],
        ] {
            assert!(reply(bad).is_err(), "{bad:?}");
        }
        assert!(parse_info(&packet[5..20]).is_err());
        assert!(parse_players(&[5, 0, b'x']).is_err());
    }
}

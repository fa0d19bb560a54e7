//! The Minecraft Java Edition server list ping over TCP: a handshake (next state: status),
//! a status request, and the JSON reply's `players` (online, max, a sample of names).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::wire::players::Players;

/// The most a status reply may be: a server list ping answer is a few KiB (MOTD, favicon).
const MAX_REPLY: usize = 1 << 20;

pub fn write_varint(out: &mut Vec<u8>, value: i32) {
    let mut v = value as u32;
    loop {
        if v & !0x7F == 0 {
            out.push(v as u8);
            return;
        }
        out.push((v & 0x7F | 0x80) as u8);
        v >>= 7;
    }
}

/// A VarInt from `input` (at most five bytes).
pub fn read_varint(input: &mut impl Read) -> Result<i32, String> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let mut b = [0u8; 1];
        input
            .read_exact(&mut b)
            .map_err(|e| format!("a short reply: {e}"))?;
        value |= u32::from(b[0] & 0x7F) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(value as i32);
        }
    }
    Err("a VarInt longer than five bytes".into())
}

fn packet(id: i32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    write_varint(&mut inner, id);
    inner.extend_from_slice(body);
    let mut out = Vec::new();
    write_varint(&mut out, inner.len() as i32);
    out.extend(inner);
    out
}

/// The handshake (protocol version -1: "any", next state 1: status) and the status request.
pub fn requests(host: &str, port: u16) -> Vec<u8> {
    let mut hs = Vec::new();
    write_varint(&mut hs, -1);
    write_varint(&mut hs, host.len() as i32);
    hs.extend_from_slice(host.as_bytes());
    hs.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut hs, 1);
    let mut out = packet(0x00, &hs);
    out.extend(packet(0x00, &[]));
    out
}

/// The status JSON from a reply packet: length, id 0, then a string (length, UTF-8).
pub fn read_status(input: &mut impl Read) -> Result<String, String> {
    let len = read_varint(input)?;
    if len <= 0 || len as usize > MAX_REPLY {
        return Err(format!("a reply of {len} bytes"));
    }
    let id = read_varint(input)?;
    if id != 0 {
        return Err(format!("an unexpected packet {id:#x}"));
    }
    let text_len = read_varint(input)?;
    if text_len < 0 || text_len as usize > MAX_REPLY {
        return Err(format!("a status of {text_len} bytes"));
    }
    let mut text = vec![0u8; text_len as usize];
    input
        .read_exact(&mut text)
        .map_err(|e| format!("a short status: {e}"))?;
    String::from_utf8(text).map_err(|_| "a status that is not UTF-8".into())
}

/// The players of a status JSON.
pub fn parse_status(json: &str) -> Result<Players, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("a status that is not JSON: {e}"))?;
    let p = &v["players"];
    let number = |key: &str| p[key].as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32);
    Ok(Players {
        online: number("online").ok_or("a status without players.online")?,
        max: number("max"),
        names: p["sample"]
            .as_array()
            .map(|sample| {
                sample
                    .iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Pings 127.0.0.1:`port`.
pub fn query(port: u16, timeout: Duration) -> Result<Players, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach port {port}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&requests("127.0.0.1", port))
        .map_err(|e| format!("cannot send: {e}"))?;
    parse_status(&read_status(&mut stream)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_handshakes_and_status_replies() {
        for (value, bytes) in [
            (0, vec![0x00]),
            (255, vec![0xFF, 0x01]),
            (25565, vec![0xDD, 0xC7, 0x01]),
            (-1, vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(read_varint(&mut &bytes[..]).unwrap(), value);
        }
        assert!(read_varint(&mut &[0xFF; 6][..]).is_err());
        let r = requests("127.0.0.1", 25565);
        assert_eq!(
            &r[..3],
            &[0x13, 0x00, 0xFF],
            "length 19, handshake, protocol -1"
        );
        assert_eq!(&r[r.len() - 2..], &[0x01, 0x00], "the status request");

        // A vanilla 1.21 server's reply, as captured.
        let json = r#"{"version":{"name":"1.21.1","protocol":767},"enforcesSecureChat":true,"description":"A Minecraft Server","players":{"max":20,"online":2,"sample":[{"id":"069a79f4-44e9-4726-a5be-fca90e38aaf5","name":"Notch"},{"id":"853c80ef-3c37-49fd-aa49-938b674adae6","name":"jeb_"}]}}"#;
        let mut reply = Vec::new();
        let mut body = vec![0x00];
        write_varint(&mut body, json.len() as i32);
        body.extend_from_slice(json.as_bytes());
        write_varint(&mut reply, body.len() as i32);
        reply.extend(body);
        let players = parse_status(&read_status(&mut &reply[..]).unwrap()).unwrap();
        assert_eq!(players.online, 2);
        assert_eq!(players.max, Some(20));
        assert_eq!(players.names, ["Notch", "jeb_"]);
        // A hostile length is refused before anything is allocated.
        let mut huge = Vec::new();
        write_varint(&mut huge, i32::MAX);
        assert!(read_status(&mut &huge[..]).is_err());
        assert!(parse_status(r#"{"players":{}}"#).is_err());
    }
}

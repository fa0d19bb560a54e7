//! Spans of time typed on the command line: `90s`, `10m`, `2h`, `1d` (a bare number is seconds).

/// The span in milliseconds.
pub fn parse_span_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("bad span {text:?}: a number and a unit, like 90s, 10m, 2h or 1d"))?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("bad span {text:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("bad span {text:?}: too long"))
}

/// The span in whole seconds.
pub fn parse_span_seconds(text: &str) -> Result<i64, String> {
    Ok(parse_span_ms(text)? / 1000)
}

/// `10m,5m,1m`: spans in seconds.
pub fn parse_span_list(text: &str) -> Result<Vec<i32>, String> {
    text.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let s = parse_span_seconds(t)?;
            i32::try_from(s).map_err(|_| format!("bad span {t:?}: too long"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_write_them() {
        assert_eq!(parse_span_seconds("90"), Ok(90));
        assert_eq!(parse_span_seconds("30m"), Ok(1800));
        assert_eq!(parse_span_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_span_list("10m,5m, 1m"), Ok(vec![600, 300, 60]));
        assert!(parse_span_ms("10 minutes").is_err());
        assert!(parse_span_ms("m").is_err());
        assert!(parse_span_ms("99999999999999999d").is_err());
    }
}

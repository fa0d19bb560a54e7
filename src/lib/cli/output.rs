//! Output for people (aligned tables, times) and for scripts (`--json`, one list shape).

use serde_json::{json, Value};

use super::shared::Ctx;

/// Renders rows as an aligned plain-text table with a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Text as it is safe to print on an operator's terminal: control characters (ANSI escape
/// sequences that could rewrite the screen, carriage returns that hide what came before, a
/// newline that fakes a second line) shown escaped. Hosts and games write some of what the
/// CLI prints (exit reasons, names).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect(),
    )
}

pub(crate) fn when(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The one JSON shape of every list: `{"items": [...], "total": N}` (`total` counts every
/// match, which may be more than the items of one page).
pub(crate) fn json_list(items: Vec<Value>, total: usize) -> Value {
    json!({"items": items, "total": total})
}

/// A list: a table for people, `{"items", "total"}` with `--json`.
pub(crate) fn print(ctx: &Ctx, items: Vec<Value>, headers: &[&str], rows: Vec<Vec<String>>) {
    let total = items.len();
    print_page(ctx, items, total, headers, rows);
}

/// One page of a longer list (`total` counts every match).
pub(crate) fn print_page(
    ctx: &Ctx,
    items: Vec<Value>,
    total: usize,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) {
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_list(items, total)).expect("serialisable")
        );
    } else if rows.is_empty() {
        println!("(none)");
    } else {
        print!("{}", table(headers, &rows));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(super::printable("plain text"), "plain text");
        assert_eq!(
            super::printable("crashed\x1b[2J\rall good\nfake: line"),
            "crashed\\u{1b}[2J\\rall good\\nfake: line"
        );
        let t = super::table(&["REASON"], &[vec!["a\x1b[31mred".into()]]);
        assert!(!t.contains('\x1b'), "{t:?}");
    }

    #[test]
    fn columns_align() {
        let t = super::table(
            &["VERSION", "NAME"],
            &[
                vec!["1".into(), "a".into()],
                vec!["10".into(), "bbb".into()],
            ],
        );
        assert_eq!(t, "VERSION  NAME\n1        a\n10       bbb\n");
    }
}

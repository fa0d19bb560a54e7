//! Process-name patterns: `*`, `prefix*`, `*suffix`, `*mid*`, or an exact name; an exact base
//! name also matches its instances `base-N`.

pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(rest), _) if rest.ends_with('*') && rest.len() > 1 => {
            name.contains(&rest[..rest.len() - 1])
        }
        (Some(suffix), _) => name.ends_with(suffix),
        (None, Some(prefix)) => name.starts_with(prefix),
        (None, None) => {
            name == pattern
                || name
                    .strip_prefix(pattern)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_matches as m;

    #[test]
    fn forms() {
        assert!(m("*", "anything"));
        assert!(m("web*", "web-server"));
        assert!(!m("web*", "a-web"));
        assert!(m("*server", "web-server"));
        assert!(!m("*server", "server-1"));
        assert!(m("*eb-s*", "web-server"));
        assert!(!m("*xyz*", "web-server"));
        assert!(m("web", "web"));
        assert!(!m("web", "webby"));
    }

    #[test]
    fn base_names_match_their_instances() {
        assert!(m("web", "web-1"));
        assert!(m("web", "web-200"));
        assert!(!m("web", "web-"));
        assert!(!m("web", "web-x"));
        assert!(!m("web", "web-1-2"));
        assert!(!m("we", "web-1"));
    }
}

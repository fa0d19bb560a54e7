//! AMQP topic matching: `*` matches exactly one word, `#` zero or more words.

/// Whether `routing_key` matches the binding `pattern`, as a RabbitMQ topic exchange decides.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    // An empty key has no words (so `#` matches it and `*` does not).
    let key: Vec<&str> = if routing_key.is_empty() {
        Vec::new()
    } else {
        routing_key.split('.').collect()
    };
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => {
            // `#` absorbs 0..=len words; collapse runs of `#` first to stay linear-ish.
            if rest.first() == Some(&"#") {
                return matches_words(rest, key);
            }
            (0..=key.len()).any(|skip| matches_words(rest, &key[skip..]))
        }
        Some((&word, rest)) => match key.split_first() {
            Some((&k, key_rest)) => (word == "*" || word == k) && matches_words(rest, key_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches as m;

    #[test]
    fn exact_and_star() {
        assert!(m("status.host.1", "status.host.1"));
        assert!(!m("status.host.1", "status.host.2"));
        assert!(m("status.*.1", "status.host.1"));
        assert!(m("*.*.*", "a.b.c"));
        assert!(!m("status.*", "status.host.1"), "* is exactly one word");
        assert!(!m("status.host.*", "status.host"), "* needs a word");
        assert!(
            m("status.host.*", "status.host."),
            "an empty word is still a word"
        );
    }

    #[test]
    fn hash_matches_zero_or_more() {
        assert!(m("status.host.#", "status.host.1"));
        assert!(m("status.host.#", "status.host"), "# matches zero words");
        assert!(m("status.host.#", "status.host.1.extra.words"));
        assert!(m("#", "anything.at.all"));
        assert!(m("#", ""));
        assert!(m("health.#", "health.host.1"));
        assert!(!m("health.#", "status.health.1"));
        assert!(m("#.1", "status.host.1"));
        assert!(m("#.host.#", "host"));
        assert!(m("a.#.z", "a.z"));
        assert!(m("a.#.z", "a.b.c.z"));
        assert!(!m("a.#.z", "a.b.c"));
        assert!(m("a.#.#.z", "a.z"));
        assert!(m("#.*", "a"));
        assert!(!m("#.*", ""));
    }

    #[test]
    fn words_are_whole_words() {
        assert!(!m("status.host", "status.hosts"));
        assert!(
            !m("stat*.host", "status.host"),
            "* is not a glob inside a word"
        );
        assert!(!m("status", "status.host"));
    }

    #[test]
    fn many_hashes_stay_fast() {
        let pattern = "#.#.#.#.#.#.#.#.#.#.#.#.x";
        let key = "a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.y";
        assert!(!m(pattern, key));
    }
}

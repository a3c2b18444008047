//! Topic names, topic filters and wildcard matching (MQTT 3.1.1 §4.7).
//!
//! A *name* is what a PUBLISH is sent to (no wildcards); a *filter* is what a
//! SUBSCRIBE asks for (`+` = exactly one level, `#` = this level and all
//! below, only as the last level).

use core::fmt;

/// The longest MQTT string: its length is a `u16` on the wire.
pub const MAX_STRING_LEN: usize = 65_535;

/// Why a topic name or filter is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopicError {
    /// Zero-length topics are forbidden (§4.7.3).
    Empty,
    /// Longer than 65,535 bytes of UTF-8.
    TooLong,
    /// Contains U+0000 (§1.5.3).
    ContainsNul,
    /// A topic *name* contains `+` or `#`.
    WildcardInName,
    /// `#` that is not a whole level or not the last level.
    InvalidMultiLevelWildcard,
    /// `+` that is not a whole level.
    InvalidSingleLevelWildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TopicError::Empty => "topic is empty",
            TopicError::TooLong => "topic is longer than 65535 bytes",
            TopicError::ContainsNul => "topic contains U+0000",
            TopicError::WildcardInName => "topic name contains a wildcard (+ or #)",
            TopicError::InvalidMultiLevelWildcard => "# must be a whole level and the last one",
            TopicError::InvalidSingleLevelWildcard => "+ must be a whole level",
        };
        f.write_str(s)
    }
}

impl std::error::Error for TopicError {}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_STRING_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::ContainsNul);
    }
    Ok(())
}

/// Checks a topic name for PUBLISH (and the Will): non-empty, at most 65,535
/// bytes, no NUL, no wildcards. `&str` is already valid UTF-8.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter for SUBSCRIBE/UNSUBSCRIBE: like a name, but `+` may
/// fill a whole level and `#` may fill the whole last level.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::InvalidMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidSingleLevelWildcard);
        }
    }
    Ok(())
}

/// True when `topic` (a name) matches `filter`. `a/#` also matches `a`;
/// `+` matches an empty level; topics starting with `$` (broker internals
/// like `$SYS/...`) are not matched by a filter starting with a wildcard
/// (§4.7.2). Never panics, whatever the inputs.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_topic_name("a/b/c"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::ContainsNul));
        assert_eq!(validate_topic_name(&"x".repeat(65_536)), Err(TopicError::TooLong));
        assert_eq!(validate_topic_name(&"x".repeat(65_535)), Ok(()));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/+", "a//b", "+/#", "$SYS/#"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for (bad, e) in [
            ("a/#/b", TopicError::InvalidMultiLevelWildcard),
            ("a#", TopicError::InvalidMultiLevelWildcard),
            ("a/b#", TopicError::InvalidMultiLevelWildcard),
            ("a+", TopicError::InvalidSingleLevelWildcard),
            ("a/+b", TopicError::InvalidSingleLevelWildcard),
            ("", TopicError::Empty),
        ] {
            assert_eq!(validate_topic_filter(bad), Err(e), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+", "a/"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "/x"),
            ("+", "x"),
            ("$SYS/#", "$SYS/broker"),
            ("$SYS/+", "$SYS/x"),
            ("vm/+/hb/+", "vm/v1/hb/d2"),
        ];
        let no = [
            ("a/b", "a/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("+", "a/b"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("vm/+/hb/+", "vm/v1/presence/d2"),
        ];
        for (f, t) in yes {
            assert!(topic_matches(f, t), "{f} should match {t}");
        }
        for (f, t) in no {
            assert!(!topic_matches(f, t), "{f} should not match {t}");
        }
    }
}

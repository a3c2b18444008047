//! The little JSON the shared state needs: validate a document, split an
//! object into its top-level members, write an object back.
//!
//! Per-field last-writer-wins works on the *top-level* fields of an object,
//! so the core never needs a JSON value tree: it keeps each field's value as
//! the raw JSON text the app gave (validated once, at the edge), and builds
//! documents by joining `"name":value` pairs. That is all `serde_json` would
//! be used for here, at a fraction of its wasm size (see `docs/state.md`).
//!
//! The grammar is RFC 8259's, with a nesting limit ([`MAX_DEPTH`]) so a
//! hostile peer cannot make the parser recurse without bound. Lone UTF-16
//! surrogates in `\u` escapes are accepted, as `JSON.parse` accepts them; in a
//! member *name* they decode to U+FFFD. Every function is total: any input
//! gives a value or a [`JsonError`], never a panic.

use core::fmt;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// Why a text is not the JSON asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON: the byte offset where parsing stopped.
    Syntax(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Valid JSON, but not an object where one is needed.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(at) => write!(f, "invalid JSON at byte {at}"),
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH}"),
            JsonError::NotAnObject => f.write_str("JSON value is not an object"),
        }
    }
}

impl std::error::Error for JsonError {}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self) -> Result<T, JsonError> {
        Err(JsonError::Syntax(self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    fn value(&mut self) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.nested(b'}', |p| {
                p.string(None)?;
                p.ws();
                p.eat(b':')?;
                p.value()
            }),
            Some(b'[') => self.nested(b']', Parser::value),
            Some(b'"') => self.string(None),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err(),
        }
    }

    /// An object or array: `open item (, item)* close`, one level deeper.
    fn nested(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<(), JsonError>) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err()
        }
    }

    fn digits(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        if self.i == start {
            self.err()
        } else {
            Ok(())
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return self.err(),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return self.err(),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// A string; its decoded text goes to `out` when given.
    fn string(&mut self, mut out: Option<&mut String>) -> Result<(), JsonError> {
        self.eat(b'"')?;
        loop {
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            if let Some(o) = out.as_deref_mut() {
                // The input is a `str` and we stopped at ASCII bytes, so this
                // slice is whole UTF-8.
                o.push_str(core::str::from_utf8(&self.b[start..self.i]).unwrap_or("\u{fffd}"));
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.escaped_char()?;
                            if let Some(o) = out.as_deref_mut() {
                                o.push(c);
                            }
                            continue;
                        }
                        _ => return self.err(),
                    };
                    self.i += 1;
                    if let Some(o) = out.as_deref_mut() {
                        o.push(c);
                    }
                }
                _ => return self.err(), // control character or end of input
            }
        }
    }

    /// After `\u`: one code point, joining a surrogate pair when one follows.
    fn escaped_char(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) && self.b[self.i..].starts_with(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Ok(char::from_u32(c).unwrap_or('\u{fffd}'));
            }
            self.i = save; // a lone high surrogate, then another escape
        }
        Ok(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }
}

/// Checks that `text` is exactly one JSON value (whitespace around it allowed).
pub fn validate(text: &str) -> Result<(), JsonError> {
    let mut p = Parser { b: text.as_bytes(), i: 0, depth: 0 };
    p.value()?;
    p.ws();
    if p.i == p.b.len() {
        Ok(())
    } else {
        p.err()
    }
}

/// The members of a JSON object: decoded names with the raw text of their
/// values (trimmed, valid JSON each), sorted by name. A name given twice
/// keeps its last value, as `JSON.parse` does.
pub fn split_object(text: &str) -> Result<Vec<(String, &str)>, JsonError> {
    let mut p = Parser { b: text.as_bytes(), i: 0, depth: 1 };
    p.ws();
    if p.peek() != Some(b'{') {
        validate(text)?;
        return Err(JsonError::NotAnObject);
    }
    p.i += 1;
    let mut members: Vec<(String, &str)> = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let mut name = String::new();
            p.string(Some(&mut name))?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let start = p.i;
            p.value()?;
            // Values start and end on ASCII bytes, so these are char boundaries.
            let raw = text.get(start..p.i).ok_or(JsonError::Syntax(start))?;
            insert_member(&mut members, name, raw);
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return p.err(),
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return p.err();
    }
    Ok(members)
}

/// Inserts a member in name order; a name given again replaces the value.
fn insert_member<'a>(members: &mut Vec<(String, &'a str)>, name: String, raw: &'a str) {
    match members.binary_search_by(|m| m.0.as_str().cmp(&name)) {
        Ok(i) => members[i].1 = raw,
        Err(i) => members.insert(i, (name, raw)),
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object from `(name, raw JSON value)` members, in the order given.
pub fn write_object<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, name);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn accepts_and_rejects_the_grammar() {
        for ok in [
            "0", "-0", "1.5e+3", "-12.0E-2", "\"\"", "\"a\\u00e9\\ud83d\\ude00\\n\"", "true", " null ",
            "[]", "[1, [2, {}]]", "{\"a\":{\"b\":[true,false,null]}}", "\"\\ud800\"", "\"\\udc00x\"",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", " ", "01", "1.", ".5", "-", "1e", "+1", "[1,]", "{\"a\"}", "{\"a\":1,}", "{a:1}", "'x'", "tru",
            "\"\u{1}\"", "\"\\x\"", "\"\\u12g4\"", "[1 2]", "1 2", "\"abc", "{\"a\":1", "nul",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} should be rejected");
        }
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(validate(&deep), Ok(()));
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(validate(&deeper), Err(JsonError::TooDeep));
    }

    #[test]
    fn splits_objects_into_sorted_members_last_name_wins() {
        let m = split_object(" { \"b\" : [1, 2] , \"a\":\"x\", \"b\": {\"c\":null} } ").unwrap();
        assert_eq!(m, vec![("a".to_string(), "\"x\""), ("b".to_string(), "{\"c\":null}")]);
        assert_eq!(split_object("{}").unwrap(), vec![]);
        let m = split_object(r#"{"\u0061\n":1}"#).unwrap();
        assert_eq!(m[0].0, "a\n");
        assert_eq!(split_object("[1]"), Err(JsonError::NotAnObject));
        assert_eq!(split_object("3"), Err(JsonError::NotAnObject));
        assert!(matches!(split_object("[1"), Err(JsonError::Syntax(_))));
        assert!(matches!(split_object("{\"a\":1} x"), Err(JsonError::Syntax(_))));
        assert_eq!(split_object(r#"{"\ud800":1}"#).unwrap()[0].0, "\u{fffd}");
    }

    #[test]
    fn writes_objects_that_parse_back() {
        let text = write_object([("a\"\\\u{1}é", "1"), ("b", "[true]")]);
        assert_eq!(text, "{\"a\\\"\\\\\\u0001é\":1,\"b\":[true]}");
        let m = split_object(&text).unwrap();
        assert_eq!(m, vec![("a\"\\\u{1}é".to_string(), "1"), ("b".to_string(), "[true]")]);
    }

    /// Random JSON-ish texts, built to be valid and then mutated.
    fn random_json(rng: &mut Rng, depth: usize, out: &mut String) {
        match rng.below(if depth > 5 { 5 } else { 7 }) {
            0 => out.push_str(["true", "false", "null"][rng.below(3) as usize]),
            1 => out.push_str(["0", "-1", "3.25", "1e9", "-0.5E-3", "12345678901234567890"][rng.below(6) as usize]),
            2 | 3 => {
                let s: String = (0..rng.below(6)).map(|_| ['a', 'é', '"', '\\', '\n', '😀', '\u{7}'][rng.below(7) as usize]).collect();
                write_string(out, &s);
            }
            4 => out.push_str(["\"\\u0041\"", "\"\\ud83d\\ude00\"", "\"\\/\""][rng.below(3) as usize]),
            5 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    random_json(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, ["a", "b", "a", "\u{e9}"][rng.below(4) as usize]);
                    out.push_str(" : ");
                    random_json(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    fn mutate(rng: &mut Rng, s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(b.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => b.insert(at, b"{}[],:\"\\-.e0 tnu"[rng.below(16) as usize]),
                _ if at < b.len() => b[at] = rng.next_u64() as u8,
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// 100,000 seeded texts: our validator agrees with serde_json (a dev
    /// dependency only) on every one, and splitting never panics.
    #[test]
    fn fuzz_against_serde_json() {
        let mut rng = Rng::new(0x15_0e);
        let (mut valid, mut objects) = (0, 0);
        for n in 0..100_000 {
            let mut s = String::new();
            random_json(&mut rng, 0, &mut s);
            let s = if n % 2 == 0 { s } else { mutate(&mut rng, &s) };
            let ours = validate(&s).is_ok();
            // serde_json refuses lone surrogates, JSON.parse (and we) accept them.
            if !s.contains("\\ud") && !s.contains("\\udc") {
                match serde_json::from_str::<serde_json::Value>(&s) {
                    Ok(_) => assert!(ours, "we refuse {s:?}"),
                    // JSON.parse (and we) accept numbers beyond f64 (as Infinity).
                    Err(e) if e.to_string().contains("number out of range") => {}
                    Err(e) => assert!(!ours, "we accept {s:?}, serde_json: {e}"),
                }
            }
            valid += usize::from(ours);
            if let Ok(members) = split_object(&s) {
                objects += 1;
                for (_, v) in &members {
                    assert_eq!(validate(v), Ok(()));
                }
                let back = write_object(members.iter().map(|(k, v)| (k.as_str(), *v)));
                assert_eq!(split_object(&back).unwrap(), members);
            }
        }
        assert!(valid > 40_000 && objects > 5_000, "{valid} valid, {objects} objects");
    }
}

//! Quoting for text that a POSIX shell reads as code (hook output, generated scripts).

/// Quotes `value` as one shell word that expands to exactly `value`.
///
/// The value is wrapped in single quotes, inside which a POSIX shell gives no character
/// a special meaning; each `'` in the value is written as `'\''` (close the quotes, an
/// escaped quote, reopen). Values made only of characters that are never special are
/// left bare to keep output readable.
pub fn quote(value: &str) -> String {
    let is_plain = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '@' | '%' | '=')
    };
    if !value.is_empty() && value.chars().all(is_plain) {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("abc", "abc"; "plain")]
    #[test_case("", "''"; "empty")]
    #[test_case("a b", "'a b'"; "space")]
    #[test_case("it's", r"'it'\''s'"; "single quote")]
    #[test_case("$(id) `id` \"x\"\n", "'$(id) `id` \"x\"\n'"; "hostile")]
    #[test_case("=leading", "=leading"; "equals is not special in a word")]
    fn quotes(value: &str, expected: &str) {
        assert_eq!(quote(value), expected);
    }
}

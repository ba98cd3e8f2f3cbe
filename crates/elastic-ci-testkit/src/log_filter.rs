//! CloudWatch Logs filter patterns, evaluated against log lines as the service does,
//! for the forms the stack's metric filters use: a JSON pattern of `$.field = "text"`
//! comparisons joined by `&&` (`{ $.target = "x" && $.message = "poll" }`), and terms
//! that must all appear in the line, a double-quoted phrase being one term
//! (`"ERROR boot failed"`). The local emulator cannot test a metric filter, so the
//! tests hold the stack's patterns against the lines the binaries write with this.
//!
//! Anything else (`||`, numbers, wildcards, `?term`, `-term`, `[ ]` space-delimited
//! patterns) is refused rather than guessed.

/// Whether `pattern` matches the log event `message`; an error names what this
/// evaluator does not understand.
pub fn matches(pattern: &str, message: &str) -> Result<bool, String> {
    let pattern = pattern.trim();
    if let Some(inner) = pattern.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
        return json_matches(inner, message);
    }
    if pattern.starts_with('[') {
        return Err(format!("space-delimited pattern {pattern:?} is not supported"));
    }
    let terms = terms(pattern)?;
    Ok(terms.iter().all(|term| message.contains(term.as_str())))
}

/// The terms of a term pattern: words, or double-quoted phrases.
fn terms(pattern: &str) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    let mut rest = pattern.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| format!("unclosed quote in {pattern:?}"))?;
            terms.push(quoted[..end].to_owned());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.starts_with(['?', '-']) || word.contains('*') {
                return Err(format!("term {word:?} is not supported"));
            }
            terms.push(word.to_owned());
            rest = rest[end..].trim_start();
        }
    }
    Ok(terms)
}

/// `$.a = "x" && $.b != "y"` against a JSON message; a message that is not a JSON
/// object matches no JSON pattern.
fn json_matches(conditions: &str, message: &str) -> Result<bool, String> {
    if conditions.contains("||") {
        return Err(format!("|| in {conditions:?} is not supported"));
    }
    let event: serde_json::Value = match serde_json::from_str(message.trim()) {
        Ok(event @ serde_json::Value::Object(_)) => event,
        _ => return Ok(false),
    };
    for condition in conditions.split("&&") {
        let condition = condition.trim();
        let (selector, negated, value) = if let Some((left, right)) = condition.split_once("!=") {
            (left, true, right)
        } else if let Some((left, right)) = condition.split_once('=') {
            (left, false, right)
        } else {
            return Err(format!("condition {condition:?} is not `$.field = \"text\"`"));
        };
        let path = selector
            .trim()
            .strip_prefix("$.")
            .ok_or_else(|| format!("selector {selector:?} does not start with $."))?;
        let expected = value
            .trim()
            .strip_prefix('"')
            .and_then(|value| value.strip_suffix('"'))
            .ok_or_else(|| format!("value {value:?} is not a double-quoted string"))?;
        if expected.contains('*') {
            return Err(format!("wildcard in {expected:?} is not supported"));
        }
        let field = event.pointer(&format!("/{}", path.replace('.', "/")));
        let equal = field.and_then(serde_json::Value::as_str) == Some(expected);
        if equal == negated {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patterns_compare_top_level_and_nested_fields() {
        let line = r#"{"target":"t::poll","message":"poll","nested":{"level":"INFO"}}"#;
        assert_eq!(matches(r#"{ $.target = "t::poll" && $.message = "poll" }"#, line), Ok(true));
        assert_eq!(matches(r#"{ $.message = "poll failed" }"#, line), Ok(false));
        assert_eq!(matches(r#"{ $.nested.level = "INFO" }"#, line), Ok(true));
        assert_eq!(matches(r#"{ $.message != "poll" }"#, line), Ok(false));
        assert_eq!(matches(r#"{ $.missing = "x" }"#, line), Ok(false));
        assert_eq!(matches(r#"{ $.message = "poll" }"#, "not json"), Ok(false));
        assert!(matches(r#"{ $.a = "x" || $.b = "y" }"#, line).is_err());
        assert!(matches(r#"{ $.a = 1 }"#, line).is_err());
    }

    #[test]
    fn term_patterns_need_every_term_and_phrases_whole() {
        let line = "2024-01-01T00:00:00Z ERROR boot failed step=\"x\"";
        assert_eq!(matches("\"ERROR boot failed\"", line), Ok(true));
        assert_eq!(matches("ERROR failed", line), Ok(true));
        assert_eq!(matches("\"ERROR failed\"", line), Ok(false));
        assert_eq!(matches("\"boot failed\"", "2024 WARN boot ok"), Ok(false));
        assert!(matches("?ERROR", line).is_err());
        assert!(matches("[ip, user]", line).is_err());
    }
}

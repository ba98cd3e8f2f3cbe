//! Text helpers shared by the commands: times, ages, durations, aligned tables.

use std::time::{Duration, SystemTime};

use elastic_ci_core::lifecycle::format_rfc3339;

/// Serialises a time as RFC 3339 (for `--json`).
pub fn serialize_time<S: serde::Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339(*time))
}

/// An age such as `42s`, `5m`, `3h` or `2d`.
pub fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Parses `--since`: a number and a unit (`30s`, `15m`, `1h`, `7d`), or a Go duration
/// (`1h30m`).
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let error = || {
        format!("invalid duration {text:?}: expected a number and a unit, such as 30m, 1h or 7d")
    };
    if let Some(days) = text.strip_suffix('d') {
        let days: u64 = days.parse().map_err(|_| error())?;
        return days.checked_mul(86_400).map(Duration::from_secs).ok_or_else(error);
    }
    let nanos = elastic_ci_core::scaling::goparse::parse_duration(text).ok_or_else(error)?;
    u64::try_from(nanos).ok().filter(|nanos| *nanos > 0).map(Duration::from_nanos).ok_or_else(error)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index == last {
                line.push_str(cell);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A count that may be missing, as a table cell.
pub fn cell(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_since() {
        assert_eq!(parse_since("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_since("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_since("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(
            parse_since("soon"),
            Err("invalid duration \"soon\": expected a number and a unit, such as 30m, 1h or 7d"
                .to_owned())
        );
        assert!(parse_since("0s").is_err());
    }

    #[test]
    fn aligns_columns() {
        let text = table(&["id", "state"], &[vec!["i-1234".to_owned(), "InService".to_owned()]]);
        assert_eq!(text, "id      state\ni-1234  InService\n");
        assert_eq!(age(Duration::from_secs(59)), "59s");
        assert_eq!(age(Duration::from_secs(3600)), "60m");
        assert_eq!(age(Duration::from_secs(3 * 86_400)), "3d");
    }
}

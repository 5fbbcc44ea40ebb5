//! How the console prints: human tables and key/value blocks, JSON lines,
//! and time formatting.
//!
//! Everything here is pure apart from [`Printer`], which only writes to the
//! writer it is given. Nothing here reads the clock: callers pass `now` (Unix
//! seconds) so that every format is unit-testable. Text that came from the
//! outside (host names, OS strings, token names) goes through [`printable`]
//! before it reaches a terminal, so a hostile agent cannot smuggle terminal
//! escape sequences into a technician's screen.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables and sentences for people.
    Human,
    /// One JSON object per line, each with a `type` field: a stable interface
    /// for scripts.
    Json,
}

/// Writes results to stdout (or any writer, in tests) in one [`Format`].
///
/// Write errors are returned, never swallowed: `main` treats a broken pipe
/// as success and everything else as a failure.
pub struct Printer<'a> {
    out: &'a mut dyn Write,
    format: Format,
}

impl std::fmt::Debug for Printer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<'a> Printer<'a> {
    /// A printer writing to `out`.
    pub fn new(out: &'a mut dyn Write, format: Format) -> Self {
        Self { out, format }
    }

    /// Whether results should be printed as JSON lines.
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints one record as one JSON line.
    pub fn json<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        let line = json_line(record)?;
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// Prints human text; a final newline is added if missing.
    pub fn text(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One record as a single line of JSON (without the newline).
pub fn json_line<T: Serialize>(record: &T) -> io::Result<String> {
    serde_json::to_string(record).map_err(io::Error::other)
}

/// The record printed on stdout with `--json` when a command fails.
#[derive(Debug, Serialize)]
pub struct ErrorRecord<'a> {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The same one-line reason as on stderr.
    pub message: &'a str,
}

impl<'a> ErrorRecord<'a> {
    /// An error record for `message`.
    pub fn new(message: &'a str) -> Self {
        Self {
            kind: "error",
            message,
        }
    }
}

/// Replaces characters that would let outside text control the terminal
/// (control characters, escape sequences, bidirectional overrides) with
/// U+FFFD, and leaves everything else, including non-Latin scripts, alone.
pub fn printable(text: &str) -> Cow<'_, str> {
    fn dangerous(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }
    if text.chars().any(dangerous) {
        Cow::Owned(
            text.chars()
                .map(|c| if dangerous(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// Columns on a terminal that `text` takes (wide CJK characters count two,
/// combining marks zero).
pub fn display_width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// Cuts `text` to at most `max` terminal columns, ending with `…` when cut.
pub fn truncate_to_width(text: &str, max: usize) -> Cow<'_, str> {
    if display_width(text) <= max {
        return Cow::Borrowed(text);
    }
    let budget = max.saturating_sub(1); // Room for the ellipsis.
    let mut used = 0;
    let mut cut = String::new();
    for c in text.chars() {
        let width = c.width().unwrap_or(0);
        if used + width > budget {
            break;
        }
        used += width;
        cut.push(c);
    }
    if max > 0 {
        cut.push('…');
    }
    Cow::Owned(cut)
}

/// A column of a [`Table`].
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Header text, upper case by convention.
    pub header: &'static str,
    /// Longest a cell may be, in terminal columns; longer cells are cut with
    /// `…` so that one odd value cannot push every other column off screen.
    pub max_width: Option<usize>,
}

impl Column {
    /// A column whose cells are never cut.
    pub const fn new(header: &'static str) -> Self {
        Self {
            header,
            max_width: None,
        }
    }

    /// A column whose cells are cut at `max_width` terminal columns.
    pub const fn capped(header: &'static str, max_width: usize) -> Self {
        Self {
            header,
            max_width: Some(max_width),
        }
    }
}

/// A plain-text table: columns separated by two spaces, aligned by terminal
/// width (not bytes or chars), no trailing spaces.
#[derive(Debug)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

/// Space between two columns.
const GAP: &str = "  ";

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: &[Column]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are made [`printable`] and cut to their column's
    /// width. Missing cells are empty, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cells: Vec<String> = cells
            .into_iter()
            .zip(&self.columns)
            .map(|(cell, column)| {
                let clean = printable(cell.as_ref()).into_owned();
                match column.max_width {
                    Some(max) => truncate_to_width(&clean, max).into_owned(),
                    None => clean,
                }
            })
            .collect();
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header line.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| display_width(c.header))
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(cell));
            }
        }
        let mut text = String::new();
        let header = self.columns.iter().map(|c| c.header);
        push_line(&mut text, header, &widths);
        for row in &self.rows {
            push_line(&mut text, row.iter().map(String::as_str), &widths);
        }
        text
    }
}

fn push_line<'s>(text: &mut String, cells: impl Iterator<Item = &'s str>, widths: &[usize]) {
    let mut line = String::new();
    for (index, (cell, width)) in cells.zip(widths).enumerate() {
        if index > 0 {
            line.push_str(GAP);
        }
        line.push_str(cell);
        let padding = width.saturating_sub(display_width(cell));
        line.extend(std::iter::repeat_n(' ', padding));
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

/// Aligned `key: value` lines, for showing one object.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| display_width(key) + 1)
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        let label = format!("{key}:");
        let padding = width.saturating_sub(display_width(&label));
        text.push_str(&label);
        text.extend(std::iter::repeat_n(' ', padding + 1));
        text.push_str(&printable(value));
        text.push('\n');
    }
    text
}

/// Last second that RFC 3339 (four-digit years) can express:
/// 9999-12-31T23:59:59Z.
const LAST_RFC3339_SECOND: i64 = 253_402_300_799;

/// Unix seconds as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z`.
///
/// Times outside 1970..=9999 (only a damaged relay database would hold
/// them) are clamped to the nearest representable second rather than
/// failing the whole command.
pub fn rfc3339(unix_seconds: i64) -> String {
    let clamped = unix_seconds.clamp(0, LAST_RFC3339_SECOND);
    let since_epoch = Duration::from_secs(u64::try_from(clamped).unwrap_or(0));
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch).to_string()
}

/// Optional Unix seconds as RFC 3339, or `None` (JSON `null`).
pub fn rfc3339_opt(unix_seconds: Option<i64>) -> Option<String> {
    unix_seconds.map(rfc3339)
}

/// How long ago (or how far ahead) `at` is from `now`, in the largest whole
/// unit: `now`, `45s ago`, `3m ago`, `2h ago`, `5d ago`, or `in 3m`, `in 7d`.
///
/// Units are floored: 119 seconds is `1m ago`, 23 h 59 min is `23h ago`.
pub fn relative(now: i64, at: i64) -> String {
    let delta = i128::from(now) - i128::from(at);
    if delta == 0 {
        return "now".to_owned();
    }
    let amount = delta.unsigned_abs();
    let text = if amount < 60 {
        format!("{amount}s")
    } else if amount < 3_600 {
        format!("{}m", amount / 60)
    } else if amount < 86_400 {
        format!("{}h", amount / 3_600)
    } else {
        format!("{}d", amount / 86_400)
    };
    if delta > 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// An absolute time with its relative form, for key/value blocks:
/// `2024-05-01T12:00:00Z (3m ago)`.
pub fn absolute_and_relative(now: i64, at: i64) -> String {
    format!("{} ({})", rfc3339(at), relative(now, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_time_at_unit_boundaries() {
        let now = 1_700_000_000;
        let cases = [
            (0, "now"),
            (1, "1s ago"),
            (59, "59s ago"),
            (60, "1m ago"),
            (119, "1m ago"),
            (3_599, "59m ago"),
            (3_600, "1h ago"),
            (86_399, "23h ago"),
            (86_400, "1d ago"),
            (30 * 86_400, "30d ago"),
            (-1, "in 1s"),
            (-60, "in 1m"),
            (-86_400, "in 1d"),
            (-7 * 86_400, "in 7d"),
        ];
        for (ago, expected) in cases {
            assert_eq!(relative(now, now - ago), expected, "{ago} seconds ago");
        }
    }

    #[test]
    fn relative_time_survives_extreme_values() {
        assert_eq!(
            relative(i64::MAX, i64::MIN),
            format!("{}d ago", (u128::from(u64::MAX)) / 86_400)
        );
        assert!(relative(i64::MIN, i64::MAX).starts_with("in "));
    }

    #[test]
    fn rfc3339_formats_and_clamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_opt(None), None);
        assert_eq!(
            absolute_and_relative(1_700_000_180, 1_700_000_000),
            "2023-11-14T22:13:20Z (3m ago)"
        );
    }

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut table = Table::new(&[
            Column::new("ID"),
            Column::new("NAME"),
            Column::new("STATUS"),
        ]);
        table.row(["1", "alice", "active"]);
        table.row(["22", "bob", ""]);
        assert_eq!(
            table.render(),
            "ID  NAME   STATUS\n\
             1   alice  active\n\
             22  bob\n"
        );
    }

    #[test]
    fn table_aligns_by_terminal_width_for_unicode() {
        let mut table = Table::new(&[Column::new("HOST"), Column::new("OS")]);
        table.row(["café-pc", "linux"]); // 7 columns, 8 bytes
        table.row(["東京-pc", "macos"]); // 2 wide characters: 7 columns
        table.row(["e\u{301}", "windows"]); // e + combining acute: 1 column
        let text = table.render();
        let os_columns: Vec<usize> = text
            .lines()
            .map(|line| {
                let (before, _) = line.rsplit_once("  ").unwrap_or_default();
                display_width(before) + 2
            })
            .collect();
        assert_eq!(os_columns, vec![9, 9, 9, 9], "{text}");
        assert!(text.contains("東京-pc  macos"), "{text}");
    }

    #[test]
    fn table_cuts_long_cells_and_neutralises_escapes() {
        let mut table = Table::new(&[Column::capped("HOST", 8), Column::new("OS")]);
        table.row(["a-very-long-hostname", "linux"]);
        table.row(["東京東京東京東京", "x"]);
        table.row(["evil\u{1b}[2J", "y"]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "a-very-…  linux");
        // Wide characters are never split: 3 of them (6 columns) plus `…`.
        assert_eq!(lines[2], "東京東…   x");
        assert_eq!(lines[3], "evil\u{FFFD}[2J  y");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn table_tolerates_ragged_rows() {
        let mut table = Table::new(&[Column::new("A"), Column::new("B")]);
        table.row(["1"]);
        table.row(["1", "2", "3"]);
        assert_eq!(table.render(), "A  B\n1\n1  2\n");
    }

    #[test]
    fn key_values_align_and_sanitise() {
        let text = key_values(&[
            ("id", "dev_1".to_owned()),
            ("hostname", "a\u{202E}b".to_owned()),
        ]);
        assert_eq!(text, "id:       dev_1\nhostname: a\u{FFFD}b\n");
    }

    #[test]
    fn printer_writes_one_json_object_per_line() {
        let mut buffer = Vec::new();
        let mut printer = Printer::new(&mut buffer, Format::Json);
        assert!(printer.is_json());
        printer.json(&ErrorRecord::new("boom\nline")).unwrap();
        printer.json(&ErrorRecord::new("two")).unwrap();
        let text = String::from_utf8(buffer).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"type":"error","message":"boom\nline"}"#,
                r#"{"type":"error","message":"two"}"#
            ]
        );
    }

    #[test]
    fn printer_adds_missing_newline() {
        let mut buffer = Vec::new();
        let mut printer = Printer::new(&mut buffer, Format::Human);
        printer.text("a").unwrap();
        printer.text("b\n").unwrap();
        assert_eq!(buffer, b"a\nb\n");
    }
}

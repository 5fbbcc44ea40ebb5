//! Why something could not be measured, in French.
//!
//! The agent and the classifier write the reasons of [`crate::Probe::Unknown`]
//! and [`crate::Unknown`] in English (they are stored in snapshots and
//! verdicts as plain strings). This catalogue gives the French report their
//! French version, keyed by the English text; a `{}` in a key stands for
//! any text (a field name, an error), carried over unchanged. A reason not
//! in the catalogue stays English and the report says so.
//!
//! Pure: no I/O.

/// English reason templates and their French versions. `{}` matches any
/// text, in order.
pub static CATALOGUE: &[(&str, &str)] = &[];

/// The French version of `reason`, or `None` when the catalogue has none.
pub fn french(reason: &str) -> Option<String> {
    CATALOGUE
        .iter()
        .find_map(|(en, fr)| fill(fr, &captures(en, reason)?))
}

/// The texts `template`'s `{}` stand for in `text`, if it matches.
fn captures<'t>(template: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let parts: Vec<&str> = template.split("{}").collect();
    let mut rest = text.strip_prefix(parts[0])?;
    let mut captured = Vec::new();
    for (i, part) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        let at = if last {
            rest.strip_suffix(part).map(str::len)?
        } else if part.is_empty() {
            return None;
        } else {
            rest.find(part)?
        };
        captured.push(&rest[..at]);
        rest = &rest[at + part.len()..];
    }
    rest.is_empty().then_some(captured)
}

/// `template` with its `{}` replaced by `values`, in order.
fn fill(template: &str, values: &[&str]) -> Option<String> {
    let parts: Vec<&str> = template.split("{}").collect();
    if parts.len() != values.len() + 1 {
        return None;
    }
    let mut out = parts[0].to_owned();
    for (value, part) in values.iter().zip(&parts[1..]) {
        out.push_str(value);
        out.push_str(part);
    }
    Some(out)
}

//! Validation of names that become folder names under the warehouse root.

use crate::error::{Error, Result};

/// The longest accepted table, segment or goal name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// Checks that `name` is a lower-case identifier that cannot escape the warehouse root.
///
/// Accepted names match `[a-z][a-z0-9_]*` and are at most [`MAX_NAME_LEN`] bytes long, so they
/// contain no path separators, no `..`, and never start with the `_` that marks goalcast's own
/// bookkeeping folders.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 63 bytes")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lower-case ASCII letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("use only lower-case ASCII letters, digits and '_'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn plain_names_are_accepted() {
        for name in ["events", "goal_1", "a"] {
            assert!(validate_name("table", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn escaping_names_are_rejected() {
        let long = "a".repeat(64);
        for name in [
            "", "../x", "a/b", "a\\b", "..", ".hidden", "_staging", "Events", "1a", "a b", &long,
        ] {
            assert!(
                validate_name("table", name).is_err(),
                "{name:?} was accepted"
            );
        }
    }
}

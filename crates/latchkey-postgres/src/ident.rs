//! Schema and table names, checked before they go anywhere near SQL.

/// Longest accepted name: index names append up to 15 characters, and
/// PostgreSQL truncates identifiers at 63 bytes.
const MAX_LEN: usize = 40;

/// A schema or table name that is safe to splice into SQL: lower-case ASCII
/// letters, digits and `_`, not starting with a digit, at most 40 characters.
/// It is double-quoted wherever it is used as well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identifier(String);

/// A name [`Identifier::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a valid schema or table name: use 1 to {MAX_LEN} lower-case ASCII letters, digits and _, not starting with a digit"
)]
pub struct InvalidIdentifier(pub String);

impl Identifier {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`InvalidIdentifier`] for anything but `[a-z_][a-z0-9_]{0,39}`.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_postgres::Identifier;
    ///
    /// assert!(Identifier::new("sessions").is_ok());
    /// assert!(Identifier::new("sessions; DROP TABLE users").is_err());
    /// assert!(Identifier::new("Sessions").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, InvalidIdentifier> {
        let mut bytes = name.bytes();
        let valid_start = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let valid_rest = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid_start && valid_rest && name.len() <= MAX_LEN {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidIdentifier(name.to_owned()))
        }
    }

    pub(crate) fn default_schema() -> Self {
        Self(crate::DEFAULT_SCHEMA.to_owned())
    }

    pub(crate) fn default_table() -> Self {
        Self(crate::DEFAULT_TABLE.to_owned())
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted, as it goes into SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_everything_but_plain_lower_case_names() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "a b",
            "ÄÖ",
            "x".repeat(41).as_str(),
            "users;--",
        ] {
            assert!(Identifier::new(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "_x", "latchkey", "s_1", "x".repeat(40).as_str()] {
            assert!(Identifier::new(good).is_ok(), "{good:?}");
        }
        assert_eq!(Identifier::new("t").unwrap().quoted(), "\"t\"");
    }
}

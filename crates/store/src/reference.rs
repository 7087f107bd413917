//! How callers name a model: `name`, `name@3` or `name@alias`.

use crate::StoreError;

/// A model reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// The highest version of the name.
    Latest(String),
    Version(String, u64),
    Alias(String, String),
}

impl Reference {
    pub fn name(&self) -> &str {
        match self {
            Reference::Latest(name) | Reference::Version(name, _) | Reference::Alias(name, _) => {
                name
            }
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Latest(name) => write!(f, "{name}"),
            Reference::Version(name, version) => write!(f, "{name}@{version}"),
            Reference::Alias(name, alias) => write!(f, "{name}@{alias}"),
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Reference, StoreError> {
        let Some((name, after)) = text.split_once('@') else {
            check_name(text)?;
            return Ok(Reference::Latest(text.to_owned()));
        };
        check_name(name)?;
        if after.bytes().all(|b| b.is_ascii_digit()) && !after.is_empty() {
            let version = after.parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(|| {
                StoreError::InvalidReference(format!(
                    "{text:?}: a version is a whole number from 1, as `mittari model list` shows"
                ))
            })?;
            return Ok(Reference::Version(name.to_owned(), version));
        }
        check_alias(after)?;
        Ok(Reference::Alias(name.to_owned(), after.to_owned()))
    }
}

/// At most this many bytes in a name or alias: enough for `clv-eu-weekly-2026`, short enough
/// for a log line and a database key.
const MAX_LENGTH: usize = 64;

fn check(kind: &str, text: &str) -> Result<(), StoreError> {
    let fine = !text.is_empty()
        && text.len() <= MAX_LENGTH
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && text.as_bytes()[0].is_ascii_alphanumeric();
    if fine {
        Ok(())
    } else {
        Err(StoreError::InvalidReference(format!(
            "{text:?} is not a model {kind}: use 1 to {MAX_LENGTH} lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// A model name: lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    check("name", name)
}

/// An alias: as a name, and not all digits (`name@3` is a version).
pub fn check_alias(alias: &str) -> Result<(), StoreError> {
    check("alias", alias)?;
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::InvalidReference(format!(
            "{alias:?} is not an alias: all digits would read as a version; use a word such as production"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_written() {
        let check = |text: &str, expect: Result<Reference, &str>| {
            let got = text.parse::<Reference>();
            match (got, expect) {
                (Ok(got), Ok(expected)) => {
                    assert_eq!(got, expected, "{text}");
                    assert_eq!(got.to_string(), text);
                }
                (Err(error), Err(part)) => {
                    assert!(error.to_string().contains(part), "{text}: {error}");
                }
                (got, expect) => panic!("{text}: {got:?}, expected {expect:?}"),
            }
        };
        check("clv-eu", Ok(Reference::Latest("clv-eu".into())));
        check("clv-eu@3", Ok(Reference::Version("clv-eu".into(), 3)));
        check(
            "clv-eu@production",
            Ok(Reference::Alias("clv-eu".into(), "production".into())),
        );
        check("clv-eu@0", Err("a version is a whole number from 1"));
        check(
            "clv-eu@99999999999999999999999",
            Err("a version is a whole number from 1"),
        );
        check("CLV", Err("lowercase letters"));
        check("-clv", Err("starting with a letter or digit"));
        check("clv@", Err("is not a model alias"));
        check("", Err("is not a model name"));
        check("a@b@c", Err("is not a model alias"));
        check(&"x".repeat(65), Err("1 to 64"));
        assert!(check_alias("2026").is_err());
        assert!(check_alias("v2026").is_ok());
    }
}

//! Identifiers that come from outside: validated once, while deserialising.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An identifier of a conversation, representative, queue, skill or group:
/// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

/// Why a string is not an [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid id `{value}`: {why} (ids are 1-128 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit)"
)]
pub struct IdError {
    value: String,
    why: &'static str,
}

impl Id {
    pub const MAX_LEN: usize = 128;

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let fail = |why| {
            let shown: String = value.chars().take(140).collect();
            Err(IdError { value: shown, why })
        };
        let bytes = value.as_bytes();
        match bytes.first() {
            None => return fail("it is empty"),
            Some(b) if !b.is_ascii_alphanumeric() => {
                return fail("it must start with a letter or digit");
            }
            Some(_) => {}
        }
        if bytes.len() > Self::MAX_LEN {
            return fail("it is longer than 128 characters");
        }
        if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
            return fail("it contains a character outside A-Z a-z 0-9 . _ : -");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)?;
        Ok(Self(value))
    }
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        for ok in ["a", "CAS-1001", "c.1:x_y-z", &"a".repeat(128)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_str::<Id>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("invalid id `a b`"), "{err}");
    }
}

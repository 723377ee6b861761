//! A tenant's name and slug: the rules a business must meet to get its own tenant, kept here
//! with the other value types so that the API, the CLI and the store check them alike.
//!
//! Unlike the other value types these refuse with a [`FieldError`] that names its field
//! (`name` or `slug`), because a tenant is created outside any aggregate, straight from a
//! request or a command line.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A tenant's display name: 1 to 200 characters after trimming, on one line, without
/// control characters, so that it shows the same in every list and a NUL (which Postgres
/// refuses in text) is turned away as a client error rather than failing in the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    /// The longest name, in characters.
    const MAX_CHARS: usize = 200;

    /// Trims the name and checks it; a refusal names the field `name`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        let length = text.chars().count();
        if length == 0 || length > Self::MAX_CHARS {
            return Err(FieldError::new("name", "must be 1 to 200 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must not contain control characters (such as NUL, tabs or line breaks)",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant's short unique handle (`acme-meats`): 1 to 63 lowercase ASCII letters, digits
/// and `-`, starting with a letter or digit, so that it fits a DNS label and a URL path
/// segment as it is and two spellings of one slug cannot both exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// The longest slug, in bytes (a DNS label's limit).
    const MAX_BYTES: usize = 63;

    /// Checks the slug as given (it is not trimmed: a slug with spaces is a mistake to
    /// report, not to repair); a refusal names the field `slug`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let valid = !text.is_empty()
            && text.len() <= Self::MAX_BYTES
            && text.starts_with(allowed)
            && text.chars().all(|c| allowed(c) || c == '-');
        if !valid {
            return Err(FieldError::new(
                "slug",
                "must be lowercase letters, digits and '-', starting with a letter or digit, \
                 at most 63 characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Gives a tenant value type serde (through `parse`), `Display`, `AsRef<str>` and
/// `From<_> for String`, so both behave like the other value types.
macro_rules! tenant_value {
    ($name:ident) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(|e| de::Error::custom(e.message))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = FieldError;

            fn try_from(text: &str) -> Result<Self, FieldError> {
                Self::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

tenant_value!(TenantName);
tenant_value!(TenantSlug);

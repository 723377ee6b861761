//! Text values: names, codes, reasons, notes and e-mail addresses, trimmed and bounded so that
//! a blank name or a control character never reaches an event.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// What a text type allows besides its length.
#[derive(Clone, Copy)]
pub(super) enum TextKind {
    /// One line: no control characters at all.
    Line,
    /// One word: no whitespace and no control characters.
    Word,
    /// Several lines: newlines and tabs allowed, other control characters not.
    Lines,
}

/// Trims and checks text against a length range (in characters) and a kind.
pub(super) fn check_text(
    text: &str,
    min: usize,
    max: usize,
    kind: TextKind,
) -> Result<String, ValueError> {
    let text = text.trim();
    let length = text.chars().count();
    if length < min {
        return Err(ValueError::new("must not be empty"));
    }
    if length > max {
        return Err(ValueError::new(format!("must be at most {max} characters")));
    }
    let refused = |c: char| match kind {
        TextKind::Line => c.is_control(),
        TextKind::Word => c.is_control() || c.is_whitespace(),
        TextKind::Lines => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
    };
    if let Some(c) = text.chars().find(|&c| refused(c)) {
        return Err(ValueError::new(if c.is_whitespace() {
            "must not contain spaces"
        } else {
            "must not contain control characters"
        }));
    }
    Ok(text.to_owned())
}

/// The JSON Schema of a text type: a string of `min` to `max` characters (JSON Schema counts
/// characters as Rust's `chars` does) without the characters `kind` refuses, so that the
/// event documents say what a consumer will find, not only "a string".
pub(super) fn text_schema(min: usize, max: usize, kind: TextKind) -> schemars::Schema {
    let (pattern, what) = match kind {
        TextKind::Line => (r"^[^\u0000-\u001f\u007f-\u009f]*$", "one line"),
        TextKind::Word => (r"^[^\s\u0000-\u001f\u007f-\u009f]*$", "one word, no spaces"),
        TextKind::Lines => (
            r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$",
            "text: newlines and tabs allowed",
        ),
    };
    schemars::json_schema!({
        "type": "string",
        "minLength": min,
        "maxLength": max,
        "pattern": pattern,
        "description": format!("{what}, trimmed, {min} to {max} characters"),
    })
}

/// Declares a trimmed, length-bounded text newtype with parse, serde and Display.
macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident, $min:expr, $max:expr, $kind:expr) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Trims the text and checks it.
            pub fn parse(text: &str) -> Result<Self, $crate::values::ValueError> {
                $crate::values::text::check_text(text, $min, $max, $kind).map(Self)
            }

            /// The trimmed text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::values::ValueError;

            fn try_from(text: String) -> Result<Self, $crate::values::ValueError> {
                Self::parse(&text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::values::ValueError;

            fn try_from(text: &str) -> Result<Self, $crate::values::ValueError> {
                Self::parse(text)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::values::ValueError;

            fn from_str(text: &str) -> Result<Self, $crate::values::ValueError> {
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

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                $crate::values::text::text_schema($min, $max, $kind)
            }
        }
    };
}

text_type!(
    /// A person's or company's name: one line, 1 to 200 characters.
    Name, 1, 200, TextKind::Line
);
text_type!(
    /// A short code (supplier, product, plant, carrier): 1 to 50 characters, no spaces.
    Code, 1, 50, TextKind::Word
);
text_type!(
    /// Why something was done (reject, cancel): 1 to 1000 characters.
    Reason, 1, 1000, TextKind::Lines
);
text_type!(
    /// The text of a note on an order: 1 to 10 000 characters.
    NoteText, 1, 10_000, TextKind::Lines
);
text_type!(
    /// A short one-line value: phone, reference numbers, establishment, MC and DOT numbers.
    ShortText, 1, 200, TextKind::Line
);
text_type!(
    /// Free text (address, description, notes): at most 10 000 characters, may be empty.
    LongText, 0, 10_000, TextKind::Lines
);

pub(super) use text_type;

/// An e-mail address, checked for plain sanity only (one `@`, non-empty parts, a dot in the
/// domain, no spaces, at most 254 characters); deliverability is not the domain's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims the address and checks it.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = check_text(text, 1, 254, TextKind::Word)
            .map_err(|e| ValueError::new(format!("is not a valid e-mail address: {e}")))?;
        let invalid = || ValueError::new("is not a valid e-mail address");
        let (local, domain) = text.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(invalid());
        }
        Ok(Self(text))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl schemars::JsonSchema for Email {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Email".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 254,
            "pattern": r"^[^\s@\u0000-\u001f\u007f-\u009f]+@[^\s@.\u0000-\u001f\u007f-\u009f]+(\.[^\s@.\u0000-\u001f\u007f-\u009f]+)+$",
            "description": "an e-mail address: one @, a dot in the domain, no spaces",
        })
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;

    fn try_from(text: String) -> Result<Self, ValueError> {
        Self::parse(&text)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> String {
        value.0
    }
}

impl FromStr for Email {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        Self::parse(text)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

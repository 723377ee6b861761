//! The declaration of closed choice lists, so that every list reads and writes its trade words
//! the same way.

/// Declares a closed choice list with its wire words, `ALL`, `as_str`, Display and FromStr.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every choice, in the order the trade lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word used on the wire and in the database.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::values::ValueError;

            fn from_str(text: &str) -> Result<Self, $crate::values::ValueError> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|choice| choice.as_str() == text)
                    .ok_or_else(|| {
                        let words: Vec<&str> = $name::ALL.iter().map(|c| c.as_str()).collect();
                        $crate::values::ValueError(format!("must be one of: {}", words.join(", ")))
                    })
            }
        }
    };
}

pub(crate) use choice;

//! PATCH bodies: serde helpers that tell "absent" from `null`, and the macro that declares a
//! struct and its PATCH struct from one field list.

/// Serde helpers for a nullable PATCH field, `Option<Option<T>>`:
/// absent is `None` (unchanged), `null` is `Some(None)` (clear), a value is `Some(Some(v))`.
///
/// Use as `#[serde(default, with = "crate::values::double_option", skip_serializing_if =
/// "Option::is_none")]`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Reads a present field: `null` becomes `Some(None)`, a value `Some(Some(v))`.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }

    /// Writes `Some(None)` as `null` and `Some(Some(v))` as the value; pair with
    /// `skip_serializing_if = "Option::is_none"` so `None` is left out.
    pub fn serialize<T, S>(value: &Option<Option<T>>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// Serde helpers for a PATCH field that may be left out but never cleared: absent is
/// `None` (unchanged), a value is `Some(v)`, and `null` is an error rather than being
/// silently read as "unchanged".
///
/// Use as `#[serde(default, with = "crate::values::not_null", skip_serializing_if =
/// "Option::is_none")]`.
pub mod not_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Reads a present field, refusing `null`.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        T::deserialize(deserializer).map(Some)
    }

    /// Writes the value (pair with `skip_serializing_if = "Option::is_none"`).
    pub fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        value.serialize(serializer)
    }
}

/// Declares a struct, its PATCH struct and `patched`, from one field list, so the two
/// cannot drift apart.
///
/// Required fields become `Option<T>` in the patch (absent = unchanged, `null` refused);
/// optional fields become `Option<Option<T>>` (absent = unchanged, `null` = clear). Extra
/// patch-only fields (such as `active`) are declared with their own attributes.
macro_rules! patchable {
    (
        $(#[$meta:meta])*
        $name:ident;
        $(#[$pmeta:meta])*
        $patch:ident;
        required { $($(#[$rmeta:meta])* $rfield:ident: $rtype:ty,)* }
        optional { $($(#[$ometa:meta])* $ofield:ident: $otype:ty,)* }
        extra { $($(#[$emeta:meta])* $efield:ident: $etype:ty,)* }
    ) => {
        #[derive(::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema, Clone, Debug, PartialEq)]
        $(#[$meta])*
        pub struct $name {
            $($(#[$rmeta])* pub $rfield: $rtype,)*
            $($(#[$ometa])* #[serde(default)] pub $ofield: Option<$otype>,)*
        }

        $(#[$pmeta])*
        #[derive(::serde::Serialize, ::serde::Deserialize, Clone, Debug, Default, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $patch {
            $(
                #[doc = concat!("New `", stringify!($rfield), "`; absent leaves it, `null` is refused.")]
                #[serde(
                    default,
                    with = "crate::values::not_null",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $rfield: Option<$rtype>,
            )*
            $(
                #[doc = concat!("New `", stringify!($ofield), "`; absent leaves it, `null` clears it.")]
                #[serde(
                    default,
                    with = "crate::values::double_option",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $ofield: Option<Option<$otype>>,
            )*
            $($(#[$emeta])* pub $efield: $etype,)*
        }

        impl $name {
            /// A copy with the patch applied (the patch's extra fields are not looked at).
            pub fn patched(&self, patch: &$patch) -> Self {
                Self {
                    $($rfield: crate::values::patch_required(&self.$rfield, &patch.$rfield),)*
                    $($ofield: crate::values::patch_nullable(&self.$ofield, &patch.$ofield),)*
                }
            }
        }
    };
}

pub(crate) use patchable;

/// Applies a nullable PATCH field to a current value.
pub(crate) fn patch_nullable<T: Clone>(
    current: &Option<T>,
    patch: &Option<Option<T>>,
) -> Option<T> {
    match patch {
        Some(new) => new.clone(),
        None => current.clone(),
    }
}

/// Applies a required PATCH field to a current value.
pub(crate) fn patch_required<T: Clone>(current: &T, patch: &Option<T>) -> T {
    patch.as_ref().unwrap_or(current).clone()
}

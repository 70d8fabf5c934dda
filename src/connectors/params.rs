//! Typed function parameters. One declaration (the [`params!`](crate::params) macro) gives
//! both the struct a function reads its parameters into and the field list the catalogue
//! shows and sources and destinations are validated against, so the two cannot drift.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Field, FieldKind};

/// A Rust type a parameter may have, and the kind the catalogue shows for it.
pub trait Param: Sized {
    /// The kind checked on input and shown in the catalogue.
    const KIND: FieldKind;
    /// Whether a value must be given (false for `Option`s).
    const REQUIRED: bool = true;

    /// The value when the parameter is not given and declares no default; `None` when it is
    /// required.
    fn absent() -> Option<Self> {
        None
    }
}

impl Param for String {
    const KIND: FieldKind = FieldKind::String;
}

impl Param for u64 {
    const KIND: FieldKind = FieldKind::Integer;
}

impl Param for bool {
    const KIND: FieldKind = FieldKind::Boolean;
}

impl Param for Vec<String> {
    const KIND: FieldKind = FieldKind::StringList;
}

impl Param for BTreeMap<String, String> {
    const KIND: FieldKind = FieldKind::Object;
}

impl<T: Param> Param for Option<T> {
    const KIND: FieldKind = T::KIND;
    const REQUIRED: bool = false;

    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// A function's parameters: the fields declared, and how a stored value is read into them.
pub trait Params: Sized {
    /// The declared fields, in declaration order.
    const FIELDS: &'static [Field];

    /// Reads stored parameters, checked exactly as a source or destination is on input. The
    /// error names every field at fault.
    fn parse(value: &Value) -> Result<Self, String>;
}

/// The input errors of `value` against `fields`, as one message (for a job or a log line).
pub fn check(fields: &[Field], value: &Value) -> Result<(), String> {
    let errors = super::validate(fields, value, "params");
    if errors.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("`{}` {}", e.field, e.message))
        .collect();
    Err(format!("invalid params: {}", parts.join("; ")))
}

/// Declares a function's parameters: `name: Type [= default], "description";` per field.
/// `Option<T>` fields are optional, fields with a default are optional and take it when
/// absent, every other field is required.
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $field:ident : $ty:ty $(= $default:expr)? , $desc:literal ; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $( #[doc = $desc] pub $field: $ty, )*
        }

        impl $crate::connectors::params::Params for $name {
            const FIELDS: &'static [$crate::connectors::Field] = &[$(
                $crate::connectors::Field {
                    name: stringify!($field),
                    kind: <$ty as $crate::connectors::params::Param>::KIND,
                    required: <$ty as $crate::connectors::params::Param>::REQUIRED
                        $(&& { let _ = stringify!($default); false })?,
                    secret: false,
                    host: $crate::connectors::HostRule::None,
                    description: $desc,
                },
            )*];

            fn parse(value: &serde_json::Value) -> Result<Self, String> {
                $crate::connectors::params::check(Self::FIELDS, value)?;
                // Absent and null fields read as `None`, then take their default.
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Given {
                    $( #[serde(default)] $field: Option<$ty>, )*
                }
                let given: Given = serde_json::from_value(value.clone())
                    .map_err(|e| format!("invalid params: {e}"))?;
                Ok($name {
                    $( $field: match given.$field {
                        Some(v) => v,
                        None => $crate::params!(@absent $ty $(, $default)?).ok_or(concat!(
                            "invalid params: `params.", stringify!($field), "` is required"
                        ))?,
                    }, )*
                })
            }
        }
    };
    (@absent $ty:ty, $default:expr) => { Some($default) };
    (@absent $ty:ty) => { <$ty as $crate::connectors::params::Param>::absent() };
}

/// Declares a parameter that takes one of fixed strings, shown in the catalogue as that list.
#[macro_export]
macro_rules! param_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $variant:ident = $text:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
        pub enum $name {
            $( #[doc = $text] #[serde(rename = $text)] $variant, )*
        }

        impl $crate::connectors::params::Param for $name {
            const KIND: $crate::connectors::FieldKind =
                $crate::connectors::FieldKind::Enum(&[$($text),*]);
        }

        impl $name {
            /// The value as written in params.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )* }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    crate::param_enum! {
        /// A test enum.
        pub enum Colour { Red = "red", Blue = "blue" }
    }

    crate::params! {
        /// Test params.
        pub struct Sample {
            url: String, "Where.";
            colour: Colour = Colour::Red, "Which colour.";
            note: Option<String>, "A note.";
            tags: Option<Vec<String>>, "Tags.";
        }
    }

    #[test]
    fn fields_follow_the_declaration() {
        let f = Sample::FIELDS;
        let names: Vec<_> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["url", "colour", "note", "tags"]);
        assert!(f[0].required && !f[1].required && !f[2].required && !f[3].required);
        assert!(matches!(f[1].kind, FieldKind::Enum(["red", "blue"])));
        assert!(matches!(f[3].kind, FieldKind::StringList));
        assert_eq!(f[1].description, "Which colour.");
    }

    #[test]
    fn parsing_applies_defaults_and_checks_like_input() {
        let p = Sample::parse(&json!({"url": "http://x", "note": null})).unwrap();
        assert_eq!(p.url, "http://x");
        assert_eq!(p.colour, Colour::Red);
        assert_eq!(p.note, None);
        let p = Sample::parse(&json!({"url": "u", "colour": "blue", "tags": ["a"]})).unwrap();
        assert_eq!(p.colour.as_str(), "blue");
        assert_eq!(p.tags.unwrap(), ["a"]);
        let e = Sample::parse(&json!({"colour": "green", "bogus": 1})).unwrap_err();
        assert!(e.contains("`params.url` is required"), "{e}");
        assert!(
            e.contains("`params.colour` must be one of: red, blue"),
            "{e}"
        );
        assert!(e.contains("`params.bogus` is not a known field"), "{e}");
    }
}

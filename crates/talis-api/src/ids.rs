//! Typed ids. Each wraps the integer the API has always sent, so the wire is unchanged, but an
//! owner id can no longer be passed where a task id is expected, and decoding checks the range
//! once at the boundary (the schema says the same: `minimum`).

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, min = $min:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The smallest valid value.
            pub const MIN: i64 = $min;

            /// `None` below [`Self::MIN`].
            pub const fn new(v: i64) -> Option<Self> {
                if v >= $min { Some(Self(v)) } else { None }
            }

            /// A value read back from the database, where every stored id is valid.
            pub const fn from_db(v: i64) -> Self {
                Self(v)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                s.parse::<i64>()
                    .ok()
                    .and_then(Self::new)
                    .ok_or_else(|| format!("{s:?} is not a {}", $what))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = i64::deserialize(d)?;
                Self::new(v).ok_or_else(|| D::Error::custom(format!("must be a {}", $what)))
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "integer", "format": "int64", "minimum": $min, "description": $what })
            }
        }
    };
}

id_type! {
    /// A user (owner of projects, keys and tasks). 0 is the bootstrap admin owner; in params,
    /// 0 also means "the caller" (the original clients send it when unset).
    OwnerId, min = 0, "user id (0: the caller, or the bootstrap admin owner)"
}
id_type! {
    /// A project.
    ProjectId, min = 1, "positive project id"
}
id_type! {
    /// A task (one workflow run).
    TaskId, min = 1, "positive task id"
}
id_type! {
    /// An instance (one machine).
    InstanceId, min = 1, "positive instance id"
}
id_type! {
    /// A stored API key or SSH key, or a user, addressed by its row id.
    RowId, min = 1, "positive id"
}

impl OwnerId {
    /// The owner of what the bootstrap admin key creates without an `owner_id` (a row created by
    /// the first migration).
    pub const ADMIN: OwnerId = OwnerId(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_when_decoding() {
        assert_eq!(serde_json::from_str::<TaskId>("7").unwrap().get(), 7);
        for bad in ["0", "-1", "\"7\"", "1.5", "9223372036854775808"] {
            assert!(serde_json::from_str::<TaskId>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_str::<OwnerId>("0").unwrap(),
            OwnerId::ADMIN
        );
        assert_eq!(serde_json::to_string(&InstanceId::from_db(3)).unwrap(), "3");
        assert_eq!("12".parse::<TaskId>().unwrap().get(), 12);
        assert!("x".parse::<TaskId>().is_err());
    }
}

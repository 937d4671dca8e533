//! Field types whose rules do not fit an attribute: a provider tag (reserved prefixes), a
//! project's config (an object, or JSON text of one), and an SSH public key (parsed).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::rules::{self, MAX_CONFIG_BYTES, MAX_TAG, TAG, is_reserved_tag};

/// A provider tag of an owner. Decoding refuses Talis's own tags (`talis`, `talis-…` in any
/// case): those are how Talis recognises its machines, so an owner must not be able to put
/// them on a machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_TAG {
            return Err(format!("must be 1 to {MAX_TAG} characters"));
        }
        if !(TAG.matches)(s) {
            return Err(format!("must match {}", TAG.pattern));
        }
        if is_reserved_tag(s) {
            return Err("`talis` and tags starting with `talis-` are reserved for Talis".into());
        }
        Ok(Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Tag::parse(&s).map_err(D::Error::custom)
    }
}

impl JsonSchema for Tag {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Tag".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TAG,
            "pattern": TAG.pattern,
            "not": { "pattern": "^[Tt][Aa][Ll][Ii][Ss](-|$)" },
            "description": "A provider tag; `talis` and `talis-…` (any case) are reserved."
        })
    }
}

/// A project's configuration: a JSON object with optional `resources` and `settings` objects.
/// The original clients send it as JSON text, which is accepted too; it is stored and answered
/// as text (`Project::config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectConfig(Option<Map<String, Value>>);

impl ProjectConfig {
    pub fn new(object: Map<String, Value>) -> Result<Self, String> {
        for key in ["resources", "settings"] {
            if object.get(key).is_some_and(|v| !v.is_object()) {
                return Err(format!("{key}: must be an object"));
            }
        }
        let config = ProjectConfig(Some(object));
        let size = config.to_text().len();
        if size > MAX_CONFIG_BYTES {
            return Err(format!(
                "is {size} bytes of JSON; at most {MAX_CONFIG_BYTES}"
            ));
        }
        Ok(config)
    }

    /// The stored form: JSON text, empty when unset.
    pub fn to_text(&self) -> String {
        self.0
            .as_ref()
            .map(|o| Value::Object(o.clone()).to_string())
            .unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for ProjectConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = match Value::deserialize(d)? {
            Value::Null => return Ok(ProjectConfig(None)),
            Value::String(s) if s.trim().is_empty() => return Ok(ProjectConfig(None)),
            Value::String(s) => match serde_json::from_str(&s) {
                Ok(Value::Object(o)) => o,
                _ => return Err(D::Error::custom("must be a JSON object (or its JSON text)")),
            },
            Value::Object(o) => o,
            _ => return Err(D::Error::custom("must be a JSON object (or its JSON text)")),
        };
        ProjectConfig::new(object).map_err(D::Error::custom)
    }
}

impl Serialize for ProjectConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for ProjectConfig {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "ProjectConfig".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "nullable": true,
            "properties": {
                "resources": { "type": "object" },
                "settings": { "type": "object" }
            },
            "description": "A JSON object (at most 64 KiB as JSON text) with optional `resources` and `settings` objects; the original clients' JSON text of such an object is accepted too."
        })
    }
}

/// garde rule: an OpenSSH public key whose blob decodes to a key of the named type.
pub fn ssh_public_key(key: &str, _: &()) -> garde::Result {
    ssh_key::PublicKey::from_openssh(key)
        .map(|_| ())
        .map_err(|e| garde::Error::new(format!("not a valid OpenSSH public key: {e}")))
}

/// garde rule: [`ssh_public_key`], or empty.
pub fn optional_ssh_public_key(key: &str, ctx: &()) -> garde::Result {
    if key.is_empty() {
        Ok(())
    } else {
        ssh_public_key(key, ctx)
    }
}

/// Whether `s` matches a rule (for callers outside garde, e.g. the CLI checking input early).
pub fn matches(rule: &rules::Charset, s: &str) -> bool {
    garde::rules::pattern::Matcher::is_match(rule, s)
}

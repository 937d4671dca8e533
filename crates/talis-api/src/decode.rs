//! The boundary: raw JSON params → a decoded, validated value, or the first offending field with
//! its reason (and every other one). The service decodes every call through [`decode`], so a
//! handler only ever sees params that hold what their types and attributes say.

use garde::Validate;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One field that is wrong: its path (`instances[2].volumes[0].size_gb`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Why params were refused: the first field in document order, then the others garde found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub first: FieldError,
    pub others: Vec<FieldError>,
}

impl Invalid {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            first: FieldError {
                field: field.into(),
                reason: reason.into(),
            },
            others: Vec::new(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.first.field, self.first.reason)
    }
}

/// Params that passed [`decode`]: the only way to make one, so a function taking `Valid<T>`
/// cannot be handed unchecked input.
#[derive(Clone, Debug, PartialEq)]
pub struct Valid<T>(T);

impl<T> Valid<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Decodes `params` into `T` and validates it.
pub fn decode<T: DeserializeOwned + Validate<Context = ()>>(
    params: Value,
) -> Result<Valid<T>, Invalid> {
    // Params are always an object (serde would otherwise read an array into a struct's fields).
    if !params.is_object() {
        return Err(Invalid::field("params", "must be a JSON object"));
    }
    let value: T = serde_path_to_error::deserialize(params).map_err(serde_error)?;
    check(&value)?;
    Ok(Valid(value))
}

/// Validates an already decoded value (a client checking its input before sending it).
pub fn check<T: Validate<Context = ()>>(value: &T) -> Result<(), Invalid> {
    let report = match value.validate() {
        Ok(()) => return Ok(()),
        Err(r) => r,
    };
    let mut errors = report.iter().map(|(path, e)| FieldError {
        field: path.to_string(),
        reason: reason(e.message()),
    });
    let first = errors.next().unwrap_or(FieldError {
        field: "params".into(),
        reason: "is invalid".into(),
    });
    Ok::<(), Invalid>(()).and(Err(Invalid {
        first,
        others: errors.collect(),
    }))
}

/// garde's wording, made to read as a sentence after the field name.
fn reason(message: &str) -> String {
    match message {
        "length is lower than 1" => "must not be empty".into(),
        m => m.to_owned(),
    }
}

fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    // serde reports a missing field at its parent ("." for the top): name the field itself.
    if let Some(name) = inner
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return Invalid::field(field, "is required");
    }
    let field = if path == "." {
        "params".to_owned()
    } else {
        path
    };
    // Drop serde's " at line 1 column 42": the field path says where.
    let reason = match inner.rfind(" at line ") {
        Some(i) => inner[..i].to_owned(),
        None => inner,
    };
    Invalid::field(field, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{InstanceTerminate, ProjectCreate};
    use serde_json::json;

    fn field_of<T: DeserializeOwned + Validate<Context = ()> + std::fmt::Debug>(
        v: Value,
    ) -> (String, String) {
        let e = decode::<T>(v).map(|_| ()).unwrap_err();
        (e.first.field, e.first.reason)
    }

    #[test]
    fn refusals_name_the_field() {
        let base = || json!({ "provider": "do", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64", "number_of_instances": 3 });
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "name"),
            (json!({ "name": "" }), "name"),
            (json!({ "name": "a b" }), "name"),
            (
                json!({ "name": "p", "instances": [base(), { "region": "nyc3" }] }),
                "instances[1].provider",
            ),
            (
                json!({ "name": "p", "instances": [{ "provider": "aws" }] }),
                "instances[0].provider",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "number_of_instances": 0 }))] }),
                "instances[0].number_of_instances",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "number_of_instances": 10_001 }))] }),
                "instances[0].number_of_instances",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "name": "-bad" }))] }),
                "instances[0].name",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "tags": ["ok", "not ok"] }))] }),
                "instances[0].tags[1]",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "tags": ["TALIS-project-1"] }))] }),
                "instances[0].tags[0]",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "tags": ["talis"] }))] }),
                "instances[0].tags[0]",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "payload_path": "/opt/x.sh" }))] }),
                "instances[0].payload_path",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "ssh_keys": ["a", "b", "c", "d", "e"] }))] }),
                "instances[0].ssh_keys",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "volumes": [{ "name": "d", "size_gb": 0 }] }))] }),
                "instances[0].volumes[0].size_gb",
            ),
            (
                json!({ "name": "p", "instances": [merge(base(), json!({ "volumes": [{ "name": "d", "size_gb": 1, "mount_point": "/mnt/../etc" }] }))] }),
                "instances[0].volumes[0].mount_point",
            ),
            (json!({ "name": "p", "config": "[1]" }), "config"),
            (
                json!({ "name": "p", "config": { "resources": 3 } }),
                "config",
            ),
        ];
        for (input, field) in cases {
            let (f, reason) = field_of::<ProjectCreate>(input.clone());
            assert_eq!(f, field, "{input} → {reason}");
        }
        assert_eq!(
            field_of::<InstanceTerminate>(json!({ "project_name": "p", "instance_ids": [] })).0,
            "instance_ids"
        );
        assert_eq!(
            field_of::<InstanceTerminate>(json!({ "project_name": "p", "instance_ids": [0] })).0,
            "instance_ids[0]"
        );
    }

    fn merge(mut a: Value, b: Value) -> Value {
        for (k, v) in b.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    }

    #[test]
    fn valid_params_decode() {
        let p = decode::<ProjectCreate>(json!({ "name": "light-nodes-100", "config": "{\"settings\": {}}",
            "instances": [{ "provider": "do", "region": "nyc3", "size": "s", "image": "ubuntu", "number_of_instances": 100,
                            "tags": ["env:test"], "volumes": [{ "name": "data", "size_gb": 20, "filesystem": "ext4", "mount_point": "/mnt/data" }] }] }))
        .unwrap();
        assert_eq!(p.config.to_text(), "{\"settings\":{}}");
        assert_eq!(p.instances[0].spec().count, 100);
    }
}

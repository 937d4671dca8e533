//! Checks answers against the OpenAPI document the API serves (`GET /api/v1/openapi.json`): the
//! schema of an operation's response for a status, validated with a JSON Schema validator.
//!
//! The document is OpenAPI 3.0, whose schema objects are JSON Schema but for `nullable`; it is
//! turned into `"type": [T, "null"]` (or an `anyOf` with null) before validating.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::api::Answer;

/// Where the document says routing errors are described: an unknown path (404) and a known
/// path called with a method it does not serve (405) answer a `RouteError`.
pub const ROUTE_ERROR: &str = "#/components/schemas/RouteError";

pub struct Document {
    doc: Value,
    /// The components, with `nullable` turned into JSON Schema.
    components: Value,
}

impl Document {
    pub fn new(doc: Value) -> Self {
        let mut components = doc["components"].clone();
        nullable_to_json_schema(&mut components);
        Self { doc, components }
    }

    pub fn raw(&self) -> &Value {
        &self.doc
    }

    /// The documented path (template) `path` answers to: a literal path wins over a template,
    /// whose `{param}` matches one segment.
    pub fn path_template(&self, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path);
        let paths = self.doc["paths"].as_object()?;
        if paths.contains_key(path) {
            return paths.get_key_value(path).map(|(k, _)| k.as_str());
        }
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        paths.keys().map(String::as_str).find(|t| {
            let tsegs: Vec<&str> = t.trim_end_matches('/').split('/').collect();
            tsegs.len() == segs.len()
                && tsegs
                    .iter()
                    .zip(&segs)
                    .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
        })
    }

    /// The schema the document gives answers of `method path` with `status`. Routing errors
    /// (no such path, or no such method on it) are [`ROUTE_ERROR`]s. A status the operation
    /// does not document is an error.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Result<Value> {
        let method = method.to_ascii_lowercase();
        let Some(template) = self.path_template(path) else {
            anyhow::ensure!(
                status == 404,
                "{path} is not documented but answered {status}"
            );
            return self.route_error();
        };
        let Some(op) = self.doc["paths"][template].get(&method) else {
            anyhow::ensure!(
                status == 405,
                "{method} {template} is not documented but answered {status}"
            );
            return self.route_error();
        };
        let response = op["responses"]
            .get(status.to_string())
            .with_context(|| {
                format!(
                    "{method} {template} answered {status}, which its responses do not document (they document {:?})",
                    op["responses"]
                        .as_object()
                        .map(|r| r.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                )
            })?;
        let mut schema = response["content"]["application/json"]["schema"].clone();
        anyhow::ensure!(
            !schema.is_null(),
            "{method} {template} {status}: no JSON schema"
        );
        nullable_to_json_schema(&mut schema);
        Ok(schema)
    }

    fn route_error(&self) -> Result<Value> {
        let name = ROUTE_ERROR.rsplit('/').next().unwrap_or_default();
        anyhow::ensure!(
            self.components["schemas"].get(name).is_some(),
            "the document has no {ROUTE_ERROR}"
        );
        Ok(json!({ "$ref": ROUTE_ERROR }))
    }

    /// Validates `value` against `schema` (whose `$ref`s point into this document).
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<()> {
        let root = json!({ "components": self.components, "allOf": [schema] });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| anyhow::anyhow!("schema {schema} does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            bail!(
                "{value} does not match {schema}:\n  {}",
                errors.join("\n  ")
            );
        }
        Ok(())
    }

    /// Checks an answer of `method path` against the schema documented for its status.
    pub fn check(&self, method: &str, path: &str, answer: &Answer) -> Result<()> {
        let schema = self.response_schema(method, path, answer.status)?;
        self.validate(&schema, &answer.body)
            .with_context(|| format!("{method} {path} answered {}", answer.status))
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema, everywhere under `v`.
fn nullable_to_json_schema(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for child in o.values_mut() {
                nullable_to_json_schema(child);
            }
            if o.remove("nullable") == Some(Value::Bool(true)) {
                match o.get("type").cloned() {
                    Some(Value::String(t)) => {
                        o.insert("type".into(), json!([t, "null"]));
                        if let Some(Value::Array(e)) = o.get_mut("enum") {
                            e.push(Value::Null);
                        }
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(o));
                        let mut wrapped = Map::new();
                        wrapped.insert("anyOf".into(), json!([inner, { "type": "null" }]));
                        *o = wrapped;
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_becomes_a_null_type() {
        let mut s = json!({ "properties": {
            "a": { "type": "string", "nullable": true },
            "b": { "$ref": "#/x", "nullable": true },
            "c": { "type": "string", "enum": ["x"], "nullable": true },
        }});
        nullable_to_json_schema(&mut s);
        assert_eq!(s["properties"]["a"], json!({ "type": ["string", "null"] }));
        assert_eq!(
            s["properties"]["b"],
            json!({ "anyOf": [{ "$ref": "#/x" }, { "type": "null" }] })
        );
        assert_eq!(s["properties"]["c"]["enum"], json!(["x", null]));
    }

    #[test]
    fn templates_match_one_segment_and_literals_win() {
        let d = Document::new(json!({ "paths": {
            "/api/v1/instances/{id}": {}, "/api/v1/instances/public-ips": {}, "/v1/phone-home/{id}": {}
        }, "components": { "schemas": { "RouteError": {} } } }));
        assert_eq!(
            d.path_template("/api/v1/instances/7"),
            Some("/api/v1/instances/{id}")
        );
        assert_eq!(
            d.path_template("/api/v1/instances/public-ips?x=1"),
            Some("/api/v1/instances/public-ips")
        );
        assert_eq!(
            d.path_template("/v1/phone-home/3?task=1"),
            Some("/v1/phone-home/{id}")
        );
        assert_eq!(d.path_template("/api/v1/instances/7/x"), None);
        assert!(d.response_schema("GET", "/nowhere", 404).is_ok());
        assert!(d.response_schema("GET", "/nowhere", 400).is_err());
    }

    #[test]
    fn validation_follows_refs_into_the_components() {
        let d = Document::new(json!({ "paths": {}, "components": { "schemas": {
            "E": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } }
        } } }));
        let s = json!({ "$ref": "#/components/schemas/E" });
        assert!(d.validate(&s, &json!({ "error": "x" })).is_ok());
        assert!(d.validate(&s, &json!({ "error": 5 })).is_err());
        assert!(d.validate(&s, &json!({})).is_err());
    }
}

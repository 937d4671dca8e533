//! Checks JSON against DigitalOcean's public OpenAPI spec (the subset vendored in `spec/`):
//! a small resolver of `$ref`s across the spec's YAML files and a validator of the OpenAPI
//! schema keywords the spec uses (type, nullable, properties, required, additionalProperties,
//! items, enum, allOf, anyOf, oneOf, maxLength, minimum, maximum). Used by the contract tests of
//! the fake (responses) and of the client (request bodies).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The vendored spec directory of this crate.
pub fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec")
}

/// A loaded spec: YAML files parsed on demand and cached.
pub struct Spec {
    root: PathBuf,
    files: HashMap<PathBuf, Value>,
}

/// A schema together with the file its relative `$ref`s resolve against.
#[derive(Clone, Debug)]
pub struct Schema {
    pub file: PathBuf,
    pub value: Value,
}

impl Spec {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Spec {
            root: root.into(),
            files: HashMap::new(),
        }
    }

    pub fn vendored() -> Self {
        Self::new(spec_dir())
    }

    fn file(&mut self, rel: &Path) -> Result<&Value, String> {
        let key = normalize(rel);
        if !self.files.contains_key(&key) {
            let path = self.root.join(&key);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let v: Value = serde_norway::from_str(&text)
                .map_err(|e| format!("parsing {}: {e}", path.display()))?;
            self.files.insert(key.clone(), v);
        }
        Ok(&self.files[&key])
    }

    /// Resolves `reference` (`file.yml#/a/b`, `file.yml` or `#/a/b`) seen in `from`.
    pub fn resolve(&mut self, from: &Path, reference: &str) -> Result<Schema, String> {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file = if file.is_empty() {
            from.to_path_buf()
        } else {
            normalize(&from.parent().unwrap_or(Path::new("")).join(file))
        };
        let doc = self.file(&file)?;
        let value = if pointer.is_empty() {
            doc.clone()
        } else {
            doc.pointer(pointer)
                .cloned()
                .ok_or_else(|| format!("{reference} (from {}) not found", from.display()))?
        };
        Ok(Schema { file, value })
    }

    /// Follows `$ref`s until a non-reference object.
    fn deref(&mut self, mut s: Schema) -> Result<Schema, String> {
        for _ in 0..32 {
            match s.value.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let r = r.to_string();
                    s = self.resolve(&s.file, &r)?;
                }
                None => return Ok(s),
            }
        }
        Err(format!("$ref loop in {}", s.file.display()))
    }

    /// The operation defined by `resources/<op_file>` (e.g. `droplets/droplets_create.yml`).
    pub fn operation(&mut self, op_file: &str) -> Result<Schema, String> {
        let file = PathBuf::from("resources").join(op_file);
        let value = self.file(&file)?.clone();
        Ok(Schema { file, value })
    }

    /// Statuses the operation documents (numbers; `default` reported as 0).
    pub fn statuses(&mut self, op: &Schema) -> Vec<u16> {
        op.value
            .get("responses")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(|k| k.parse().unwrap_or(0)).collect())
            .unwrap_or_default()
    }

    /// The response object for `status` (falls back to `default`).
    pub fn response(&mut self, op: &Schema, status: u16) -> Result<Schema, String> {
        let responses = op
            .value
            .get("responses")
            .ok_or_else(|| format!("{} has no responses", op.file.display()))?;
        let r = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .cloned()
            .ok_or_else(|| format!("{} does not document {status}", op.file.display()))?;
        self.deref(Schema {
            file: op.file.clone(),
            value: r,
        })
    }

    /// JSON body schema of a response object, if it has one.
    pub fn body_schema(&mut self, response: &Schema) -> Option<Schema> {
        let s = response
            .value
            .pointer("/content/application~1json/schema")?
            .clone();
        Some(Schema {
            file: response.file.clone(),
            value: s,
        })
    }

    /// The request body schema of an operation.
    pub fn request_schema(&mut self, op: &Schema) -> Result<Schema, String> {
        let rb = op
            .value
            .get("requestBody")
            .cloned()
            .ok_or_else(|| format!("{} has no requestBody", op.file.display()))?;
        let rb = self.deref(Schema {
            file: op.file.clone(),
            value: rb,
        })?;
        let s = rb
            .value
            .pointer("/content/application~1json/schema")
            .cloned()
            .ok_or_else(|| format!("{} requestBody has no JSON schema", op.file.display()))?;
        Ok(Schema {
            file: rb.file,
            value: s,
        })
    }

    /// Header names a response object documents.
    pub fn headers(&mut self, response: &Schema) -> Vec<String> {
        response
            .value
            .get("headers")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Validates `instance` against `schema`; returns every violation, with its JSON path.
    pub fn validate(&mut self, schema: &Schema, instance: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, instance, "$", &mut errors);
        errors
    }

    fn check(&mut self, schema: &Schema, v: &Value, path: &str, errors: &mut Vec<String>) {
        let s = match self.deref(schema.clone()) {
            Ok(s) => s,
            Err(e) => return errors.push(format!("{path}: {e}")),
        };
        let sub = |value: &Value| Schema {
            file: s.file.clone(),
            value: value.clone(),
        };
        let obj = &s.value;
        if v.is_null() && obj.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for a in all {
                self.check(&sub(a), v, path, errors);
            }
        }
        for (key, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(alts) = obj.get(key).and_then(Value::as_array) {
                let mut matched = 0;
                let mut why = Vec::new();
                for a in alts {
                    let mut e = Vec::new();
                    self.check(&sub(a), v, path, &mut e);
                    if e.is_empty() {
                        matched += 1;
                    } else {
                        why.extend(e);
                    }
                }
                if matched == 0 || (exactly_one && matched > 1) {
                    errors.push(format!(
                        "{path}: {matched} of {} {key} alternatives match ({})",
                        alts.len(),
                        why.join("; ")
                    ));
                }
            }
        }
        if let Some(t) = obj.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{path}: expected {t}, got {v}"));
                return;
            }
        }
        if let Some(e) = obj.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errors.push(format!(
                "{path}: {v} not in enum {}",
                Value::Array(e.clone())
            ));
        }
        if let (Some(max), Some(s)) = (obj.get("maxLength").and_then(Value::as_u64), v.as_str())
            && s.chars().count() as u64 > max
        {
            errors.push(format!("{path}: longer than {max}"));
        }
        if let (Some(min), Some(n)) = (obj.get("minimum").and_then(Value::as_f64), v.as_f64())
            && n < min
        {
            errors.push(format!("{path}: {n} < minimum {min}"));
        }
        if let (Some(max), Some(n)) = (obj.get("maximum").and_then(Value::as_f64), v.as_f64())
            && n > max
        {
            errors.push(format!("{path}: {n} > maximum {max}"));
        }
        if let Some(map) = v.as_object() {
            if let Some(req) = obj.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        errors.push(format!("{path}: missing required property {r:?}"));
                    }
                }
            }
            let props = obj.get("properties").and_then(Value::as_object);
            for (k, val) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(p) => self.check(&sub(p), val, &format!("{path}.{k}"), errors),
                    None => match obj.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errors.push(format!("{path}: unexpected property {k:?}"))
                        }
                        Some(a @ Value::Object(_)) => {
                            self.check(&sub(a), val, &format!("{path}.{k}"), errors)
                        }
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(arr)) = (obj.get("items"), v.as_array()) {
            for (i, item) in arr.iter().enumerate() {
                self.check(&sub(items), item, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

/// `a/b/../c` → `a/c` (spec refs climb with `..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The validator itself: it must reject what the spec forbids.
    #[test]
    fn validator_rejects_bad_shapes() {
        let mut spec = Spec::vendored();
        let op = spec.operation("droplets/droplets_get.yml").unwrap();
        let resp = spec.response(&op, 404).unwrap();
        let schema = spec.body_schema(&resp).unwrap();
        assert!(
            spec.validate(&schema, &json!({"id": "not_found", "message": "m"}))
                .is_empty()
        );
        let errs = spec.validate(&schema, &json!({"id": 4}));
        assert!(
            errs.iter().any(|e| e.contains("expected string")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("\"message\"")), "{errs:?}");

        let op = spec.operation("droplets/droplets_create.yml").unwrap();
        let req = spec.request_schema(&op).unwrap();
        let good = json!({"name": "a", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"});
        assert_eq!(spec.validate(&req, &good), Vec::<String>::new());
        let bad = json!({"name": "a", "names": ["a"], "size": 1, "image": "x"});
        assert!(!spec.validate(&req, &bad).is_empty());
    }
}

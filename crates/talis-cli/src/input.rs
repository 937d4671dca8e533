//! Request files: project.create params, the original CLI's create.json (an array of instance
//! requests) and delete.json. Files are passed to the server as written (it validates and names
//! the offending field); the CLI only reshapes them and inlines local payload scripts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use talis_client::wire::InstanceId;

/// Largest user_data DigitalOcean accepts (the payload travels as cloud-init user data).
const MAX_PAYLOAD: u64 = 64 * 1024;

/// A parsed request file and where it came from (for relative paths and error messages).
pub struct RequestFile {
    pub path: PathBuf,
    pub json: Value,
}

impl RequestFile {
    /// Reads JSON from `path` (`-` = stdin); syntax errors name the file, line and column.
    pub fn read(path: &Path) -> Result<Self> {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            json,
        })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() && self.path != Path::new("-") => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The instance requests of an original create.json (bare array) or `{"instances": [...]}`.
    fn instance_array(&self) -> Result<Vec<Value>> {
        match &self.json {
            Value::Array(a) => Ok(a.clone()),
            Value::Object(o) => match o.get("instances") {
                Some(Value::Array(a)) => Ok(a.clone()),
                _ => bail!(
                    "{}: expected an array of instance requests or {{\"instances\": [...]}}",
                    self.name()
                ),
            },
            _ => bail!("{}: expected an array of instance requests", self.name()),
        }
    }

    /// Original requests name a script on the server (`payload_path`); here the CLI reads the
    /// local file and sends it inline as `payload`, so old create.json files keep working.
    fn inline_payloads(&self, requests: &mut [Value]) -> Result<()> {
        for (i, r) in requests.iter_mut().enumerate() {
            let Some(obj) = r.as_object_mut() else {
                continue;
            };
            let Some(Value::String(p)) = obj.get("payload_path").cloned() else {
                continue;
            };
            if obj
                .get("payload")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                continue;
            }
            let path = self.dir().join(&p);
            let meta = std::fs::metadata(&path).with_context(|| {
                format!(
                    "{}: [{i}].payload_path: cannot read {}",
                    self.name(),
                    path.display()
                )
            })?;
            if meta.len() > MAX_PAYLOAD {
                bail!(
                    "{}: [{i}].payload_path: {} is {} bytes; the limit is {MAX_PAYLOAD}",
                    self.name(),
                    path.display(),
                    meta.len()
                );
            }
            let script = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: [{i}].payload_path: cannot read {}",
                    self.name(),
                    path.display()
                )
            })?;
            obj.insert("payload".into(), Value::String(script));
            obj.remove("payload_path");
        }
        Ok(())
    }

    /// `project.create` params: the file's object as is, or an original create.json array whose
    /// elements all name the same project.
    pub fn project_create(&self) -> Result<Map<String, Value>> {
        let mut params = match &self.json {
            Value::Object(o) => o.clone(),
            Value::Array(_) => {
                let instances = self.instance_array()?;
                let names: std::collections::BTreeSet<&str> = instances
                    .iter()
                    .filter_map(|r| r.get("project_name").and_then(Value::as_str))
                    .collect();
                if names.len() > 1 {
                    bail!(
                        "{}: the requests name several projects ({}); create each project separately or use `talis infra create`",
                        self.name(),
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    );
                }
                let mut o = Map::new();
                if let Some(n) = names.into_iter().next() {
                    o.insert("name".into(), json!(n));
                }
                o.insert("instances".into(), Value::Array(instances));
                o
            }
            _ => bail!(
                "{}: expected a JSON object (project.create params) or an array",
                self.name()
            ),
        };
        if let Some(Value::Array(instances)) = params.get_mut("instances") {
            self.inline_payloads(instances)?;
        }
        Ok(params)
    }

    /// `instance.create` params from an original create.json.
    pub fn instance_create(&self) -> Result<Value> {
        let mut instances = self.instance_array()?;
        self.inline_payloads(&mut instances)?;
        Ok(json!({ "instances": instances }))
    }

    /// `instance.terminate` params from an original delete.json.
    pub fn instance_terminate(&self) -> Result<Value> {
        match &self.json {
            Value::Object(o)
                if o.contains_key("instance_ids") || o.contains_key("project_name") =>
            {
                Ok(self.json.clone())
            }
            _ => bail!(
                "{}: expected {{\"project_name\": ..., \"instance_ids\": [...]}} (the file `talis infra create` writes)",
                self.name()
            ),
        }
    }
}

/// After `infra create`, the original CLI writes `delete-<project>-<unix ts>.json` next to the
/// input so the fleet can be torn down with `infra delete -f`. One file per project.
pub fn write_delete_files(
    input: &Path,
    request: &Value,
    created: &[(String, InstanceId)],
) -> Result<Vec<PathBuf>> {
    let dir = match input.parent() {
        Some(d) if !d.as_os_str().is_empty() && input != Path::new("-") => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let owner = request["instances"][0]
        .get("owner_id")
        .cloned()
        .filter(|v| !v.is_null());
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut projects: Vec<&str> = created.iter().map(|(p, _)| p.as_str()).collect();
    projects.dedup();
    let mut written = Vec::new();
    for project in projects {
        let ids: Vec<InstanceId> = created
            .iter()
            .filter(|(p, _)| p == project)
            .map(|(_, id)| *id)
            .collect();
        let mut body = Map::new();
        if let Some(o) = &owner {
            body.insert("owner_id".into(), o.clone());
        }
        body.insert("project_name".into(), json!(project));
        body.insert("instance_ids".into(), json!(ids));
        let safe: String = project
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("delete-{safe}-{ts}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&Value::Object(body))? + "\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> RequestFile {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        RequestFile::read(&p).unwrap()
    }

    #[test]
    fn original_create_json_becomes_project_create_with_inlined_payload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("start.sh"), "#!/bin/sh\necho hi\n").unwrap();
        let f = file(
            dir.path(),
            "create.json",
            r#"[{"project_name":"p1","provider":"do","number_of_instances":2,"payload_path":"start.sh","execute_payload":true}]"#,
        );
        let params = f.project_create().unwrap();
        assert_eq!(params["name"], "p1");
        let inst = &params["instances"][0];
        assert_eq!(inst["payload"], "#!/bin/sh\necho hi\n");
        assert!(inst.get("payload_path").is_none());
    }

    #[test]
    fn bad_files_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.json");
        std::fs::write(&p, "{\"name\": ").unwrap();
        let err = format!("{:#}", RequestFile::read(&p).err().unwrap());
        assert!(err.contains("broken.json is not valid JSON"), "{err}");

        let f = file(
            dir.path(),
            "mixed.json",
            r#"[{"project_name":"a"},{"project_name":"b"}]"#,
        );
        let err = f.project_create().unwrap_err().to_string();
        assert!(err.contains("several projects (a, b)"), "{err}");

        let f = file(
            dir.path(),
            "missing.json",
            r#"[{"project_name":"a","payload_path":"nope.sh"}]"#,
        );
        let err = format!("{:#}", f.instance_create().unwrap_err());
        assert!(err.contains("[0].payload_path"), "{err}");

        let f = file(dir.path(), "delete.json", r#"[1,2]"#);
        assert!(f.instance_terminate().is_err());
    }

    #[test]
    fn delete_files_follow_the_original_shape() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("create.json");
        let req = json!({"instances": [{"owner_id": 1, "project_name": "p1"}]});
        let written = write_delete_files(
            &input,
            &req,
            &[
                ("p1".into(), InstanceId::from_db(10)),
                ("p1".into(), InstanceId::from_db(11)),
            ],
        )
        .unwrap();
        assert_eq!(written.len(), 1);
        let name = written[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            name.starts_with("delete-p1-") && name.ends_with(".json"),
            "{name}"
        );
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(&written[0]).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"owner_id": 1, "project_name": "p1", "instance_ids": [10, 11]})
        );
    }
}

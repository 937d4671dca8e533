//! Tags: create, get, list, delete, (un)assign to droplets and volumes, and the index of
//! droplet ids per tag that a project's listing and by-tag delete read (a Talis project is a
//! tag).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Cloud;
use super::Page;
use crate::error::{Answer, ApiError};

/// DigitalOcean's rule: 1-255 letters, digits, `:`, `-`, `_`.
pub fn is_valid_tag(t: &str) -> bool {
    (1..=255).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'))
}

impl Cloud {
    pub(super) fn index_tags(&mut self, id: u64, tags: &[String]) {
        for t in tags {
            self.tagged.entry(t.clone()).or_default().insert(id);
        }
    }

    pub(super) fn unindex_tags(&mut self, id: u64, tags: &[String]) {
        for t in tags {
            if let Some(ids) = self.tagged.get_mut(t) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.tagged.remove(t);
                }
            }
        }
    }

    /// The ids of the droplets carrying `tag`, in id (creation) order.
    pub(super) fn tagged_droplets(&self, tag: &str) -> impl Iterator<Item = u64> + '_ {
        self.tagged.get(tag).into_iter().flatten().copied()
    }

    fn tag_json(&self, name: &str) -> Value {
        let droplets = self.tagged.get(name).map_or(0, BTreeSet::len);
        let volumes = self
            .volumes
            .values()
            .filter(|v| v.tags.iter().any(|t| t == name))
            .count();
        let mut droplet_meta = json!({ "count": droplets });
        if let Some(last) = self.tagged_droplets(name).last() {
            droplet_meta["last_tagged_uri"] = json!(format!("/v2/droplets/{last}"));
        }
        json!({
            "name": name,
            "resources": {
                "count": droplets + volumes,
                "droplets": droplet_meta,
                "imgages": { "count": 0 },
                "volumes": { "count": volumes },
                "volume_snapshots": { "count": 0 },
                "databases": { "count": 0 },
            }
        })
    }

    pub fn create_tag(&mut self, body: &Value) -> Answer {
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        if !is_valid_tag(name) {
            return Err(ApiError::tag_bad_request(
                "tag name must be 1-255 letters, numbers, colons, dashes and underscores",
            ));
        }
        self.tags.insert(name.to_string());
        Ok((201, Some(json!({ "tag": self.tag_json(name) }))))
    }

    pub fn get_tag(&self, name: &str) -> Answer {
        if !self.tags.contains(name) {
            return Err(ApiError::not_found());
        }
        Ok((200, Some(json!({ "tag": self.tag_json(name) }))))
    }

    pub fn list_tags(&self, page: &Page) -> Value {
        let all: Vec<&String> = self.tags.iter().collect();
        super::paginate("tags", &all, page, |t| self.tag_json(t))
    }

    pub fn delete_tag(&mut self, name: &str) -> Answer {
        if !self.tags.remove(name) {
            return Err(ApiError::not_found());
        }
        for id in self.tagged.remove(name).unwrap_or_default() {
            if let Some(d) = self.droplet_mut(id) {
                d.tags.retain(|t| t != name);
            }
            self.forget_rendered(id);
        }
        for v in self.volumes.values_mut() {
            if v.tags.iter().any(|t| t == name) {
                Arc::make_mut(v).tags.retain(|t| t != name);
            }
        }
        Ok((204, None))
    }

    /// `POST|DELETE /v2/tags/{tag}/resources` for droplets and volumes; all checked first, so
    /// a refusal writes nothing.
    pub fn tag_resources(&mut self, name: &str, body: &Value, assign: bool) -> Answer {
        if !self.tags.contains(name) {
            return Err(ApiError::not_found());
        }
        let resources = body
            .get("resources")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::tag_bad_request("resources must be a non-empty array"))?;
        let mut droplets = Vec::new();
        let mut volumes = Vec::new();
        for r in resources {
            let id = r.get("resource_id").and_then(Value::as_str).unwrap_or("");
            let kind = r.get("resource_type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "droplet" => {
                    let n: u64 = id.parse().map_err(|_| ApiError::not_found())?;
                    if !self.droplets.contains_key(&n) {
                        return Err(ApiError::not_found());
                    }
                    droplets.push(n);
                }
                "volume" => {
                    if self.volume(id).is_none() {
                        return Err(ApiError::not_found());
                    }
                    volumes.push(id.to_string());
                }
                _ => {
                    return Err(ApiError::tag_bad_request(format!(
                        "resource_type \"{kind}\" is not supported"
                    )));
                }
            }
        }
        let tag = [name.to_string()];
        for id in droplets {
            let d = self.droplet_mut(id).expect("checked above");
            retag(&mut d.tags, name, assign);
            if assign {
                self.index_tags(id, &tag);
            } else {
                self.unindex_tags(id, &tag);
            }
            self.forget_rendered(id);
        }
        for id in volumes {
            if let Some(v) = self.volume_mut(&id) {
                retag(&mut v.tags, name, assign);
            }
        }
        Ok((204, None))
    }
}

/// Adds `name` to `tags` once, or removes it.
fn retag(tags: &mut Vec<String>, name: &str, assign: bool) {
    if assign {
        if !tags.iter().any(|t| t == name) {
            tags.push(name.to_string());
        }
    } else {
        tags.retain(|t| t != name);
    }
}

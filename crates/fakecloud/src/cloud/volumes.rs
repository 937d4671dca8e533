//! Block-storage volumes: create (name unique per region, quota), get, list (by name, by
//! region, in creation order), delete (refused while attached), and the attach/detach
//! actions, which must keep the droplet's `volume_ids` and the volume's `droplet_ids` in step.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::{optional_str, str_field, string_list};
use super::{Cloud, Page, is_valid_tag, iso};
use crate::catalog;
use crate::config::Config;
use crate::error::{Answer, ApiError};

/// DigitalOcean's volume size range, in GiB.
const SIZE_GB: std::ops::RangeInclusive<u64> = 1..=16_384;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub region: String,
    pub size_gigabytes: u64,
    pub description: String,
    pub filesystem_type: String,
    pub filesystem_label: String,
    pub droplet_ids: Vec<u64>,
    pub tags: Vec<String>,
    pub created_ms: u64,
}

/// Volumes keyed by creation order (DigitalOcean lists them that way), kept in a snapshot as
/// the plain list they were before the key existed.
pub(super) mod in_creation_order {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Volume;

    pub fn serialize<S: Serializer>(
        v: &BTreeMap<u64, Arc<Volume>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Arc<Volume>>, D::Error> {
        let list = Vec::<Volume>::deserialize(d)?;
        Ok((0u64..).zip(list.into_iter().map(Arc::new)).collect())
    }
}

fn is_valid_volume_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn volume_json(v: &Volume) -> Value {
    let region = catalog::region(&v.region).expect("volumes only have catalogue regions");
    json!({
        "id": v.id,
        "region": catalog::region_json(region),
        "droplet_ids": v.droplet_ids,
        "name": v.name,
        "description": v.description,
        "size_gigabytes": v.size_gigabytes,
        "created_at": iso(v.created_ms),
        "filesystem_type": v.filesystem_type,
        "filesystem_label": v.filesystem_label,
        "tags": v.tags,
    })
}

impl Cloud {
    /// Rebuilds the id → key index (after loading a snapshot).
    pub(super) fn index_volumes(&mut self) {
        self.volume_keys = self
            .volumes
            .iter()
            .map(|(k, v)| (v.id.clone(), *k))
            .collect();
        self.next_volume_key = self.volumes.keys().last().map_or(0, |k| k + 1);
    }

    pub(super) fn volume(&self, id: &str) -> Option<&Volume> {
        self.volumes.get(self.volume_keys.get(id)?).map(|v| &**v)
    }

    pub(super) fn volume_mut(&mut self, id: &str) -> Option<&mut Volume> {
        self.volumes
            .get_mut(self.volume_keys.get(id)?)
            .map(Arc::make_mut)
    }

    /// Records droplet `droplet` on volume `id` (the droplet side is the caller's).
    pub(super) fn attach_volume_record(&mut self, id: &str, droplet: u64) {
        if let Some(v) = self.volume_mut(id) {
            v.droplet_ids.push(droplet);
        }
    }

    /// Forgets droplet `droplet` on volume `id` (the droplet side is the caller's).
    pub(super) fn detach_volume_record(&mut self, id: &str, droplet: u64) {
        if let Some(v) = self.volume_mut(id) {
            v.droplet_ids.retain(|d| *d != droplet);
        }
    }

    pub fn create_volume(&mut self, body: &Value, config: &Config, now: u64) -> Answer {
        let name = str_field(body, "name")?;
        if !is_valid_volume_name(name) {
            return Err(ApiError::unprocessable(
                "name must be lowercase letters, numbers and dashes, starting with a letter, at most 64",
            ));
        }
        let size = body
            .get("size_gigabytes")
            .and_then(Value::as_u64)
            .filter(|s| SIZE_GB.contains(s))
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "size_gigabytes must be between {} and {}",
                    SIZE_GB.start(),
                    SIZE_GB.end()
                ))
            })?;
        let region = str_field(body, "region")?;
        catalog::region(region).ok_or_else(|| {
            ApiError::unprocessable(format!("region \"{region}\" is not available"))
        })?;
        if self
            .volumes
            .values()
            .any(|v| v.name == name && v.region == region)
        {
            return Err(ApiError::new(
                409,
                "conflict",
                format!("a volume named \"{name}\" already exists in {region}"),
            ));
        }
        if self.volumes.len() >= config.volume_limit as usize {
            return Err(ApiError::unprocessable(format!(
                "creating this volume will exceed your volume limit ({})",
                config.volume_limit
            )));
        }
        let fs = optional_str(body, "filesystem_type");
        if !matches!(fs, "" | "ext4" | "xfs") {
            return Err(ApiError::unprocessable(
                "filesystem_type must be ext4 or xfs",
            ));
        }
        let tags = string_list(body, "tags")?;
        if let Some(bad) = tags.iter().find(|t| !is_valid_tag(t)) {
            return Err(ApiError::unprocessable(format!("tag \"{bad}\" is invalid")));
        }
        for t in &tags {
            self.tags.insert(t.clone());
        }
        let v = Volume {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            region: region.to_string(),
            size_gigabytes: size,
            description: optional_str(body, "description").to_string(),
            filesystem_type: fs.to_string(),
            filesystem_label: optional_str(body, "filesystem_label").to_string(),
            droplet_ids: Vec::new(),
            tags,
            created_ms: now,
        };
        let json = volume_json(&v);
        let key = self.next_volume_key;
        self.next_volume_key += 1;
        self.volume_keys.insert(v.id.clone(), key);
        self.volumes.insert(key, Arc::new(v));
        Ok((201, Some(json!({ "volume": json }))))
    }

    pub fn get_volume(&self, id: &str) -> Answer {
        let v = self.volume(id).ok_or_else(ApiError::not_found)?;
        Ok((200, Some(json!({ "volume": volume_json(v) }))))
    }

    pub fn list_volumes(&self, name: Option<&str>, region: Option<&str>, page: &Page) -> Value {
        let matching: Vec<&Volume> = self
            .volumes()
            .filter(|v| name.is_none_or(|n| v.name == n))
            .filter(|v| region.is_none_or(|r| v.region == r))
            .collect();
        super::paginate("volumes", &matching, page, |v| volume_json(v))
    }

    pub fn delete_volume(&mut self, id: &str) -> Answer {
        let v = self.volume(id).ok_or_else(ApiError::not_found)?;
        if !v.droplet_ids.is_empty() {
            return Err(ApiError::new(
                409,
                "conflict",
                "the volume is attached to a droplet; detach it first",
            ));
        }
        if let Some(key) = self.volume_keys.remove(id) {
            self.volumes.remove(&key);
        }
        Ok((204, None))
    }

    /// `POST /v2/volumes/{id}/actions`: attach or detach, same region only.
    pub fn volume_action(&mut self, id: &str, body: &Value, now: u64, host: &str) -> Answer {
        let kind = str_field(body, "type")?.to_string();
        let vol = self.volume(id).ok_or_else(ApiError::not_found)?;
        let attached = vol.droplet_ids.clone();
        let vol_region = vol.region.clone();
        let droplet_id = body
            .get("droplet_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApiError::unprocessable("droplet_id is required"))?;
        if let Some(r) = body.get("region").and_then(Value::as_str)
            && r != vol_region
        {
            return Err(ApiError::unprocessable(format!(
                "volume is in {vol_region}, not {r}"
            )));
        }
        let d = self
            .droplet_mut(droplet_id)
            .ok_or_else(|| ApiError::unprocessable(format!("droplet {droplet_id} not found")))?;
        let action = match kind.as_str() {
            "attach" => {
                if d.region != vol_region {
                    return Err(ApiError::unprocessable(
                        "volume and droplet must be in the same region",
                    ));
                }
                if !attached.is_empty() {
                    return Err(ApiError::unprocessable(
                        "volume is already attached to a droplet",
                    ));
                }
                d.volume_ids.push(id.to_string());
                self.attach_volume_record(id, droplet_id);
                "attach_volume"
            }
            "detach" => {
                if !attached.contains(&droplet_id) {
                    return Err(ApiError::unprocessable(
                        "volume is not attached to this droplet",
                    ));
                }
                d.volume_ids.retain(|v| v != id);
                self.detach_volume_record(id, droplet_id);
                "detach_volume"
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "action type \"{other}\" is not supported"
                )));
            }
        };
        self.forget_rendered(droplet_id);
        let aid = self.record_action(action, None, "volume", Some(&vol_region), now);
        Ok((
            202,
            Some(json!({ "action": self.action_json(aid, now, host) })),
        ))
    }
}

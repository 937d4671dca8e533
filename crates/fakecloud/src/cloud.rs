//! The cloud itself: droplets, volumes, SSH keys, tags and actions in memory, and their
//! DigitalOcean JSON shapes. No HTTP here; `server` routes requests to these methods.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog;
use crate::config::Config;

/// An error answered with DigitalOcean's body `{"id","message","request_id"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
    /// The tags API answers 400 with `{"error","messages","root_causes"}` instead.
    pub with_root_causes: bool,
}

impl ApiError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id,
            message: message.into(),
            with_root_causes: false,
        }
    }
    pub fn not_found() -> Self {
        Self::new(
            404,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "unprocessable_entity", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    fn tag_bad_request(message: impl Into<String>) -> Self {
        ApiError {
            with_root_causes: true,
            ..Self::bad_request(message)
        }
    }
}

pub type Answer = Result<(u16, Option<Value>), ApiError>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub user_data: Option<String>,
    pub volume_ids: Vec<String>,
    pub created_ms: u64,
    pub active_ms: u64,
    pub ip_ms: u64,
    pub off: bool,
    pub phoned_home: bool,
}

impl Droplet {
    pub fn status(&self, now: u64) -> &'static str {
        if self.off {
            "off"
        } else if now >= self.active_ms {
            "active"
        } else {
            "new"
        }
    }

    /// TEST-NET-3 addresses (203.0.113.0/24 and up), unique per id.
    pub fn public_ip(&self) -> String {
        let n = self.id;
        format!("203.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
    }

    fn private_ip(&self) -> String {
        let n = self.id;
        format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
    }
}

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub kind: String,
    pub resource_id: Option<u64>,
    pub resource_type: String,
    pub region: Option<String>,
    pub started_ms: u64,
}

/// Everything that a snapshot keeps.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cloud {
    next_id: u64,
    pub droplets: BTreeMap<u64, Droplet>,
    /// In creation order (DigitalOcean lists volumes that way).
    pub volumes: Vec<Volume>,
    pub ssh_keys: Vec<SshKey>,
    pub tags: BTreeSet<String>,
    pub actions: BTreeMap<u64, Action>,
    /// Droplets ever created / destroyed (proves "never created twice" beyond "none left").
    #[serde(default)]
    pub droplets_created: u64,
    #[serde(default)]
    pub droplets_destroyed: u64,
    /// Serialized droplets, valid until their next status/IP change (`until_ms`) or a
    /// mutation: polling a project by tag then costs string copies, not JSON building.
    #[serde(skip)]
    rendered: HashMap<u64, (u64, String)>,
}

/// A page request: DigitalOcean's `page` (1-based) and `per_page` (default 20, max 200).
pub struct Page {
    pub page: usize,
    pub per_page: usize,
    /// `scheme://host/path?other=params` to build `links.pages` from.
    pub base: String,
}

pub fn is_valid_tag(t: &str) -> bool {
    (1..=255).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'))
}

fn is_valid_hostname(n: &str) -> bool {
    (1..=255).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

fn is_valid_volume_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn str_field<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable(format!("{field} is required")))
}

fn string_list(body: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::unprocessable(format!("{field} must be strings")))
            })
            .collect(),
        Some(_) => Err(ApiError::unprocessable(format!("{field} must be an array"))),
    }
}

impl Cloud {
    fn next_id(&mut self) -> u64 {
        // Droplet-like ids, shared by every kind of resource: unique and increasing.
        if self.next_id == 0 {
            self.next_id = 3_164_444;
        }
        self.next_id += 1;
        self.next_id
    }

    fn action(
        &mut self,
        kind: &str,
        resource_id: Option<u64>,
        rtype: &str,
        region: Option<&str>,
        now: u64,
    ) -> u64 {
        let id = self.next_id();
        self.actions.insert(
            id,
            Action {
                id,
                kind: kind.to_string(),
                resource_id,
                resource_type: rtype.to_string(),
                region: region.map(str::to_string),
                started_ms: now,
            },
        );
        id
    }

    // ---- droplets ----

    /// `POST /v2/droplets`. Returns the new droplets' ids (for the phone-home scheduler).
    pub fn create_droplets(
        &mut self,
        body: &Value,
        config: &Config,
        rng: &mut impl Rng,
        now: u64,
        host: &str,
    ) -> Result<(Value, Vec<u64>), ApiError> {
        let (names, multi) = match (body.get("name"), body.get("names")) {
            (Some(Value::String(n)), None) => (vec![n.clone()], false),
            (None, Some(_)) => (string_list(body, "names")?, true),
            _ => {
                return Err(ApiError::unprocessable(
                    "exactly one of name or names is required",
                ));
            }
        };
        if names.is_empty() || names.len() > 10 {
            return Err(ApiError::unprocessable("names must hold 1 to 10 names"));
        }
        if let Some(bad) = names.iter().find(|n| !is_valid_hostname(n)) {
            return Err(ApiError::unprocessable(format!(
                "name \"{bad}\" is invalid: only a-z, 0-9, '.' and '-' are allowed"
            )));
        }
        let region = str_field(body, "region")?;
        catalog::region(region).ok_or_else(|| {
            ApiError::unprocessable(format!("region \"{region}\" is not available"))
        })?;
        let size = str_field(body, "size")?;
        catalog::size(size)
            .ok_or_else(|| ApiError::unprocessable(format!("size \"{size}\" is not available")))?;
        let image = match body.get("image") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(ApiError::unprocessable("image is required")),
        };
        let image = catalog::image(&image)
            .ok_or_else(|| ApiError::unprocessable(format!("image \"{image}\" does not exist")))?
            .slug
            .to_string();
        let tags = string_list(body, "tags")?;
        if let Some(bad) = tags.iter().find(|t| !is_valid_tag(t)) {
            return Err(ApiError::unprocessable(format!(
                "tag \"{bad}\" is invalid: tags may contain letters, numbers, colons, dashes, and underscores"
            )));
        }
        let user_data = match body.get("user_data") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if u.len() <= 64 * 1024 => Some(u.clone()),
            Some(Value::String(_)) => {
                return Err(ApiError::unprocessable("user_data is larger than 64 KiB"));
            }
            Some(_) => return Err(ApiError::unprocessable("user_data must be a string")),
        };
        if let Some(Value::Array(keys)) = body.get("ssh_keys") {
            for k in keys {
                let known = self.ssh_keys.iter().any(|s| match k {
                    Value::Number(n) => n.as_u64() == Some(s.id),
                    Value::String(f) => *f == s.fingerprint || *f == s.id.to_string(),
                    _ => false,
                });
                if !known {
                    return Err(ApiError::unprocessable(format!("ssh key {k} not found")));
                }
            }
        }
        let volumes = string_list(body, "volumes")?;
        for v in &volumes {
            let vol = self
                .volumes
                .iter()
                .find(|x| &x.id == v)
                .ok_or_else(|| ApiError::unprocessable(format!("volume {v} not found")))?;
            if vol.region != region {
                return Err(ApiError::unprocessable(
                    "volumes must be in the same region as the droplet",
                ));
            }
            if multi {
                return Err(ApiError::unprocessable(
                    "volumes cannot be attached when creating multiple droplets",
                ));
            }
        }
        if self.droplets.len() + names.len() > config.droplet_limit as usize {
            return Err(ApiError::unprocessable(format!(
                "creating this/these droplet(s) will exceed your droplet limit ({})",
                config.droplet_limit
            )));
        }
        for t in &tags {
            self.tags.insert(t.clone());
        }
        let mut ids = Vec::new();
        let mut links = Vec::new();
        for name in names {
            let id = self.next_id();
            let jitter = if config.boot_jitter_ms > 0 {
                rng.random_range(0..=config.boot_jitter_ms)
            } else {
                0
            };
            let d = Droplet {
                id,
                name,
                region: region.to_string(),
                size: size.to_string(),
                image: image.clone(),
                tags: tags.clone(),
                user_data: user_data.clone(),
                volume_ids: volumes.clone(),
                created_ms: now,
                active_ms: now + config.boot_delay_ms + jitter,
                ip_ms: now + config.ip_delay_ms,
                off: false,
                phoned_home: false,
            };
            for v in &volumes {
                if let Some(vol) = self.volumes.iter_mut().find(|x| &x.id == v) {
                    vol.droplet_ids.push(id);
                }
            }
            self.droplets.insert(id, d);
            self.droplets_created += 1;
            let aid = self.action("create", Some(id), "droplet", Some(region), now);
            links.push(
                json!({"id": aid, "rel": "create", "href": format!("{host}/v2/actions/{aid}")}),
            );
            ids.push(id);
        }
        let links = json!({ "actions": links });
        let body = if multi {
            let ds: Vec<Value> = ids
                .iter()
                .map(|id| self.droplet_json(&self.droplets[id], now))
                .collect();
            json!({ "droplets": ds, "links": links })
        } else {
            json!({ "droplet": self.droplet_json(&self.droplets[&ids[0]], now), "links": links })
        };
        Ok((body, ids))
    }

    pub fn droplet_json(&self, d: &Droplet, now: u64) -> Value {
        let size = catalog::size(&d.size).expect("droplets only have catalogue sizes");
        let image = catalog::image(&d.image).expect("droplets only have catalogue images");
        let region = catalog::region(&d.region).expect("droplets only have catalogue regions");
        let v4 = if now >= d.ip_ms {
            json!([
                {"ip_address": d.public_ip(), "netmask": "255.255.240.0", "gateway": "203.0.113.1", "type": "public"},
                {"ip_address": d.private_ip(), "netmask": "255.255.0.0", "gateway": "10.0.0.1", "type": "private"},
            ])
        } else {
            json!([])
        };
        json!({
            "id": d.id,
            "name": d.name,
            "memory": size.memory,
            "vcpus": size.vcpus,
            "disk": size.disk,
            "disk_info": [{"type": "local", "size": {"amount": size.disk, "unit": "gib"}}],
            "locked": false,
            "status": d.status(now),
            "kernel": null,
            "created_at": iso(d.created_ms),
            "features": ["monitoring"],
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": [],
            "image": catalog::image_json(image),
            "volume_ids": d.volume_ids,
            "size": catalog::size_json(size),
            "size_slug": d.size,
            "networks": {"v4": v4, "v6": []},
            "region": catalog::region_json(region),
            "tags": d.tags,
        })
    }

    /// The droplet's JSON text, rendered at most once per state.
    fn droplet_text(&mut self, id: u64, now: u64) -> Option<&str> {
        let fresh = self
            .rendered
            .get(&id)
            .is_some_and(|(until, _)| now < *until);
        if !fresh {
            let d = self.droplets.get(&id)?;
            let until = [d.ip_ms, d.active_ms]
                .into_iter()
                .filter(|t| *t > now)
                .min()
                .unwrap_or(u64::MAX);
            let text = self.droplet_json(d, now).to_string();
            self.rendered.insert(id, (until, text));
        }
        self.rendered.get(&id).map(|(_, t)| t.as_str())
    }

    /// `GET /v2/droplets` as JSON text.
    pub fn list_droplets(
        &mut self,
        tag: Option<&str>,
        name: Option<&str>,
        page: &Page,
        now: u64,
    ) -> String {
        let matching: Vec<u64> = self
            .droplets
            .values()
            .filter(|d| tag.is_none_or(|t| d.tags.iter().any(|x| x == t)))
            .filter(|d| name.is_none_or(|n| d.name == n))
            .map(|d| d.id)
            .collect();
        let (range, links, meta) = page_of(matching.len(), page);
        let mut out = String::from("{\"droplets\":[");
        for (i, id) in matching[range].iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(self.droplet_text(*id, now).unwrap_or("null"));
        }
        out.push_str("],\"links\":");
        out.push_str(&links.to_string());
        out.push_str(",\"meta\":");
        out.push_str(&meta.to_string());
        out.push('}');
        out
    }

    /// `GET /v2/droplets/{id}` as JSON text.
    pub fn get_droplet(&mut self, id: u64, now: u64) -> Result<String, ApiError> {
        let text = self.droplet_text(id, now).ok_or_else(ApiError::not_found)?;
        Ok(format!("{{\"droplet\":{text}}}"))
    }

    fn remove_droplet(&mut self, id: u64) {
        self.rendered.remove(&id);
        if self.droplets.remove(&id).is_some() {
            self.droplets_destroyed += 1;
            // Volumes are detached from a destroyed droplet, as at DigitalOcean.
            for v in &mut self.volumes {
                v.droplet_ids.retain(|d| *d != id);
            }
        }
    }

    pub fn delete_droplet(&mut self, id: u64) -> Answer {
        if !self.droplets.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        self.remove_droplet(id);
        Ok((204, None))
    }

    pub fn delete_droplets_by_tag(&mut self, tag: &str) -> Answer {
        let ids: Vec<u64> = self
            .droplets
            .values()
            .filter(|d| d.tags.iter().any(|t| t == tag))
            .map(|d| d.id)
            .collect();
        for id in ids {
            self.remove_droplet(id);
        }
        Ok((204, None))
    }

    pub fn droplet_action(&mut self, id: u64, body: &Value, now: u64, host: &str) -> Answer {
        let kind = str_field(body, "type")?.to_string();
        let d = self.droplets.get_mut(&id).ok_or_else(ApiError::not_found)?;
        match kind.as_str() {
            "power_off" | "shutdown" => d.off = true,
            "power_on" | "reboot" | "power_cycle" => d.off = false,
            "enable_ipv6" | "enable_private_networking" | "enable_backups" | "disable_backups" => {}
            other => {
                return Err(ApiError::unprocessable(format!(
                    "action type \"{other}\" is not supported"
                )));
            }
        }
        let region = d.region.clone();
        self.rendered.remove(&id);
        let aid = self.action(&kind, Some(id), "droplet", Some(&region), now);
        Ok((
            201,
            Some(json!({ "action": self.action_json(aid, now, host) })),
        ))
    }

    pub fn get_action(&self, id: u64, now: u64, host: &str) -> Answer {
        if !self.actions.contains_key(&id) {
            return Err(ApiError::not_found());
        }
        Ok((
            200,
            Some(json!({ "action": self.action_json(id, now, host) })),
        ))
    }

    /// Actions complete a moment after they start.
    fn action_json(&self, id: u64, now: u64, _host: &str) -> Value {
        let a = &self.actions[&id];
        let done = now >= a.started_ms + 1_000;
        let region = a.region.as_deref().and_then(catalog::region);
        json!({
            "id": a.id,
            "status": if done { "completed" } else { "in-progress" },
            "type": a.kind,
            "started_at": iso(a.started_ms),
            "completed_at": if done { Value::from(iso(a.started_ms + 1_000)) } else { Value::Null },
            "resource_id": a.resource_id,
            "resource_type": a.resource_type,
            "region": region.map(catalog::region_json),
            "region_slug": a.region,
        })
    }

    // ---- volumes ----

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
            .filter(|s| (1..=16_384).contains(s))
            .ok_or_else(|| ApiError::unprocessable("size_gigabytes must be between 1 and 16384"))?;
        let region = str_field(body, "region")?;
        catalog::region(region).ok_or_else(|| {
            ApiError::unprocessable(format!("region \"{region}\" is not available"))
        })?;
        if self
            .volumes
            .iter()
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
        let fs = body
            .get("filesystem_type")
            .and_then(Value::as_str)
            .unwrap_or("");
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
            description: body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            filesystem_type: fs.to_string(),
            filesystem_label: body
                .get("filesystem_label")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            droplet_ids: Vec::new(),
            tags,
            created_ms: now,
        };
        let json = Self::volume_json(&v);
        self.volumes.push(v);
        Ok((201, Some(json!({ "volume": json }))))
    }

    pub fn get_volume(&self, id: &str) -> Answer {
        let v = self
            .volumes
            .iter()
            .find(|v| v.id == id)
            .ok_or_else(ApiError::not_found)?;
        Ok((200, Some(json!({ "volume": Self::volume_json(v) }))))
    }

    pub fn list_volumes(&self, name: Option<&str>, region: Option<&str>, page: &Page) -> Value {
        let matching: Vec<&Volume> = self
            .volumes
            .iter()
            .filter(|v| name.is_none_or(|n| v.name == n))
            .filter(|v| region.is_none_or(|r| v.region == r))
            .collect();
        paginate("volumes", &matching, page, |v| Self::volume_json(v))
    }

    pub fn delete_volume(&mut self, id: &str) -> Answer {
        let i = self
            .volumes
            .iter()
            .position(|v| v.id == id)
            .ok_or_else(ApiError::not_found)?;
        if !self.volumes[i].droplet_ids.is_empty() {
            return Err(ApiError::new(
                409,
                "conflict",
                "the volume is attached to a droplet; detach it first",
            ));
        }
        self.volumes.remove(i);
        Ok((204, None))
    }

    pub fn volume_action(&mut self, id: &str, body: &Value, now: u64, host: &str) -> Answer {
        let kind = str_field(body, "type")?.to_string();
        let vi = self
            .volumes
            .iter()
            .position(|v| v.id == id)
            .ok_or_else(ApiError::not_found)?;
        let droplet_id = body
            .get("droplet_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApiError::unprocessable("droplet_id is required"))?;
        let vol_region = self.volumes[vi].region.clone();
        if let Some(r) = body.get("region").and_then(Value::as_str)
            && r != vol_region
        {
            return Err(ApiError::unprocessable(format!(
                "volume is in {vol_region}, not {r}"
            )));
        }
        let d = self
            .droplets
            .get_mut(&droplet_id)
            .ok_or_else(|| ApiError::unprocessable(format!("droplet {droplet_id} not found")))?;
        match kind.as_str() {
            "attach" => {
                if d.region != vol_region {
                    return Err(ApiError::unprocessable(
                        "volume and droplet must be in the same region",
                    ));
                }
                if !self.volumes[vi].droplet_ids.is_empty() {
                    return Err(ApiError::unprocessable(
                        "volume is already attached to a droplet",
                    ));
                }
                d.volume_ids.push(id.to_string());
                self.volumes[vi].droplet_ids.push(droplet_id);
            }
            "detach" => {
                if !self.volumes[vi].droplet_ids.contains(&droplet_id) {
                    return Err(ApiError::unprocessable(
                        "volume is not attached to this droplet",
                    ));
                }
                d.volume_ids.retain(|v| v != id);
                self.volumes[vi].droplet_ids.retain(|x| *x != droplet_id);
            }
            other => {
                return Err(ApiError::unprocessable(format!(
                    "action type \"{other}\" is not supported"
                )));
            }
        }
        self.rendered.remove(&droplet_id);
        let kind = if kind == "attach" {
            "attach_volume"
        } else {
            "detach_volume"
        };
        let aid = self.action(kind, None, "volume", Some(&vol_region), now);
        Ok((
            202,
            Some(json!({ "action": self.action_json(aid, now, host) })),
        ))
    }

    // ---- ssh keys ----

    fn key_json(k: &SshKey) -> Value {
        json!({"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name})
    }

    pub fn create_ssh_key(&mut self, body: &Value) -> Answer {
        let name = str_field(body, "name")?.to_string();
        let public_key = str_field(body, "public_key")?.trim().to_string();
        let mut parts = public_key.split_whitespace();
        let ok = matches!(parts.next(), Some(t) if t.starts_with("ssh-") || t.starts_with("ecdsa-"))
            && parts.next().is_some();
        if !ok {
            return Err(ApiError::unprocessable(
                "public_key is not a valid OpenSSH public key",
            ));
        }
        let fingerprint = fingerprint(&public_key);
        if self.ssh_keys.iter().any(|k| k.fingerprint == fingerprint) {
            return Err(ApiError::unprocessable(
                "SSH Key is already in use on your account",
            ));
        }
        let id = self.next_id();
        let k = SshKey {
            id,
            name,
            public_key,
            fingerprint,
        };
        let json = Self::key_json(&k);
        self.ssh_keys.push(k);
        Ok((201, Some(json!({ "ssh_key": json }))))
    }

    fn key_index(&self, id_or_fp: &str) -> Result<usize, ApiError> {
        self.ssh_keys
            .iter()
            .position(|k| k.id.to_string() == id_or_fp || k.fingerprint == id_or_fp)
            .ok_or_else(ApiError::not_found)
    }

    pub fn get_ssh_key(&self, id_or_fp: &str) -> Answer {
        let i = self.key_index(id_or_fp)?;
        Ok((
            200,
            Some(json!({ "ssh_key": Self::key_json(&self.ssh_keys[i]) })),
        ))
    }

    pub fn delete_ssh_key(&mut self, id_or_fp: &str) -> Answer {
        let i = self.key_index(id_or_fp)?;
        self.ssh_keys.remove(i);
        Ok((204, None))
    }

    pub fn list_ssh_keys(&self, page: &Page) -> Value {
        let all: Vec<&SshKey> = self.ssh_keys.iter().collect();
        paginate("ssh_keys", &all, page, |k| Self::key_json(k))
    }

    // ---- tags ----

    fn tag_json(&self, name: &str) -> Value {
        let droplets: Vec<&Droplet> = self
            .droplets
            .values()
            .filter(|d| d.tags.iter().any(|t| t == name))
            .collect();
        let volumes = self
            .volumes
            .iter()
            .filter(|v| v.tags.iter().any(|t| t == name))
            .count();
        let mut droplet_meta = json!({ "count": droplets.len() });
        if let Some(last) = droplets.last() {
            droplet_meta["last_tagged_uri"] = json!(format!("/v2/droplets/{}", last.id));
        }
        json!({
            "name": name,
            "resources": {
                "count": droplets.len() + volumes,
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
        paginate("tags", &all, page, |t| self.tag_json(t))
    }

    pub fn delete_tag(&mut self, name: &str) -> Answer {
        if !self.tags.remove(name) {
            return Err(ApiError::not_found());
        }
        for d in self.droplets.values_mut() {
            d.tags.retain(|t| t != name);
        }
        self.rendered.clear();
        for v in &mut self.volumes {
            v.tags.retain(|t| t != name);
        }
        Ok((204, None))
    }

    /// `POST|DELETE /v2/tags/{tag}/resources` for droplets and volumes.
    pub fn tag_resources(&mut self, name: &str, body: &Value, assign: bool) -> Answer {
        if !self.tags.contains(name) {
            return Err(ApiError::not_found());
        }
        let resources = body
            .get("resources")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::tag_bad_request("resources must be a non-empty array"))?;
        // Check all first: no partial write.
        let mut targets = Vec::new();
        for r in resources {
            let id = r.get("resource_id").and_then(Value::as_str).unwrap_or("");
            let kind = r.get("resource_type").and_then(Value::as_str).unwrap_or("");
            match kind {
                "droplet" => {
                    let n: u64 = id.parse().map_err(|_| ApiError::not_found())?;
                    if !self.droplets.contains_key(&n) {
                        return Err(ApiError::not_found());
                    }
                    targets.push((true, id.to_string()));
                }
                "volume" => {
                    if !self.volumes.iter().any(|v| v.id == id) {
                        return Err(ApiError::not_found());
                    }
                    targets.push((false, id.to_string()));
                }
                _ => {
                    return Err(ApiError::tag_bad_request(format!(
                        "resource_type \"{kind}\" is not supported"
                    )));
                }
            }
        }
        self.rendered.clear();
        for (is_droplet, id) in targets {
            let tags = if is_droplet {
                &mut self
                    .droplets
                    .get_mut(&id.parse().expect("checked above"))
                    .expect("checked")
                    .tags
            } else {
                &mut self
                    .volumes
                    .iter_mut()
                    .find(|v| v.id == id)
                    .expect("checked")
                    .tags
            };
            if assign {
                if !tags.iter().any(|t| t == name) {
                    tags.push(name.to_string());
                }
            } else {
                tags.retain(|t| t != name);
            }
        }
        Ok((204, None))
    }

    // ---- account ----

    pub fn account(&self, config: &Config) -> Value {
        json!({ "account": {
            "droplet_limit": config.droplet_limit,
            "floating_ip_limit": 3,
            "volume_limit": config.volume_limit,
            "reserved_ip_limit": 3,
            "email": "fake@example.com",
            "name": "Fake Cloud",
            "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
            "email_verified": true,
            "status": "active",
            "status_message": "",
            "team": { "uuid": "5df3e3004a17e242b7c20ca6c9fc25b701a47ece", "name": "Fake Team" },
        }})
    }
}

/// A stable fake MD5-style fingerprint (16 colon-separated bytes).
fn fingerprint(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut bytes = Vec::with_capacity(16);
    for salt in [0u8, 1] {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, key).hash(&mut h);
        bytes.extend_from_slice(&h.finish().to_be_bytes());
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// DigitalOcean's list envelope: `{<key>: [...], links: {pages: {...}}, meta: {total}}`.
pub fn paginate<T>(key: &str, all: &[T], page: &Page, to_json: impl Fn(&T) -> Value) -> Value {
    let (range, links, meta) = page_of(all.len(), page);
    let items: Vec<Value> = all[range].iter().map(to_json).collect();
    json!({ key: items, "links": links, "meta": meta })
}

/// The slice of `total` items on `page`, and its `links` and `meta` objects.
fn page_of(total: usize, page: &Page) -> (std::ops::Range<usize>, Value, Value) {
    let per = page.per_page.clamp(1, 200);
    let last = total.div_ceil(per).max(1);
    let p = page.page.max(1);
    let start = ((p - 1) * per).min(total);
    let end = (start + per).min(total);
    let sep = if page.base.contains('?') { '&' } else { '?' };
    let url = |n: usize| format!("{}{sep}page={n}&per_page={per}", page.base);
    let mut pages = serde_json::Map::new();
    if p > 1 {
        pages.insert("first".into(), url(1).into());
        pages.insert("prev".into(), url(p - 1).into());
    }
    if p < last {
        pages.insert("next".into(), url(p + 1).into());
        pages.insert("last".into(), url(last).into());
    }
    (
        start..end,
        json!({ "pages": pages }),
        json!({ "total": total }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn page() -> Page {
        Page {
            page: 1,
            per_page: 20,
            base: "http://x/v2/droplets".into(),
        }
    }

    /// The rendered-text cache never serves a stale status, IP, tag or power state.
    #[test]
    fn rendered_droplets_follow_every_change() {
        let mut c = Cloud::default();
        let config = Config {
            boot_delay_ms: 100,
            boot_jitter_ms: 0,
            ip_delay_ms: 50,
            ..Config::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let body = json!({"name": "a", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64", "tags": ["t"]});
        let (_, ids) = c
            .create_droplets(&body, &config, &mut rng, 1_000, "")
            .unwrap();
        let id = ids[0];
        let get = |c: &mut Cloud, now| -> Value {
            serde_json::from_str(&c.get_droplet(id, now).unwrap()).unwrap()
        };
        let d = get(&mut c, 1_000);
        assert_eq!(
            (
                d["droplet"]["status"].as_str(),
                d["droplet"]["networks"]["v4"].as_array().map(Vec::len)
            ),
            (Some("new"), Some(0))
        );
        let d = get(&mut c, 1_060);
        assert_eq!(
            d["droplet"]["networks"]["v4"].as_array().map(Vec::len),
            Some(2),
            "IP appeared"
        );
        assert_eq!(d["droplet"]["status"], "new");
        assert_eq!(get(&mut c, 1_100)["droplet"]["status"], "active");

        c.create_tag(&json!({"name": "u"})).unwrap();
        let res =
            json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]});
        c.tag_resources("u", &res, true).unwrap();
        assert_eq!(get(&mut c, 1_200)["droplet"]["tags"], json!(["t", "u"]));
        let listed: Value =
            serde_json::from_str(&c.list_droplets(Some("u"), None, &page(), 1_200)).unwrap();
        assert_eq!(listed["meta"]["total"], 1);
        c.droplet_action(id, &json!({"type": "power_off"}), 1_300, "")
            .unwrap();
        assert_eq!(get(&mut c, 1_300)["droplet"]["status"], "off");
        c.delete_droplet(id).unwrap();
        assert!(c.get_droplet(id, 1_400).is_err());
    }
}

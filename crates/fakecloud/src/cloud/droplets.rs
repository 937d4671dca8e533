//! Droplets: multi-create with DigitalOcean's validation and quota, get, list (by tag, by
//! name, paginated), destroy one or by tag, and the power actions. A droplet's status and IP
//! follow the clock: `new` until `active_ms`, its IPs from `ip_ms`.

use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::{str_field, string_list};
use super::{Cloud, Page, is_valid_tag};
use crate::catalog;
use crate::config::Config;
use crate::error::{Answer, ApiError};

/// DigitalOcean's multi-create takes at most 10 names.
const MAX_NAMES: usize = 10;
/// DigitalOcean's `user_data` limit.
const MAX_USER_DATA: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    /// Shared by the droplets of one multi-create.
    pub user_data: Option<Arc<str>>,
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

    pub fn private_ip(&self) -> String {
        let n = self.id;
        format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
    }
}

fn is_valid_hostname(n: &str) -> bool {
    (1..=255).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

/// A create request, checked against the catalogue and the account.
struct Create {
    names: Vec<String>,
    multi: bool,
    region: String,
    size: String,
    image: String,
    tags: Vec<String>,
    user_data: Option<Arc<str>>,
    volumes: Vec<String>,
}

impl Cloud {
    fn parse_create(&self, body: &Value) -> Result<Create, ApiError> {
        let (names, multi) = match (body.get("name"), body.get("names")) {
            (Some(Value::String(n)), None) => (vec![n.clone()], false),
            (None, Some(_)) => (string_list(body, "names")?, true),
            _ => {
                return Err(ApiError::unprocessable(
                    "exactly one of name or names is required",
                ));
            }
        };
        if names.is_empty() || names.len() > MAX_NAMES {
            return Err(ApiError::unprocessable(format!(
                "names must hold 1 to {MAX_NAMES} names"
            )));
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
            Some(Value::String(u)) if u.len() <= MAX_USER_DATA => Some(Arc::from(u.as_str())),
            Some(Value::String(_)) => {
                return Err(ApiError::unprocessable("user_data is larger than 64 KiB"));
            }
            Some(_) => return Err(ApiError::unprocessable("user_data must be a string")),
        };
        if let Some(Value::Array(keys)) = body.get("ssh_keys") {
            for k in keys {
                if !self.has_ssh_key(k) {
                    return Err(ApiError::unprocessable(format!("ssh key {k} not found")));
                }
            }
        }
        let volumes = string_list(body, "volumes")?;
        for v in &volumes {
            let vol = self
                .volume(v)
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
        Ok(Create {
            names,
            multi,
            region: region.to_string(),
            size: size.to_string(),
            image,
            tags,
            user_data,
            volumes,
        })
    }

    /// `POST /v2/droplets`. Returns the new droplets' ids (for the phone-home scheduler).
    pub fn create_droplets(
        &mut self,
        body: &Value,
        config: &Config,
        rng: &mut impl Rng,
        now: u64,
        host: &str,
    ) -> Result<(Value, Vec<u64>), ApiError> {
        let c = self.parse_create(body)?;
        if self.droplets.len() + c.names.len() > config.droplet_limit as usize {
            return Err(ApiError::unprocessable(format!(
                "creating this/these droplet(s) will exceed your droplet limit ({})",
                config.droplet_limit
            )));
        }
        for t in &c.tags {
            self.tags.insert(t.clone());
        }
        let mut ids = Vec::with_capacity(c.names.len());
        let mut links = Vec::with_capacity(c.names.len());
        for name in c.names {
            let id = self.next_id();
            let jitter = if config.boot_jitter_ms > 0 {
                rng.random_range(0..=config.boot_jitter_ms)
            } else {
                0
            };
            for v in &c.volumes {
                self.attach_volume_record(v, id);
            }
            self.insert_droplet(Droplet {
                id,
                name,
                region: c.region.clone(),
                size: c.size.clone(),
                image: c.image.clone(),
                tags: c.tags.clone(),
                user_data: c.user_data.clone(),
                volume_ids: c.volumes.clone(),
                created_ms: now,
                active_ms: now + config.boot_delay_ms + jitter,
                ip_ms: now + config.ip_delay_ms,
                off: false,
                phoned_home: false,
            });
            let aid = self.record_action("create", Some(id), "droplet", Some(&c.region), now);
            links.push(
                json!({"id": aid, "rel": "create", "href": format!("{host}/v2/actions/{aid}")}),
            );
            ids.push(id);
        }
        let links = json!({ "actions": links });
        let body = if c.multi {
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

    fn insert_droplet(&mut self, d: Droplet) {
        self.index_tags(d.id, &d.tags);
        self.droplets.insert(d.id, Arc::new(d));
        self.droplets_created += 1;
    }

    /// `GET /v2/droplets` as JSON text: the project's droplets (by tag) cost what the project
    /// holds; every droplet, or by name, costs a scan.
    pub fn list_droplets(
        &mut self,
        tag: Option<&str>,
        name: Option<&str>,
        page: &Page,
        now: u64,
    ) -> String {
        let candidates: Vec<u64> = match tag {
            Some(t) => self.tagged_droplets(t).collect(),
            None => self.droplets.keys().copied().collect(),
        };
        let matching: Vec<u64> = match name {
            Some(n) => candidates
                .into_iter()
                .filter(|id| self.droplets.get(id).is_some_and(|d| d.name == n))
                .collect(),
            None => candidates,
        };
        let (range, links, meta) = page.of(matching.len());
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
        self.forget_rendered(id);
        if let Some(d) = self.droplets.remove(&id) {
            self.droplets_destroyed += 1;
            self.unindex_tags(id, &d.tags);
            // Volumes are detached from a destroyed droplet, as at DigitalOcean.
            for v in &d.volume_ids {
                self.detach_volume_record(v, id);
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
        let ids: Vec<u64> = self.tagged_droplets(tag).collect();
        for id in ids {
            self.remove_droplet(id);
        }
        Ok((204, None))
    }

    /// `POST /v2/droplets/{id}/actions`: power actions change the status; the others are
    /// accepted and recorded.
    pub fn droplet_action(&mut self, id: u64, body: &Value, now: u64, host: &str) -> Answer {
        let kind = str_field(body, "type")?.to_string();
        let d = self.droplet_mut(id).ok_or_else(ApiError::not_found)?;
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
        self.forget_rendered(id);
        let aid = self.record_action(&kind, Some(id), "droplet", Some(&region), now);
        Ok((
            201,
            Some(json!({ "action": self.action_json(aid, now, host) })),
        ))
    }

    /// Marks that droplet `id` phoned home (it will not again, even after a restart).
    pub fn mark_phoned_home(&mut self, id: u64) {
        if let Some(d) = self.droplet_mut(id) {
            d.phoned_home = true;
        }
    }
}

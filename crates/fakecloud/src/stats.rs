//! What `/_fake/stats` reports: calls per operation and outcome, phone-home outcomes, and
//! what the state shows about a client — live droplets by status and tag, duplicates (a
//! unique tag, or a name within a group tag, on more than one live droplet) and orphans
//! (owner-tagged resources with no key). See `docs/digitalocean.md` for the fields.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cloud::Cloud;
use crate::config::Config;

/// Outcome counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// operationId → status (or "dropped"/"lost") → count.
    calls: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Phone-home outcome (`ok`, `refused`, `failed`) → count.
    phone_home: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub fn call(&mut self, op: &'static str, outcome: impl Into<String>) {
        *self
            .calls
            .entry(op)
            .or_default()
            .entry(outcome.into())
            .or_default() += 1;
    }

    pub fn phone_home(&mut self, outcome: &'static str) {
        *self.phone_home.entry(outcome).or_default() += 1;
    }
}

/// The `/_fake/stats` document.
pub fn report(cloud: &Cloud, config: &Config, counters: &Counters, now: u64) -> Value {
    let prefix = config.unique_tag_prefix.as_str();
    let group = config.group_tag_prefix.as_str();
    let owner = config.owner_tag.as_str();
    let mut by_tag: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut by_name: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut orphan_droplets = Vec::new();
    for d in cloud.droplets().values() {
        *by_status.entry(d.status(now)).or_default() += 1;
        for t in &d.tags {
            by_tag.entry(t).or_default().push(d.id);
            if !group.is_empty() && t.starts_with(group) {
                by_name.entry((t, &d.name)).or_default().push(d.id);
            }
        }
        let has_owner = d.tags.iter().any(|t| t == owner);
        let has_key = d
            .tags
            .iter()
            .any(|t| t.starts_with(prefix) || (!group.is_empty() && t.starts_with(group)));
        if has_owner && !has_key {
            orphan_droplets.push(d.id);
        }
    }
    let mut duplicates: BTreeMap<String, &Vec<u64>> = by_tag
        .iter()
        .filter(|(t, ids)| t.starts_with(prefix) && ids.len() > 1)
        .map(|(t, ids)| (t.to_string(), ids))
        .collect();
    duplicates.extend(
        by_name
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|((t, n), ids)| (format!("{t}/{n}"), ids)),
    );
    // A volume is orphaned when no droplet has it attached any more.
    let orphan_volumes: Vec<&str> = cloud
        .volumes()
        .filter(|v| v.droplet_ids.is_empty() && v.tags.iter().any(|t| t == owner))
        .map(|v| v.id.as_str())
        .collect();
    let total: u64 = counters.calls.values().flat_map(|m| m.values()).sum();
    let (created, destroyed) = cloud.droplet_counts();
    json!({
        "calls": counters.calls,
        "total_calls": total,
        "droplets": {
            "live": cloud.droplets().len(),
            "created": created,
            "destroyed": destroyed,
            "by_status": by_status,
            "by_tag": by_tag.iter().map(|(t, ids)| (*t, ids.len())).collect::<BTreeMap<_, _>>(),
        },
        "volumes": {
            "live": cloud.volumes().len(),
            "attached": cloud.volumes().filter(|v| !v.droplet_ids.is_empty()).count(),
        },
        "duplicates": { "count": duplicates.len(), "by_tag": duplicates },
        "orphans": {
            "count": orphan_droplets.len() + orphan_volumes.len(),
            "droplets": orphan_droplets,
            "volumes": orphan_volumes,
        },
        "phone_home": counters.phone_home,
    })
}

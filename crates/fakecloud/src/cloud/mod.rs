//! The cloud itself: droplets, volumes, SSH keys, tags and actions in memory, with
//! DigitalOcean's validation rules and JSON shapes. No HTTP here (`server` routes requests to
//! these methods) and no clock (every method is given `now`), so it is tested directly.
//!
//! [`Cloud`] is what a snapshot keeps; the per-resource operations are `impl Cloud` blocks in
//! the submodules, one per resource, and touch each other's state only through this struct
//! (a volume attach changes a droplet; a droplet destroyed detaches its volumes).

mod account;
mod actions;
mod body;
mod droplet_json;
mod droplets;
mod page;
mod ssh_keys;
mod tags;
mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use droplets::Droplet;
pub use page::{Page, paginate};
pub use tags::is_valid_tag;
pub use volumes::Volume;

/// Everything that a snapshot keeps (its JSON is the snapshot file), plus derived indexes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cloud {
    next_id: u64,
    /// Shared with the copy a snapshot takes (copy-on-write: see `droplet_mut`).
    droplets: BTreeMap<u64, Arc<Droplet>>,
    /// By creation order (DigitalOcean lists volumes that way).
    #[serde(with = "volumes::in_creation_order")]
    volumes: BTreeMap<u64, Arc<Volume>>,
    ssh_keys: Vec<ssh_keys::SshKey>,
    tags: BTreeSet<String>,
    actions: BTreeMap<u64, Arc<actions::Action>>,
    /// Droplets ever created / destroyed (proves "never created twice" beyond "none left").
    #[serde(default)]
    droplets_created: u64,
    #[serde(default)]
    droplets_destroyed: u64,
    /// Droplet ids per tag, so that a project's listing, its by-tag delete and a tag's count
    /// cost what the project holds, not what the cloud holds. Derived: rebuilt on load.
    #[serde(skip)]
    tagged: HashMap<String, BTreeSet<u64>>,
    /// Volume id → key in `volumes`, and the next key. Derived: rebuilt on load.
    #[serde(skip)]
    volume_keys: HashMap<String, u64>,
    #[serde(skip)]
    next_volume_key: u64,
    /// Serialized droplets, valid until their next status/IP change (`until_ms`) or a
    /// mutation: polling a project by tag then costs string copies, not JSON building.
    #[serde(skip)]
    rendered: HashMap<u64, (u64, String)>,
}

impl Cloud {
    /// A cloud from a snapshot's JSON, its indexes rebuilt.
    pub fn from_snapshot(text: &str) -> serde_json::Result<Self> {
        let mut c: Cloud = serde_json::from_str(text)?;
        for d in c.droplets.values() {
            for t in &d.tags {
                c.tagged.entry(t.clone()).or_default().insert(d.id);
            }
        }
        c.index_volumes();
        Ok(c)
    }

    /// What a snapshot keeps, without the caches: taken under the lock, serialized after.
    /// Resources are shared, not copied (a later change copies the one it changes), so this
    /// costs a pointer per resource.
    pub fn snapshot(&self) -> Cloud {
        Cloud {
            next_id: self.next_id,
            droplets: self.droplets.clone(),
            volumes: self.volumes.clone(),
            ssh_keys: self.ssh_keys.clone(),
            tags: self.tags.clone(),
            actions: self.actions.clone(),
            droplets_created: self.droplets_created,
            droplets_destroyed: self.droplets_destroyed,
            tagged: HashMap::new(),
            volume_keys: HashMap::new(),
            next_volume_key: 0,
            rendered: HashMap::new(),
        }
    }

    fn next_id(&mut self) -> u64 {
        // Droplet-like ids, shared by every kind of resource: unique and increasing.
        if self.next_id == 0 {
            self.next_id = 3_164_444;
        }
        self.next_id += 1;
        self.next_id
    }

    pub fn droplets(&self) -> &BTreeMap<u64, Arc<Droplet>> {
        &self.droplets
    }

    /// Droplet `id` to change (copied first if a snapshot still shares it).
    fn droplet_mut(&mut self, id: u64) -> Option<&mut Droplet> {
        self.droplets.get_mut(&id).map(Arc::make_mut)
    }

    /// In creation order.
    pub fn volumes(&self) -> impl ExactSizeIterator<Item = &Volume> {
        self.volumes.values().map(|v| &**v)
    }

    /// Droplets ever created and ever destroyed.
    pub fn droplet_counts(&self) -> (u64, u64) {
        (self.droplets_created, self.droplets_destroyed)
    }
}

/// `2024-01-02T03:04:05Z`, DigitalOcean's timestamps.
pub fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde_json::{Value, json};

    use super::{Cloud, Page};
    use crate::config::Config;

    fn page() -> Page {
        Page {
            page: 1,
            per_page: 200,
            base: String::new(),
        }
    }

    /// A snapshot's JSON is the plain state; loading it rebuilds the indexes (tags, volume
    /// ids) and keeps the volumes' creation order.
    #[test]
    fn snapshot_round_trip_rebuilds_the_indexes() {
        let mut c = Cloud::default();
        let config = Config::instant();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let body = json!({"names": ["a", "b"], "region": "nyc3", "size": "s-1vcpu-1gb",
            "image": "ubuntu-24-04-x64", "tags": ["p"]});
        c.create_droplets(&body, &config, &mut rng, 1, "").unwrap();
        let mut ids = Vec::new();
        for name in ["v-2", "v-1"] {
            let v = json!({"name": name, "size_gigabytes": 1, "region": "nyc3"});
            let (_, made) = c.create_volume(&v, &config, 1).unwrap();
            ids.push(made.unwrap()["volume"]["id"].as_str().unwrap().to_string());
        }
        let text = serde_json::to_string(&c.snapshot()).unwrap();
        let plain: Value = serde_json::from_str(&text).unwrap();
        assert!(plain["volumes"].is_array(), "volumes kept as a list");

        let mut back = Cloud::from_snapshot(&text).unwrap();
        let listed: Value =
            serde_json::from_str(&back.list_droplets(Some("p"), None, &page(), 2)).unwrap();
        assert_eq!(listed["meta"]["total"], 2);
        assert!(back.get_volume(&ids[1]).is_ok());
        let names: Vec<Value> = back.list_volumes(None, None, &page())["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].clone())
            .collect();
        assert_eq!(names, [json!("v-2"), json!("v-1")], "creation order");
        back.delete_droplets_by_tag("p").unwrap();
        assert_eq!(back.droplets().len(), 0);
        let v = json!({"name": "v-3", "size_gigabytes": 1, "region": "nyc3"});
        back.create_volume(&v, &config, 3).unwrap();
        assert_eq!(
            back.volumes().last().unwrap().name,
            "v-3",
            "new keys after the loaded ones"
        );
    }
}

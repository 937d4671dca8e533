//! A droplet's DigitalOcean JSON (≈ 2.7 KB with its image, size and region), and the cache of
//! it as text: rendered once per state and kept until the droplet's next status or IP change
//! (time-driven) or a mutation of it, so that polling a project costs string copies, not JSON
//! building under the state lock.

use serde_json::{Value, json};

use super::{Cloud, Droplet, iso};
use crate::catalog;

impl Cloud {
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
    pub(super) fn droplet_text(&mut self, id: u64, now: u64) -> Option<&str> {
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

    /// Droplet `id` changed: its text must be rendered again.
    pub(super) fn forget_rendered(&mut self, id: u64) {
        self.rendered.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde_json::{Value, json};

    use crate::cloud::{Cloud, Page};
    use crate::config::Config;

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
        c.tag_resources("u", &res, false).unwrap();
        assert_eq!(get(&mut c, 1_250)["droplet"]["tags"], json!(["t"]));
        c.droplet_action(id, &json!({"type": "power_off"}), 1_300, "")
            .unwrap();
        assert_eq!(get(&mut c, 1_300)["droplet"]["status"], "off");
        c.delete_tag("t").unwrap();
        assert_eq!(get(&mut c, 1_350)["droplet"]["tags"], json!([]));
        c.delete_droplet(id).unwrap();
        assert!(c.get_droplet(id, 1_400).is_err());
    }
}

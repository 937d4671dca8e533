//! Provider-neutral descriptions of machines and volumes. They are `Serialize` so workflows can
//! journal them as step results.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tags;

/// Machines created together: one provider call where the provider supports it (DigitalOcean:
/// up to 10 names). Everything but the name and instance is shared, as in DO's multi-create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineBatch {
    pub project_id: String,
    pub region: String,
    pub size: String,
    pub image: String,
    /// Provider ids or fingerprints of SSH keys to install.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// cloud-init script (≤ 64 KiB on DigitalOcean); carries the phone-home marker.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Additional user tags (must follow the provider's tag rules).
    #[serde(default)]
    pub extra_tags: Vec<String>,
    /// A tag every machine of this batch's group carries (a workflow chunk's: a bounded number
    /// of machines), the same for every batch of one ensure round. The round's look-up lists by
    /// it instead of by the project's tag, so a round costs what its group holds, not what the
    /// whole project holds (10 000 machines: 50 pages per round). `None`: the whole project.
    #[serde(default)]
    pub group_tag: Option<String>,
    pub members: Vec<BatchMember>,
}

/// One machine of a batch. Its provider name is [`tags::machine_name`]`(name, instance_id)`,
/// unique within the project: after a crash between "provider accepted" and "journaled" the
/// machine is found by project tag + that name. A member with volumes is created on its own,
/// its volumes first, so the provider attaches them at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMember {
    pub instance_id: String,
    pub name: String,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

impl BatchMember {
    /// The machine's provider name.
    pub fn machine_name(&self) -> String {
        tags::machine_name(&self.name, &self.instance_id)
    }
}

/// One ensured machine with the volumes attached to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ensured {
    pub machine: Machine,
    pub volumes: Vec<Volume>,
}

/// One machine to ensure (a batch of one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    pub instance_id: String,
    pub project_id: String,
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub extra_tags: Vec<String>,
}

impl From<MachineSpec> for MachineBatch {
    fn from(s: MachineSpec) -> Self {
        MachineBatch {
            project_id: s.project_id,
            region: s.region,
            size: s.size,
            image: s.image,
            ssh_keys: s.ssh_keys,
            user_data: s.user_data,
            extra_tags: s.extra_tags,
            group_tag: None,
            members: vec![BatchMember {
                instance_id: s.instance_id,
                name: s.name,
                volumes: Vec::new(),
            }],
        }
    }
}

/// Largest `user_data` DigitalOcean accepts.
pub const MAX_USER_DATA: usize = 64 * 1024;

impl MachineBatch {
    /// Checks everything checkable before any call, naming the field at fault.
    pub fn validate(&self, max_batch: usize) -> Result<()> {
        if let Some(t) = &self.group_tag
            && !tags::is_valid(t)
        {
            return Err(Error::invalid(
                "group_tag",
                format!("{t:?} is not a valid tag"),
            ));
        }
        if self.members.is_empty() {
            return Err(Error::invalid(
                "members",
                "a batch needs at least one machine",
            ));
        }
        if self.members.len() > max_batch {
            return Err(Error::invalid(
                "members",
                format!(
                    "at most {max_batch} machines per batch, got {}",
                    self.members.len()
                ),
            ));
        }
        for (field, v) in [
            ("region", &self.region),
            ("size", &self.size),
            ("image", &self.image),
        ] {
            if v.trim().is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
        }
        if !tags::is_valid(&tags::project(&self.project_id)) {
            return Err(Error::invalid(
                "project_id",
                "must be letters, numbers, colons, dashes or underscores",
            ));
        }
        for t in &self.extra_tags {
            if !tags::is_valid(t) {
                return Err(Error::invalid(
                    "extra_tags",
                    format!("{t:?} is not a valid tag (letters, numbers, ':', '-', '_')"),
                ));
            }
        }
        if self
            .user_data
            .as_ref()
            .is_some_and(|u| u.len() > MAX_USER_DATA)
        {
            return Err(Error::invalid("user_data", "larger than 64 KiB"));
        }
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for m in &self.members {
            if !is_valid_hostname(&m.name) || !is_valid_hostname(&m.machine_name()) {
                return Err(Error::invalid(
                    "name",
                    format!(
                        "{:?} is not a valid machine name (letters, digits, '.', '-')",
                        m.name
                    ),
                ));
            }
            if tags::instance_of_machine(&m.machine_name()) != Some(m.instance_id.as_str()) {
                return Err(Error::invalid(
                    "instance_id",
                    format!("{:?}: letters, digits and '-' only", m.instance_id),
                ));
            }
            for v in &m.volumes {
                v.validate()?;
                if v.region != self.region {
                    return Err(Error::invalid(
                        "volume.region",
                        "a volume must be in its machine's region",
                    ));
                }
            }
            if !names.insert(&m.name) {
                return Err(Error::invalid(
                    "name",
                    format!("{:?} twice in one batch", m.name),
                ));
            }
            if !ids.insert(&m.instance_id) {
                return Err(Error::invalid(
                    "instance_id",
                    format!("{:?} twice in one batch", m.instance_id),
                ));
            }
        }
        Ok(())
    }

    /// Tags of every machine of the batch (a multi-create gives all its machines the same tags;
    /// a machine's instance is in its name).
    pub fn shared_tags(&self) -> Vec<String> {
        let mut t = vec![tags::TALIS.to_string(), tags::project(&self.project_id)];
        t.extend(self.extra_tags.iter().cloned());
        t.extend(self.group_tag.iter().cloned());
        t
    }

    /// The tag a look-up for this batch lists by: its group's, else its project's.
    pub fn lookup_tag(&self) -> String {
        self.group_tag
            .clone()
            .unwrap_or_else(|| tags::project(&self.project_id))
    }
}

/// DigitalOcean droplet names: hostname characters (letters, digits, '.', '-'), ≤ 255.
fn is_valid_hostname(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

/// Lifecycle of a machine as the provider reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineStatus {
    /// Accepted, booting.
    New,
    Active,
    Off,
    Archived,
    Unknown,
}

/// A machine as seen at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Provider id (DigitalOcean droplet id, as a string so other providers fit).
    pub provider_ref: String,
    pub name: String,
    /// From the machine's name ([`tags::machine_name`]) or an instance tag; `None` for a
    /// machine Talis did not name.
    pub instance_id: Option<String>,
    pub project_id: Option<String>,
    pub status: MachineStatus,
    /// Public IPv4, once assigned (appears some time after creation).
    pub public_ip: Option<String>,
    pub region: String,
    pub size: String,
    pub tags: Vec<String>,
    /// Provider ids of attached volumes.
    pub volume_ids: Vec<String>,
}

impl Machine {
    /// Ready from the provider's point of view: active with a public IP.
    pub fn is_running(&self) -> bool {
        self.status == MachineStatus::Active && self.public_ip.is_some()
    }
}

/// A block-storage volume to ensure for an instance. `name` is the idempotency key (unique per
/// region at DigitalOcean): lowercase letters, digits and '-', starting with a letter, ≤ 64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub instance_id: String,
    pub project_id: String,
    pub name: String,
    pub region: String,
    pub size_gigabytes: u32,
    /// e.g. "ext4"; `None` leaves the volume unformatted.
    #[serde(default)]
    pub filesystem_type: Option<String>,
}

impl VolumeSpec {
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        let ok = (1..=64).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Error::invalid(
                "volume.name",
                format!("{n:?}: lowercase letters, digits and '-', starting with a letter, ≤ 64"),
            ));
        }
        if self.size_gigabytes == 0 || self.size_gigabytes > 16 * 1024 {
            return Err(Error::invalid("volume.size_gigabytes", "must be 1..=16384"));
        }
        if self.region.trim().is_empty() {
            return Err(Error::invalid("volume.region", "must not be empty"));
        }
        if !tags::is_valid(&tags::instance(&self.instance_id)) {
            return Err(Error::invalid(
                "volume.instance_id",
                "cannot be used in a tag",
            ));
        }
        Ok(())
    }

    pub fn tags(&self) -> Vec<String> {
        vec![
            tags::TALIS.to_string(),
            tags::project(&self.project_id),
            tags::instance(&self.instance_id),
        ]
    }
}

/// A volume as seen at the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub provider_ref: String,
    pub name: String,
    pub region: String,
    pub size_gigabytes: u32,
    /// Provider ids of the machines it is attached to.
    pub attached_to: Vec<String>,
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> MachineBatch {
        MachineBatch {
            project_id: "p1".into(),
            region: "nyc3".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            ssh_keys: vec![],
            user_data: None,
            extra_tags: vec![],
            group_tag: None,
            members: (0..n)
                .map(|i| BatchMember {
                    instance_id: format!("i{i}"),
                    name: format!("web-{i}"),
                    volumes: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn batch_validation_names_the_field() {
        assert!(batch(10).validate(10).is_ok());
        let field = |b: MachineBatch| match b.validate(10) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(field(batch(0)), "members");
        assert_eq!(field(batch(11)), "members");
        let mut b = batch(2);
        b.members[1].name = "web-0".into();
        assert_eq!(field(b), "name");
        let mut b = batch(2);
        b.members[1].instance_id = "i0".into();
        assert_eq!(field(b), "instance_id");
        let mut b = batch(1);
        b.members[0].name = "bad name".into();
        assert_eq!(field(b), "name");
        let mut b = batch(1);
        b.extra_tags = vec!["no spaces".into()];
        assert_eq!(field(b), "extra_tags");
        let mut b = batch(1);
        b.region = " ".into();
        assert_eq!(field(b), "region");
        let mut b = batch(1);
        b.user_data = Some("x".repeat(MAX_USER_DATA + 1));
        assert_eq!(field(b), "user_data");
    }
}

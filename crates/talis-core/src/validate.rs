//! Parsing raw params into values the rest of the code trusts ("parse, don't validate").
//! Every error names the field path and the reason.

use crate::model::VolumeConfig;
use crate::params::InstanceRequest;
use crate::{Error, Result};

/// Providers that the workflows can drive. The original accepted many more names and failed
/// only later inside the task; here an unsupported provider is a 400 up front.
pub const PROVIDERS: &[&str] = &["do"];
/// Cloud-init user data is limited to 64 KiB (DigitalOcean and most clouds). The workflow wraps
/// the payload with the SSH keys and the phone-home lines, so 4 KiB stay reserved for those.
pub const USER_DATA_LIMIT: usize = 64 * 1024;
pub const MAX_PAYLOAD_BYTES: usize = USER_DATA_LIMIT - 4 * 1024;
/// Stored SSH keys per instance request (each up to ~750 bytes in the user data).
pub const MAX_SSH_KEYS: usize = 4;
/// Most instances one call may create.
pub const MAX_INSTANCES_PER_CALL: i64 = 10_000;
pub const MAX_VOLUMES: usize = 7;
pub const MAX_TAGS: usize = 32;
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-rsa ",
    "ssh-dss ",
    "ssh-ed25519 ",
    "ecdsa-sha2-nistp256 ",
    "ecdsa-sha2-nistp384 ",
    "ecdsa-sha2-nistp521 ",
];

/// A required, trimmed, bounded, printable name.
pub fn name(field: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if v.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

pub fn positive_id(field: &str, id: u64) -> Result<i64> {
    if id == 0 || id > i64::MAX as u64 {
        return Err(Error::invalid(
            field,
            "is required and must be a positive number",
        ));
    }
    Ok(id as i64)
}

/// A project's `config`: empty, or a JSON object whose `resources`/`settings` are objects.
pub fn project_config(config: &str) -> Result<String> {
    if config.trim().is_empty() {
        return Ok(String::new());
    }
    let v: serde_json::Value = serde_json::from_str(config)
        .map_err(|e| Error::invalid("config", format!("must be a JSON object: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::invalid("config", "must be a JSON object"))?;
    for key in ["resources", "settings"] {
        if obj.get(key).is_some_and(|v| !v.is_object()) {
            return Err(Error::invalid(format!("config.{key}"), "must be an object"));
        }
    }
    Ok(config.to_owned())
}

pub fn ssh_public_key(field: &str, key: &str) -> Result<String> {
    let k = key.trim();
    if k.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !SSH_KEY_TYPES.iter().any(|p| k.starts_with(p)) || k.split_whitespace().count() < 2 {
        return Err(Error::invalid(
            field,
            "invalid SSH public key format: expected '<type> <base64> [comment]' with type ssh-rsa, ssh-dss, \
             ssh-ed25519 or ecdsa-sha2-nistp256/384/521",
        ));
    }
    Ok(k.to_owned())
}

pub fn email(field: &str, email: &str) -> Result<String> {
    let e = email.trim();
    if e.is_empty() {
        return Ok(String::new());
    }
    let ok = e.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !e.chars().any(char::is_whitespace)
    });
    if !ok {
        return Err(Error::invalid(field, "invalid user email format"));
    }
    Ok(e.to_owned())
}

/// Letters, digits, `-` and `.`, not starting or ending with `-` or `.`: a valid hostname label set.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// A hostname base derived from a project name, for instances requested without `name`.
pub fn hostname_base(project: &str) -> String {
    let mut s: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(50);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "talis".into() } else { s }
}

/// A validated instance request: N machines of one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    pub project_name: String,
    pub owner_id: Option<u64>,
    pub provider: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub count: i64,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub volumes: Vec<VolumeConfig>,
    pub provision: bool,
    pub payload: String,
    pub execute_payload: bool,
    pub ssh_keys: Vec<String>,
}

impl InstanceSpec {
    /// Hostnames of the N machines: `<name>` for one, `<name>-1..N` for more.
    pub fn names(&self, project: &str) -> Vec<String> {
        let base = self.name.clone().unwrap_or_else(|| hostname_base(project));
        if self.count == 1 && self.name.is_some() {
            return vec![base];
        }
        (1..=self.count).map(|i| format!("{base}-{i}")).collect()
    }
}

/// Validates one request; `at` is its path (e.g. `instances[3]`).
pub fn instance_request(at: &str, r: &InstanceRequest, need_project: bool) -> Result<InstanceSpec> {
    let f = |name: &str| format!("{at}.{name}");
    if r.payload_path.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(Error::invalid(
            f("payload_path"),
            "server-side payload files are not supported: send the script inline in `payload` (at most 64 KiB)",
        ));
    }
    let project_name = if need_project {
        name(&f("project_name"), &r.project_name, 100)?
    } else {
        String::new()
    };
    let provider = r.provider.trim();
    if provider.is_empty() {
        return Err(Error::invalid(f("provider"), "is required"));
    }
    if !PROVIDERS.contains(&provider) {
        return Err(Error::invalid(
            f("provider"),
            format!(
                "provider '{provider}' is not supported (supported: {})",
                PROVIDERS.join(", ")
            ),
        ));
    }
    let region = name(&f("region"), &r.region, 64)?;
    if r.size.trim().is_empty() && (r.memory > 0 || r.cpu > 0) {
        return Err(Error::invalid(
            f("size"),
            "memory/cpu sizing is not supported by provider 'do'; give a size slug",
        ));
    }
    let size = name(&f("size"), &r.size, 64)?;
    let image = name(&f("image"), &r.image, 128)?;
    if r.number_of_instances < 1 {
        return Err(Error::invalid(
            f("number_of_instances"),
            "must be at least 1",
        ));
    }
    if r.number_of_instances > MAX_INSTANCES_PER_CALL {
        return Err(Error::invalid(
            f("number_of_instances"),
            format!("must be at most {MAX_INSTANCES_PER_CALL}"),
        ));
    }
    let base = r.name.trim();
    let name = if base.is_empty() {
        None
    } else {
        // Leave room for the `-N` suffix.
        if !is_hostname(base) || base.len() > 50 {
            return Err(Error::invalid(
                f("name"),
                "must be a hostname: at most 50 letters, digits, '-' or '.', not starting or ending with '-' or '.'",
            ));
        }
        Some(base.to_owned())
    };
    if r.tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            f("tags"),
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for (i, t) in r.tags.iter().enumerate() {
        let ok = !t.is_empty()
            && t.len() <= 255
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'));
        if !ok {
            return Err(Error::invalid(
                format!("{at}.tags[{i}]"),
                "must be 1-255 letters, digits, ':', '-', '_' or '.'",
            ));
        }
    }
    if r.volumes.len() > MAX_VOLUMES {
        return Err(Error::invalid(
            f("volumes"),
            format!("at most {MAX_VOLUMES} volumes"),
        ));
    }
    let mut volumes = Vec::with_capacity(r.volumes.len());
    for (i, v) in r.volumes.iter().enumerate() {
        let vf = |n: &str| format!("{at}.volumes[{i}].{n}");
        let vname = self::name(&vf("name"), &v.name, 64)?;
        if !(1..=16_384).contains(&v.size_gb) {
            return Err(Error::invalid(vf("size_gb"), "must be between 1 and 16384"));
        }
        if !v.region.is_empty() && v.region != region {
            return Err(Error::invalid(
                vf("region"),
                "must be empty or equal to the instance region",
            ));
        }
        if !v.filesystem.is_empty() && !matches!(v.filesystem.as_str(), "ext4" | "xfs") {
            return Err(Error::invalid(vf("filesystem"), "must be ext4 or xfs"));
        }
        if !v.mount_point.is_empty()
            && (!v.mount_point.starts_with('/') || v.mount_point.contains(char::is_whitespace))
        {
            return Err(Error::invalid(
                vf("mount_point"),
                "must be an absolute path without spaces",
            ));
        }
        volumes.push(VolumeConfig {
            name: vname,
            region: region.clone(),
            ..v.clone()
        });
    }
    if r.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::invalid(
            f("payload"),
            format!(
                "is {} bytes; at most {MAX_PAYLOAD_BYTES} (cloud-init user data is limited to \
                 {USER_DATA_LIMIT} bytes, 4 KiB of which hold the SSH keys and phone-home lines)",
                r.payload.len()
            ),
        ));
    }
    if r.execute_payload && r.payload.is_empty() {
        return Err(Error::invalid(f("execute_payload"), "requires a payload"));
    }
    if !r.payload.is_empty() && !r.provision {
        return Err(Error::invalid(f("payload"), "requires provision: true"));
    }
    let mut ssh_keys: Vec<String> = r.ssh_keys.iter().map(|k| k.trim().to_owned()).collect();
    if !r.ssh_key_name.trim().is_empty() {
        ssh_keys.push(r.ssh_key_name.trim().to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    ssh_keys.retain(|k| seen.insert(k.clone()));
    if ssh_keys.len() > MAX_SSH_KEYS {
        return Err(Error::invalid(
            f("ssh_keys"),
            format!("at most {MAX_SSH_KEYS} SSH keys"),
        ));
    }
    if let Some(i) = ssh_keys.iter().position(String::is_empty) {
        return Err(Error::invalid(
            format!("{at}.ssh_keys[{i}]"),
            "must not be empty",
        ));
    }
    Ok(InstanceSpec {
        project_name,
        owner_id: r.owner_id,
        provider: provider.to_owned(),
        region,
        size,
        image,
        count: r.number_of_instances,
        name,
        tags: r.tags.clone(),
        volumes,
        provision: r.provision,
        payload: r.payload.clone(),
        execute_payload: r.execute_payload,
        ssh_keys,
    })
}

/// Validates all requests of one call (all-or-nothing) and bounds the total count.
pub fn instance_requests(
    reqs: &[InstanceRequest],
    need_project: bool,
) -> Result<Vec<InstanceSpec>> {
    let specs = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| instance_request(&format!("instances[{i}]"), r, need_project))
        .collect::<Result<Vec<_>>>()?;
    let total: i64 = specs.iter().map(|s| s.count).sum();
    if total > MAX_INSTANCES_PER_CALL {
        return Err(Error::invalid(
            "instances",
            format!("{total} instances requested; at most {MAX_INSTANCES_PER_CALL} per call"),
        ));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> InstanceRequest {
        InstanceRequest {
            provider: "do".into(),
            region: "nyc3".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-22-04-x64".into(),
            number_of_instances: 3,
            name: "node".into(),
            ..Default::default()
        }
    }

    #[test]
    fn rejections_name_the_field() {
        type Edit = fn(&mut InstanceRequest);
        let cases: &[(Edit, &str)] = &[
            (|r| r.provider = "aws".into(), "instances[0].provider"),
            (|r| r.provider.clear(), "instances[0].provider"),
            (|r| r.region.clear(), "instances[0].region"),
            (|r| r.image.clear(), "instances[0].image"),
            (
                |r| r.number_of_instances = 0,
                "instances[0].number_of_instances",
            ),
            (
                |r| r.number_of_instances = 10_001,
                "instances[0].number_of_instances",
            ),
            (|r| r.name = "-bad".into(), "instances[0].name"),
            (
                |r| r.tags = vec!["ok".into(), "not ok".into()],
                "instances[0].tags[1]",
            ),
            (
                |r| r.payload_path = Some("/opt/x.sh".into()),
                "instances[0].payload_path",
            ),
            (
                |r| r.ssh_keys = (0..5).map(|i| format!("k{i}")).collect(),
                "instances[0].ssh_keys",
            ),
            (
                |r| {
                    r.provision = true;
                    r.payload = "x".repeat(MAX_PAYLOAD_BYTES + 1)
                },
                "instances[0].payload",
            ),
            (
                |r| {
                    r.volumes = vec![VolumeConfig {
                        name: "d".into(),
                        size_gb: 0,
                        ..Default::default()
                    }]
                },
                "instances[0].volumes[0].size_gb",
            ),
            (
                |r| {
                    r.volumes = vec![VolumeConfig {
                        name: "d".into(),
                        size_gb: 1,
                        region: "ams3".into(),
                        ..Default::default()
                    }]
                },
                "instances[0].volumes[0].region",
            ),
        ];
        for (edit, field) in cases {
            let mut r = req();
            edit(&mut r);
            match instance_requests(&[r], false) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(&f, field),
                other => panic!("expected {field} to be rejected, got {other:?}"),
            }
        }
    }

    #[test]
    fn payload_limit_leaves_room_for_the_wrapper() {
        let at_limit = InstanceRequest {
            provision: true,
            payload: "x".repeat(MAX_PAYLOAD_BYTES),
            ..req()
        };
        assert!(instance_request("i", &at_limit, false).is_ok());
        assert_eq!(MAX_PAYLOAD_BYTES + 4 * 1024, USER_DATA_LIMIT);
        let keys = InstanceRequest {
            ssh_keys: vec!["a".into(), "b".into()],
            ssh_key_name: "a".into(),
            ..req()
        };
        assert_eq!(
            instance_request("i", &keys, false).unwrap().ssh_keys,
            ["a", "b"]
        );
    }

    #[test]
    fn names_and_totals() {
        let s = instance_request("i", &req(), false).unwrap();
        assert_eq!(s.names("p"), ["node-1", "node-2", "node-3"]);
        let one = InstanceRequest {
            number_of_instances: 1,
            ..req()
        };
        assert_eq!(
            instance_request("i", &one, false).unwrap().names("p"),
            ["node"]
        );
        let unnamed = InstanceRequest {
            name: String::new(),
            number_of_instances: 2,
            ..req()
        };
        assert_eq!(
            instance_request("i", &unnamed, false)
                .unwrap()
                .names("My Project"),
            ["my-project-1", "my-project-2"]
        );
        let big = InstanceRequest {
            number_of_instances: 6_000,
            ..req()
        };
        assert!(instance_requests(&[big.clone(), big], false).is_err());
    }

    #[test]
    fn config_and_keys() {
        assert!(project_config("").is_ok());
        assert!(project_config(r#"{"resources":{}}"#).is_ok());
        assert_eq!(
            project_config(r#"{"settings":1}"#).unwrap_err(),
            Error::invalid("config.settings", "must be an object")
        );
        assert!(project_config("[1]").is_err());
        assert!(ssh_public_key("k", "ssh-ed25519 AAAA c").is_ok());
        assert!(ssh_public_key("k", "rsa AAAA").is_err());
        assert!(email("e", "a@b.c").is_ok());
        assert!(email("e", "a b@c").is_err());
    }
}

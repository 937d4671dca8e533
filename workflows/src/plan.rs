//! Pure planning logic of a task, tested natively: what the claimed task asks for (kept small,
//! because it is journaled), how instances group into provider batches, the cloud-init script
//! with its phone-home line, and the per-instance summary the task finishes with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a task does (the component's `tasks.action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    CreateInstances,
    TerminateInstances,
    DeleteProject,
}

/// The claimed task as the workflow journals it: ids and specs, never provider JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub task_id: String,
    pub project_id: String,
    pub action: Action,
    /// False when the task was already finished (e.g. terminated by its owner): nothing to do.
    pub claimed: bool,
    /// Distinct provisioning scripts, journaled once each (a create of 1 000 machines usually
    /// shares one script of up to 64 KiB; per instance it would bloat the journal entry).
    #[serde(default)]
    pub payloads: Vec<String>,
    pub instances: Vec<Inst>,
}

impl Plan {
    /// The script an instance runs, if any.
    pub fn payload(&self, inst: &Inst) -> Option<&str> {
        inst.payload
            .and_then(|i| self.payloads.get(i))
            .map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inst {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub image: String,
    /// OpenSSH public keys, installed by the script (no provider key registration needed).
    #[serde(default)]
    pub ssh_public_keys: Vec<String>,
    /// User tags (provider-valid ones only are forwarded).
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<Vol>,
    /// Index into `Plan::payloads` of the script cloud-init runs (only when the owner asked
    /// for it to run).
    #[serde(default)]
    pub payload: Option<usize>,
    /// `{public_url}/v1/phone-home/{id}?token=…`; `None` when the API has no public URL.
    #[serde(default)]
    pub phone_home_url: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub provider_ref: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vol {
    pub name: String,
    pub size_gb: u32,
    #[serde(default)]
    pub filesystem_type: Option<String>,
    #[serde(default)]
    pub mount_point: String,
}

impl Inst {
    /// Instances that still need a machine (a re-run after a crash skips finished ones).
    pub fn needs_machine(&self) -> bool {
        matches!(
            self.status.as_str(),
            "" | "pending" | "unknown" | "created" | "provisioning"
        )
    }
}

/// Instances that can share one create call: same shape, keys and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub user_data: String,
    /// Indexes into `Plan::instances`.
    pub members: Vec<usize>,
}

/// Groups `indexes` of `plan.instances` by shape and script, then chunks each group by
/// `max_batch` (DigitalOcean: 10 names per create). Deterministic: replays see the same batches.
///
/// One script serves the whole batch (DO shares `user_data` across a multi-create), so it carries
/// the phone-home URL of the batch's first instance: every machine of the batch posts its own
/// droplet id to it, and the component forwards that to this task's workflow, which matches the
/// droplet id. The URL's token thus vouches for "a machine of this task".
///
/// An instance with volumes is a batch of its own: the provider creates it alone anyway (its
/// volumes are attached by its create call), and its script mounts its own volumes by name.
pub fn batches(plan: &Plan, indexes: &[usize], max_batch: usize) -> Vec<Batch> {
    type Key<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<String>,
        &'a [String],
        Option<&'a str>,
        bool,
    );
    let mut groups: BTreeMap<Key<'_>, Vec<usize>> = BTreeMap::new();
    let mut alone = Vec::new();
    for &i in indexes {
        let inst = &plan.instances[i];
        if !inst.volumes.is_empty() {
            alone.push(Batch {
                region: inst.region.clone(),
                size: inst.size.clone(),
                image: inst.image.clone(),
                tags: provider_tags(&inst.tags),
                user_data: user_data(
                    plan.payload(inst),
                    &inst.ssh_public_keys,
                    inst.phone_home_url.as_deref(),
                    &mounts(inst),
                ),
                members: vec![i],
            });
            continue;
        }
        groups
            .entry((
                &inst.region,
                &inst.size,
                &inst.image,
                provider_tags(&inst.tags),
                &inst.ssh_public_keys,
                plan.payload(inst),
                inst.phone_home_url.is_some(),
            ))
            .or_default()
            .push(i);
    }
    let mut out = Vec::new();
    for ((region, size, image, tags, keys, payload, _), members) in groups {
        for chunk in members.chunks(max_batch.max(1)) {
            let url = plan.instances[chunk[0]].phone_home_url.as_deref();
            out.push(Batch {
                region: region.to_string(),
                size: size.to_string(),
                image: image.to_string(),
                tags: tags.clone(),
                user_data: user_data(payload, keys, url, &[]),
                members: chunk.to_vec(),
            });
        }
    }
    out.extend(alone);
    out
}

/// Splits batches into provider rounds of at most `max_members` machines (each round is one
/// project look-up, so larger rounds mean fewer calls; one page of the look-up holds 200).
pub fn rounds(batches: Vec<Batch>, max_members: usize) -> Vec<Vec<Batch>> {
    let mut out: Vec<Vec<Batch>> = Vec::new();
    let mut n = 0;
    for b in batches {
        match out.last_mut() {
            Some(r) if n + b.members.len() <= max_members => {
                n += b.members.len();
                r.push(b);
            }
            _ => {
                n = b.members.len();
                out.push(vec![b]);
            }
        }
    }
    out
}

/// A volume for the script to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The provider's volume name ([`volume_name`]): DigitalOcean exposes the volume as
    /// `/dev/disk/by-id/scsi-0DO_Volume_<name>`.
    pub volume: String,
    /// Made on the volume if it has no filesystem yet; `None`: mounted only if it has one.
    pub filesystem: Option<String>,
    pub mount_point: String,
}

/// The mounts of an instance's volumes (those with a mount point), in request order.
pub fn mounts(inst: &Inst) -> Vec<Mount> {
    inst.volumes
        .iter()
        .filter(|v| !v.mount_point.is_empty())
        .map(|v| Mount {
            volume: volume_name(&v.name, &inst.id),
            filesystem: v.filesystem_type.clone(),
            mount_point: v.mount_point.clone(),
        })
        .collect()
}

/// The provider's name of an instance's volume: unique per region (DigitalOcean's idempotency
/// key), so the instance id is part of it; lowercase letters, digits and '-', starting with a
/// letter, at most 64 characters.
pub fn volume_name(volume: &str, instance_id: &str) -> String {
    let suffix = format!("-{instance_id}");
    let mut base: String = volume
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'v');
    }
    base.truncate(64 - suffix.len().min(63));
    base + &suffix
}

/// User tags the provider accepts (DO: letters, digits, ':', '-', '_'); `k=v` becomes `k:v`.
fn provider_tags(tags: &[String]) -> Vec<String> {
    let mut t: Vec<String> = tags
        .iter()
        .map(|t| t.replace('=', ":"))
        .filter(|t| talis_provider::tags::is_valid(t))
        .collect();
    t.sort();
    t.dedup();
    t
}

/// Marker line the fake cloud (and operators) look for; the contract of ARCHITECTURE.md.
pub const PHONE_HOME_MARKER: &str = "# talis-phone-home: ";

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Shell lines mounting one volume: wait for its device, make the filesystem only if the device
/// has none, mount it, and keep it in fstab with `nofail` (a missing volume must not stop a
/// reboot). A device that never appears, or a mount that fails, sets `mount_failed`.
fn mount_lines(m: &Mount) -> String {
    let dev = sh_quote(&format!("/dev/disk/by-id/scsi-0DO_Volume_{}", m.volume));
    let dir = sh_quote(&m.mount_point);
    // fstab separates fields by blanks; validation already refuses whitespace in mount points.
    let fstab = sh_quote(&format!(
        "/dev/disk/by-id/scsi-0DO_Volume_{} {} {} defaults,nofail,discard 0 2",
        m.volume,
        m.mount_point,
        m.filesystem.as_deref().unwrap_or("auto"),
    ));
    let mkfs = match &m.filesystem {
        Some(fs) => format!(
            "  if [ -z \"$(blkid -o value -s TYPE \"$dev\" 2>/dev/null)\" ]; then mkfs -t {} \"$dev\" || mount_failed=1; fi\n",
            sh_quote(fs)
        ),
        None => String::new(),
    };
    format!(
        "dev={dev}\n\
         n=0; while [ ! -b \"$dev\" ] && [ $n -lt 120 ]; do sleep 1; n=$((n+1)); done\n\
         if [ -b \"$dev\" ]; then\n\
         {mkfs}\
         \x20 mkdir -p {dir}\n\
         \x20 grep -qsF {fstab} /etc/fstab || echo {fstab} >> /etc/fstab\n\
         \x20 mountpoint -q {dir} || mount {dir} || mount_failed=1\n\
         else\n\
         \x20 echo \"talis: volume {} did not appear\" >&2; mount_failed=1\n\
         fi\n",
        m.volume
    )
}

/// The cloud-init script: SSH keys, the volumes mounted, the payload, then a phone-home POST
/// naming the machine. Without a phone-home URL (no public URL configured) readiness comes
/// from polling alone.
pub fn user_data(
    payload: Option<&str>,
    ssh_public_keys: &[String],
    phone_home_url: Option<&str>,
    mounts: &[Mount],
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    if let Some(url) = phone_home_url {
        s.push_str(PHONE_HOME_MARKER);
        s.push_str(url);
        s.push('\n');
    }
    if !ssh_public_keys.is_empty() {
        s.push_str("mkdir -p /root/.ssh && chmod 700 /root/.ssh\ncat >> /root/.ssh/authorized_keys <<'TALIS_KEYS_EOF'\n");
        for k in ssh_public_keys {
            s.push_str(k.trim());
            s.push('\n');
        }
        s.push_str("TALIS_KEYS_EOF\n");
    }
    s.push_str("mount_failed=\n");
    for m in mounts {
        s.push_str(&mount_lines(m));
    }
    if let Some(p) = payload.filter(|p| !p.trim().is_empty()) {
        // Run the payload in its own shell so its `exit` cannot skip the phone-home.
        s.push_str("cat > /var/lib/talis-payload.sh <<'TALIS_PAYLOAD_EOF'\n");
        s.push_str(p);
        if !p.ends_with('\n') {
            s.push('\n');
        }
        s.push_str("TALIS_PAYLOAD_EOF\n");
        s.push_str(
            "if [ -z \"$mount_failed\" ] && sh /var/lib/talis-payload.sh; then status=ok; else status=failed; fi\n",
        );
    } else {
        s.push_str("if [ -z \"$mount_failed\" ]; then status=ok; else status=failed; fi\n");
    }
    if let Some(url) = phone_home_url {
        s.push_str(
            "id=$(curl -fsS http://169.254.169.254/metadata/v1/id)\n\
             ip=$(curl -fsS http://169.254.169.254/metadata/v1/interfaces/public/0/ipv4/address)\n",
        );
        s.push_str(&format!(
            "curl -fsS --retry 20 --retry-all-errors -X POST -H 'content-type: application/json' \
             -d \"{{\\\"droplet_id\\\": $id, \\\"public_ip\\\": \\\"$ip\\\", \\\"status\\\": \\\"$status\\\"}}\" \
             '{url}'\n"
        ));
    }
    s
}

/// Final state of one instance in a task, as the task's result lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceOutcome {
    pub instance_id: String,
    pub name: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The task's result: counts by status plus every instance's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub counts: BTreeMap<String, usize>,
    pub instances: Vec<InstanceOutcome>,
}

impl Summary {
    pub fn new(instances: Vec<InstanceOutcome>) -> Self {
        let mut counts = BTreeMap::new();
        for o in &instances {
            *counts.entry(o.status.clone()).or_insert(0) += 1;
        }
        Self {
            total: instances.len(),
            counts,
            instances,
        }
    }

    /// Task status: completed when every instance reached `want`, failed otherwise.
    pub fn task_status(&self, want: &str) -> &'static str {
        if self.instances.iter().all(|o| o.status == want) {
            "completed"
        } else {
            "failed"
        }
    }

    /// A one-line error for a failed task (first failure and the number of failures).
    pub fn error(&self, want: &str) -> Option<String> {
        let bad: Vec<&InstanceOutcome> =
            self.instances.iter().filter(|o| o.status != want).collect();
        let first = bad.first()?;
        Some(format!(
            "{} of {} instances did not reach {want}; first: {} ({}): {}",
            bad.len(),
            self.total,
            first.name,
            first.status,
            first.error.as_deref().unwrap_or("no detail")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(i: usize, region: &str, payload: Option<&str>) -> Inst {
        Inst {
            id: format!("{i}"),
            name: format!("web-{i}"),
            region: region.into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            ssh_public_keys: vec![],
            phone_home_url: Some(format!("http://api/v1/phone-home/{i}?token=x")),
            tags: vec!["env=prod".into(), "bad tag".into()],
            volumes: vec![],
            payload: payload.map(|_| 0),
            status: "pending".into(),
            provider_ref: None,
        }
    }

    fn plan(instances: Vec<Inst>) -> Plan {
        Plan {
            task_id: "t1".into(),
            project_id: "p1".into(),
            action: Action::CreateInstances,
            claimed: true,
            payloads: vec!["echo hi".into()],
            instances,
        }
    }

    #[test]
    fn batches_chunk_by_ten_and_split_by_shape_and_script() {
        let mut v: Vec<Inst> = (0..23).map(|i| inst(i, "nyc3", None)).collect();
        v.push(inst(23, "ams3", None));
        v.push(inst(24, "nyc3", Some("echo hi")));
        let p = plan(v);
        let all: Vec<usize> = (0..p.instances.len()).collect();
        let b = batches(&p, &all, 10);
        let sizes: Vec<usize> = b.iter().map(|b| b.members.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 25);
        assert!(sizes.iter().all(|&n| n <= 10));
        assert_eq!(b.len(), 5, "{sizes:?}"); // ams3, nyc3 10+10+3, nyc3 with payload
        assert!(b.iter().all(|b| b.tags == vec!["env:prod".to_string()]));
        // each batch's script phones home through its first member's URL
        for b in &b {
            let first = &p.instances[b.members[0]];
            assert!(
                b.user_data
                    .contains(first.phone_home_url.as_deref().unwrap())
            );
        }
        // deterministic
        assert_eq!(b, batches(&p, &all, 10));
    }

    #[test]
    fn user_data_carries_marker_payload_and_phone_home() {
        let keys = vec!["ssh-ed25519 AAAA me@x".to_string()];
        let ud = user_data(
            Some("apt-get install -y nginx"),
            &keys,
            Some("http://x/v1/phone-home/t1"),
            &[],
        );
        assert!(ud.contains("ssh-ed25519 AAAA me@x\nTALIS_KEYS_EOF\n"));
        assert!(ud.starts_with("#!/bin/sh\n# talis-phone-home: http://x/v1/phone-home/t1\n"));
        assert!(ud.contains("apt-get install -y nginx\nTALIS_PAYLOAD_EOF\n"));
        assert!(ud.trim_end().ends_with("'http://x/v1/phone-home/t1'"));
        let bare = user_data(None, &[], None, &[]);
        assert!(!bare.contains("talis-phone-home"));
        assert!(!bare.contains("mount "));
    }

    fn two_mounts() -> Vec<Mount> {
        vec![
            Mount {
                volume: "data-12".into(),
                filesystem: Some("ext4".into()),
                mount_point: "/mnt/data".into(),
            },
            Mount {
                volume: "logs-12".into(),
                filesystem: None,
                mount_point: "/var/log/app's".into(),
            },
        ]
    }

    #[test]
    fn user_data_mounts_every_volume_before_the_payload() {
        let ud = user_data(Some("echo hi"), &[], Some("http://x/p"), &two_mounts());
        // Each volume: its own device, waited for, formatted only when blank, mounted, in fstab.
        for (dev, dir, fs) in [
            ("data-12", "'/mnt/data'", "ext4"),
            ("logs-12", r"'/var/log/app'\''s'", "auto"),
        ] {
            assert!(
                ud.contains(&format!("dev='/dev/disk/by-id/scsi-0DO_Volume_{dev}'")),
                "{ud}"
            );
            assert!(ud.contains(&format!("mkdir -p {dir}")), "{ud}");
            assert!(
                ud.contains(&format!("mountpoint -q {dir} || mount {dir}")),
                "{ud}"
            );
            assert!(ud.contains(&format!("scsi-0DO_Volume_{dev} ")), "{ud}");
            assert!(
                ud.contains(&format!(" {fs} defaults,nofail,discard 0 2'")),
                "{ud}"
            );
        }
        assert_eq!(
            ud.matches("mkfs -t 'ext4'").count(),
            1,
            "only the volume asking for ext4"
        );
        assert!(ud.contains("blkid -o value -s TYPE"));
        assert_eq!(ud.matches("while [ ! -b").count(), 2);
        // Mounted before the payload runs; a failed mount fails the phone-home status.
        assert!(ud.find("scsi-0DO_Volume_logs-12").unwrap() < ud.find("echo hi").unwrap());
        assert!(ud.contains("if [ -z \"$mount_failed\" ] && sh /var/lib/talis-payload.sh"));
    }

    #[test]
    fn user_data_is_valid_shell() {
        let ud = user_data(
            Some("set -eu\necho hi\nexit 3"),
            &["ssh-ed25519 AAAA me@x".to_string()],
            Some("http://x/v1/phone-home/t1?token=abc"),
            &two_mounts(),
        );
        let Ok(out) = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&ud)
            .output()
        else {
            panic!("sh must be available to check the script");
        };
        assert!(
            out.status.success(),
            "{}\n{ud}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn rounds_hold_at_most_max_members() {
        let mut v: Vec<Inst> = (0..25).map(|i| inst(i, "nyc3", None)).collect();
        for i in &mut v[20..] {
            i.volumes = vec![Vol {
                name: "d".into(),
                size_gb: 1,
                filesystem_type: None,
                mount_point: String::new(),
            }];
        }
        let p = plan(v);
        let all: Vec<usize> = (0..25).collect();
        let r = rounds(batches(&p, &all, 10), 12);
        let sizes: Vec<usize> = r
            .iter()
            .map(|r| r.iter().map(|b| b.members.len()).sum())
            .collect();
        assert_eq!(sizes, vec![10, 12, 3]);
    }

    #[test]
    fn instances_with_volumes_are_batches_of_their_own() {
        let mut v: Vec<Inst> = (0..3).map(|i| inst(i, "nyc3", None)).collect();
        for i in &mut v[..2] {
            i.volumes = vec![Vol {
                name: "data".into(),
                size_gb: 10,
                filesystem_type: Some("ext4".into()),
                mount_point: "/mnt/data".into(),
            }];
        }
        let p = plan(v);
        let b = batches(&p, &[0, 1, 2], 10);
        assert_eq!(b.len(), 3);
        for (k, id) in [(1, "0"), (2, "1")] {
            assert_eq!(b[k].members.len(), 1);
            assert!(
                b[k].user_data
                    .contains(&format!("scsi-0DO_Volume_data-{id}'"))
            );
            assert!(b[k].user_data.contains(&format!("phone-home/{id}?")));
        }
        assert!(!b[0].user_data.contains("scsi-0DO_Volume"));
    }

    #[test]
    fn volume_names_are_unique_per_instance_and_valid() {
        assert_eq!(volume_name("data", "12"), "data-12");
        assert_eq!(volume_name("My_Data", "7"), "my-data-7");
        assert_eq!(volume_name("1st", "7"), "v1st-7");
        let long = volume_name(&"x".repeat(100), "123456");
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-123456"));
    }

    #[test]
    fn summary_counts_and_status() {
        let o = |s: &str, e: Option<&str>| InstanceOutcome {
            instance_id: "i".into(),
            name: "n".into(),
            status: s.into(),
            provider_ref: None,
            public_ip: None,
            error: e.map(str::to_string),
        };
        let s = Summary::new(vec![o("ready", None), o("ready", None)]);
        assert_eq!(s.task_status("ready"), "completed");
        assert_eq!(s.error("ready"), None);
        let s = Summary::new(vec![o("ready", None), o("failed", Some("422 bad size"))]);
        assert_eq!(s.task_status("ready"), "failed");
        assert_eq!(s.counts["failed"], 1);
        assert!(s.error("ready").unwrap().contains("422 bad size"));
    }
}

//! The provisioning script (cloud-init `user_data`) every machine runs: SSH keys, volume
//! mounts, the owner's script, then the phone-home POST. One builder serves both sides: the
//! workflows make the script, the service checks at create time that it will fit the 64 KiB
//! DigitalOcean accepts (so a request is refused with a 400, not failed later with a 422).

use crate::rules::USER_DATA_LIMIT;

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

/// The mounts of an instance's volumes (those with a mount point), in request order;
/// `instance_key` is the instance's provider key (it names the volumes).
pub fn mounts(volumes: &[crate::VolumeConfig], instance_key: &str) -> Vec<Mount> {
    volumes
        .iter()
        .filter(|v| !v.mount_point.is_empty())
        .map(|v| Mount {
            volume: volume_name(&v.name, instance_key),
            filesystem: v.filesystem.as_str().map(str::to_owned),
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
            "curl -fsS --retry 120 --retry-delay 1 --retry-connrefused -X POST -H 'content-type: application/json' \
             -d \"{{\\\"droplet_id\\\": $id, \\\"public_ip\\\": \\\"$ip\\\", \\\"status\\\": \\\"$status\\\"}}\" \
             '{url}'\n"
        ));
    }
    s
}

/// The size of the script for these inputs with the longest phone-home URL the workflows make
/// for `public_url` (ids of 19 digits), so a create can be refused before anything is made.
pub fn worst_case_len(
    payload: &str,
    ssh_public_keys: &[String],
    volumes: &[crate::VolumeConfig],
    deployment: &str,
    public_url: &str,
) -> usize {
    let url = crate::phone_home::url(public_url, i64::MAX, i64::MAX, i64::MAX, &"f".repeat(64));
    let mounts = mounts(volumes, &format!("{deployment}-{}", i64::MAX));
    user_data(Some(payload), ssh_public_keys, Some(&url), &mounts).len()
}

/// Whether a script of `len` bytes fits the user data the provider accepts.
pub fn fits(len: usize) -> bool {
    len <= USER_DATA_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn volume_names_are_unique_per_instance_and_valid() {
        assert_eq!(volume_name("data", "12"), "data-12");
        assert_eq!(volume_name("My_Data", "7"), "my-data-7");
        assert_eq!(volume_name("1st", "7"), "v1st-7");
        let long = volume_name(&"x".repeat(100), "123456");
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-123456"));
    }

    #[test]
    fn the_largest_request_fits() {
        let volumes: Vec<crate::VolumeConfig> = (0..crate::rules::MAX_VOLUMES)
            .map(|i| crate::VolumeConfig {
                name: format!("{i}{}", "v".repeat(63)),
                size_gb: 1,
                filesystem: crate::Filesystem::Ext4,
                mount_point: format!("/{}", "m".repeat(crate::rules::MAX_MOUNT_POINT - 1)),
                ..Default::default()
            })
            .collect();
        let payload = "x".repeat(crate::rules::MAX_PAYLOAD_BYTES);
        let dep = "d".repeat(32);
        let len = worst_case_len(
            &payload,
            &[],
            &volumes,
            &dep,
            &format!("https://{}", "h".repeat(200)),
        );
        assert!(fits(len), "{len}");
        let key = format!("ssh-rsa {} k", "A".repeat(crate::rules::MAX_SSH_KEY - 12));
        assert!(!fits(worst_case_len(
            &payload,
            &[key],
            &volumes,
            &dep,
            "http://x"
        )));
    }
}

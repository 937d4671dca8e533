//! The contract's limits and character rules, each declared once: the params types name them in
//! `#[garde(...)]` attributes, which garde enforces when decoding and schemars publishes in the
//! OpenAPI document (`maxLength`, `maximum`, `pattern`, ...).

use garde::rules::AsStr;
use garde::rules::pattern::Matcher;

/// Most instances one call may create (also the largest project a single call makes).
pub const MAX_INSTANCES_PER_CALL: u32 = 10_000;
/// Elements of one `instances` array (each may ask for many machines).
pub const MAX_INSTANCE_REQUESTS: usize = 100;
/// Names: projects, SSH keys, users, API keys.
pub const MAX_NAME: usize = 100;
/// Instance hostname base; leaves room for the `-N` suffix within DNS's 63.
pub const MAX_HOSTNAME: usize = 50;
pub const MAX_SLUG: usize = 128;
pub const MAX_DESCRIPTION: usize = 4_096;
/// A project's `config` as JSON text.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG: usize = 255;
pub const MAX_VOLUMES: usize = 7;
pub const MAX_VOLUME_GB: u32 = 16_384;
pub const MAX_MOUNT_POINT: usize = 128;
/// Stored SSH keys named per instance request (`ssh_keys` plus `ssh_key_name`).
pub const MAX_SSH_KEYS: usize = 4;
/// An OpenSSH public key line.
pub const MAX_SSH_KEY: usize = 16 * 1024;
/// Cloud-init user data is limited to 64 KiB (DigitalOcean and most clouds).
pub const USER_DATA_LIMIT: usize = 64 * 1024;
/// The owner's script: what is left of the user data once the phone-home lines, 7 volume mounts
/// and the wrapper are in (their worst case is fixed, a test checks it fits); the SSH keys are
/// checked at create time, when they are known.
pub const MAX_PAYLOAD_BYTES: usize = USER_DATA_LIMIT - 12 * 1024;
/// Instance ids named in one terminate call.
pub const MAX_INSTANCE_IDS: usize = 10_000;
/// Page size of every list.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1_000;
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Shortest admin key or internal secret that authenticates anything (a shorter one counts as
/// unset, so a placeholder like `CHANGE_ME` opens nothing).
pub const MIN_SECRET_LEN: usize = 32;
/// Largest accepted request body (a 10 000-instance create with an inline script fits).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A character rule: the pattern published in the schema and the matcher that enforces it.
/// Every rule accepts the empty string; whether a field may be empty is its `length` rule. The
/// matcher is written out rather than compiled from the pattern because every request runs in
/// a fresh Wasm instance, which would compile the regex again each time; a test checks the two
/// agree on generated strings.
pub struct Charset {
    pub pattern: &'static str,
    pub(crate) matches: fn(&str) -> bool,
}

impl AsStr for Charset {
    fn as_str(&self) -> &str {
        self.pattern
    }
}

impl Matcher for Charset {
    fn is_match(&self, s: &str) -> bool {
        (self.matches)(s)
    }
}

impl std::fmt::Display for Charset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.pattern)
    }
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Names and provider slugs: a letter or digit, then letters, digits, `.`, `_`, `-`.
pub const NAME: Charset = Charset {
    pattern: "^([A-Za-z0-9][A-Za-z0-9._-]*)?$",
    matches: |s| {
        s.is_empty()
            || (s.starts_with(|c: char| c.is_ascii_alphanumeric()) && s.chars().all(ident_char))
    },
};

/// Hostnames: letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub const HOSTNAME: Charset = Charset {
    pattern: "^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)?$",
    matches: |s| {
        s.is_empty()
            || s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    },
};

/// Provider tags: letters, digits, `:`, `_`, `.`, `-`.
pub const TAG: Charset = Charset {
    pattern: "^[A-Za-z0-9:_.-]*$",
    matches: |s| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'))
    },
};

/// Absolute paths whose segments start with a letter, digit or `_` (so no `..` and no blanks).
pub const MOUNT_POINT: Charset = Charset {
    pattern: "^((/[A-Za-z0-9_][A-Za-z0-9._-]*)+)?$",
    matches: |s| {
        s.is_empty()
            || s.starts_with('/')
                && s[1..].split('/').all(|seg| {
                    seg.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                        && seg.chars().all(ident_char)
                })
    },
};

/// `local@domain`, without blanks or a second `@`.
pub const EMAIL: Charset = Charset {
    pattern: "^([^@ \\t\\r\\n]+@[^@ \\t\\r\\n]+)?$",
    matches: |s| {
        let plain = |p: &str| !p.is_empty() && !p.contains(['@', ' ', '\t', '\r', '\n']);
        s.is_empty() || s.split_once('@').is_some_and(|(l, d)| plain(l) && plain(d))
    },
};

/// One line of text: no line breaks (SSH keys go into a heredoc of the cloud-init script).
pub const SINGLE_LINE: Charset = Charset {
    pattern: "^[^\\r\\n]*$",
    matches: |s| !s.contains(['\r', '\n']),
};

/// Digits only (page cursors, numeric provider ids).
pub const DIGITS: Charset = Charset {
    pattern: "^[0-9]*$",
    matches: |s| s.bytes().all(|b| b.is_ascii_digit()),
};

/// The shape of an OpenSSH public key line (`<type> <base64> [comment]`); the key itself is
/// checked by parsing it.
pub const SSH_PUBLIC_KEY: Charset = Charset {
    pattern: "^((ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/]+={0,2}( [^\\r\\n]*)?)?$",
    matches: |s| {
        if s.is_empty() {
            return true;
        }
        let mut parts = s.splitn(3, ' ');
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            return false;
        };
        let body = blob.trim_end_matches('=');
        SSH_KEY_TYPES.contains(&kind)
            && !body.is_empty()
            && blob.len() - body.len() <= 2
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            && parts
                .next()
                .is_none_or(|comment| !comment.contains(['\r', '\n']))
    },
};

/// Key types accepted in [`SSH_PUBLIC_KEY`].
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Every rule, for the cross-check test.
pub const ALL: &[&Charset] = &[
    &NAME,
    &HOSTNAME,
    &TAG,
    &MOUNT_POINT,
    &EMAIL,
    &SINGLE_LINE,
    &DIGITS,
    &SSH_PUBLIC_KEY,
];

/// A deployment id (the `deployment_id` variable): it goes into provider tags and machine
/// names, so 1 to 32 lowercase letters, digits and '-'.
pub fn deployment_id(id: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "deployment id {id:?}: 1 to 32 lowercase letters, digits and '-'"
        ))
    }
}

/// Tags Talis itself puts on machines, to find them again: `talis` and `talis-…` in any case.
/// An owner's tag must never look like one, or one owner could make machines another owner's
/// workflow adopts.
pub fn is_reserved_tag(tag: &str) -> bool {
    let lower = tag.to_ascii_lowercase();
    lower == "talis" || lower.starts_with("talis-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The published pattern and the hand-written matcher agree (ECMA and Rust regex agree on
    /// these ASCII classes and anchors).
    fn agree(rule: &Charset, s: &str) {
        let re = regex::Regex::new(rule.pattern).unwrap();
        assert_eq!(
            re.is_match(s),
            rule.is_match(s),
            "{} on {s:?}",
            rule.pattern
        );
    }

    proptest! {
        #[test]
        fn matchers_agree_with_their_patterns(s in "[A-Za-z0-9 ._:/@+=\\-\\r\\n\\t\\u{e9}]{0,12}", prefix in prop::sample::select(vec!["", "ssh-ed25519 ", "ssh-rsa AAAA", "/mnt/", "a@"])) {
            let s = format!("{prefix}{s}");
            for rule in ALL {
                agree(rule, &s);
            }
        }
    }

    #[test]
    fn fixed_cases() {
        for (rule, s, ok) in [
            (&NAME, "light-nodes-100", true),
            (&NAME, "-x", false),
            (&HOSTNAME, "node-1.a", true),
            (&HOSTNAME, "node-", false),
            (&MOUNT_POINT, "/mnt/data", true),
            (&MOUNT_POINT, "/mnt/../etc", false),
            (&MOUNT_POINT, "mnt", false),
            (&EMAIL, "a@b.c", true),
            (&EMAIL, "a@b@c", false),
            (&SSH_PUBLIC_KEY, "ssh-ed25519 AAAAC3Nza== me@host", true),
            (&SSH_PUBLIC_KEY, "ssh-ed25519 AAAA\nrm -rf /", false),
            (&SINGLE_LINE, "a\nb", false),
        ] {
            assert_eq!(rule.is_match(s), ok, "{} on {s:?}", rule.pattern);
            agree(rule, s);
        }
        assert!(
            is_reserved_tag("TALIS-project-1")
                && is_reserved_tag("talis")
                && !is_reserved_tag("talisman")
        );
    }
}

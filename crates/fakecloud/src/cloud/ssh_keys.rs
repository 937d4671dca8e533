//! SSH keys of the account: create (OpenSSH public keys, unique fingerprint), get or delete by
//! id or fingerprint, list; droplet creation checks the keys it names against them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::str_field;
use super::{Cloud, Page};
use crate::error::{Answer, ApiError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
}

fn key_json(k: &SshKey) -> Value {
    json!({"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name})
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

impl Cloud {
    /// Whether `k` (an id, as a number or a string, or a fingerprint) names a key.
    pub(super) fn has_ssh_key(&self, k: &Value) -> bool {
        self.ssh_keys.iter().any(|s| match k {
            Value::Number(n) => n.as_u64() == Some(s.id),
            Value::String(f) => *f == s.fingerprint || *f == s.id.to_string(),
            _ => false,
        })
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
        let json = key_json(&k);
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
        Ok((200, Some(json!({ "ssh_key": key_json(&self.ssh_keys[i]) }))))
    }

    pub fn delete_ssh_key(&mut self, id_or_fp: &str) -> Answer {
        let i = self.key_index(id_or_fp)?;
        self.ssh_keys.remove(i);
        Ok((204, None))
    }

    pub fn list_ssh_keys(&self, page: &Page) -> Value {
        super::paginate("ssh_keys", &self.ssh_keys, page, key_json)
    }
}

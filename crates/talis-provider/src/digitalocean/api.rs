//! DigitalOcean API v2 wire types, for the subset Talis uses. Responses are parsed leniently
//! (unknown fields ignored, optional ones defaulted) so API additions do not break us.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub networks: Networks,
    pub region: Region,
    #[serde(default)]
    pub size_slug: String,
    #[serde(default)]
    pub volume_ids: Vec<String>,
    #[serde(default)]
    pub created_at: String,
}

impl Droplet {
    pub fn public_ipv4(&self) -> Option<&str> {
        self.networks
            .v4
            .iter()
            .find(|n| n.kind == "public")
            .map(|n| n.ip_address.as_str())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Networks {
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct NetworkV4 {
    pub ip_address: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Region {
    pub slug: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub available: bool,
    #[serde(default)]
    pub sizes: Vec<String>,
}

/// `POST /v2/droplets`: exactly one of `name` / `names` (≤ 10).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DropletCreate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    pub region: String,
    pub size: String,
    pub image: String,
    /// Key ids (integers) or fingerprints (strings), as DigitalOcean accepts both.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

/// An SSH key reference: an all-digit string is a key id (sent as an integer), anything else a
/// fingerprint.
pub fn ssh_key_ref(k: &str) -> serde_json::Value {
    match k.parse::<u64>() {
        Ok(id) => serde_json::Value::from(id),
        Err(_) => serde_json::Value::from(k),
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Action {
    pub id: u64,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub resource_id: Option<u64>,
    #[serde(default)]
    pub resource_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub region: Region,
    pub size_gigabytes: u32,
    #[serde(default)]
    pub droplet_ids: Vec<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub filesystem_type: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VolumeCreate {
    pub name: String,
    pub size_gigabytes: u32,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct SshKey {
    pub id: u64,
    pub fingerprint: String,
    pub public_key: String,
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Size {
    pub slug: String,
    #[serde(default)]
    pub memory: u64,
    #[serde(default)]
    pub vcpus: u32,
    #[serde(default)]
    pub disk: u32,
    #[serde(default)]
    pub price_hourly: f64,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub available: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Image {
    pub id: u64,
    #[serde(default)]
    pub slug: Option<String>,
    pub name: String,
    #[serde(default)]
    pub distribution: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Account {
    pub droplet_limit: u32,
    #[serde(default)]
    pub volume_limit: u32,
    pub email: String,
    pub uuid: String,
    pub status: String,
}

/// DigitalOcean's error body.
#[derive(Clone, Debug, Deserialize)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

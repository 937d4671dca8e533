//! `GET /v2/account`: a fixed account whose droplet and volume limits are the configured
//! quotas.

use serde_json::{Value, json};

use super::Cloud;
use crate::config::Config;

impl Cloud {
    pub fn account(&self, config: &Config) -> Value {
        json!({ "account": {
            "droplet_limit": config.droplet_limit,
            "floating_ip_limit": 3,
            "volume_limit": config.volume_limit,
            "reserved_ip_limit": 3,
            "email": "fake@example.com",
            "name": "Fake Cloud",
            "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
            "email_verified": true,
            "status": "active",
            "status_message": "",
            "team": { "uuid": "5df3e3004a17e242b7c20ca6c9fc25b701a47ece", "name": "Fake Team" },
        }})
    }
}

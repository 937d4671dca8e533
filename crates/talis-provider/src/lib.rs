//! Cloud provider clients (DigitalOcean API v2) behind a provider trait.

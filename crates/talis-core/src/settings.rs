//! Names of the Spin variables the API component reads (declared in `spin.toml`). Locally they come
//! from `SPIN_VARIABLE_<NAME>` environment variables, exactly like `spin up`.

/// Secret: the bootstrap admin API key (`Authorization: Bearer <key>`). Empty disables it.
pub const ADMIN_API_KEY: &str = "admin_api_key";
/// Secret shared with the workflows: `/internal/v1/` bearer token and phone-home token key.
pub const INTERNAL_SECRET: &str = "internal_secret";
/// Restate ingress base URL, e.g. `http://127.0.0.1:8080`. Empty: tasks are not dispatched.
pub const RESTATE_INGRESS_URL: &str = "restate_ingress_url";
/// Base URL machines use to phone home (`{public_url}/v1/phone-home/...`).
pub const PUBLIC_URL: &str = "public_url";
/// Restate admin base URL whose UI (`{restate_ui_url}/ui/`) shows the invocations, e.g.
/// `http://127.0.0.1:9070`. Empty: tasks carry no UI link.
pub const RESTATE_UI_URL: &str = "restate_ui_url";

/// This deployment's identity (1 to 32 lowercase letters, digits and '-'): every provider
/// resource the workflows make for it carries it in its tags, so deployments sharing a cloud
/// account never touch each other's machines. `cargo xtask up` generates one.
pub const DEPLOYMENT_ID: &str = "deployment_id";

/// Default quotas of every owner (an admin may override them per owner with `quota.set`).
pub const MAX_INSTANCES_PER_OWNER: &str = "max_instances_per_owner";
pub const MAX_PROJECTS_PER_OWNER: &str = "max_projects_per_owner";
pub const MAX_API_KEYS_PER_OWNER: &str = "max_api_keys_per_owner";
pub const MAX_SSH_KEYS_PER_OWNER: &str = "max_ssh_keys_per_owner";
pub const MAX_WEBHOOKS_PER_OWNER: &str = "max_webhooks_per_owner";

/// Hosts and networks webhooks may reach despite the SSRF guard: a comma list of host names
/// and addresses or CIDRs (`talis_api::egress::AllowList`); the workflows read the same list
/// from `TALIS_WEBHOOK_ALLOW_HOSTS`. Empty: only public addresses.
pub const WEBHOOK_ALLOW_HOSTS: &str = "webhook_allow_hosts";

/// Days events are kept before the housekeeping workflow deletes them (default 30).
pub const EVENT_RETENTION_DAYS: &str = "event_retention_days";
/// Default of [`EVENT_RETENTION_DAYS`].
pub const DEFAULT_EVENT_RETENTION_DAYS: u32 = 30;

/// Longest an `event.list` long-poll holds its request, in ms (default and maximum 30 000).
pub const EVENT_WAIT_MAX_MS: &str = "event_wait_max_ms";

/// All variables, in the order `spin.toml` declares them.
pub const ALL: &[&str] = &[
    ADMIN_API_KEY,
    INTERNAL_SECRET,
    RESTATE_INGRESS_URL,
    PUBLIC_URL,
    RESTATE_UI_URL,
    DEPLOYMENT_ID,
    MAX_INSTANCES_PER_OWNER,
    MAX_PROJECTS_PER_OWNER,
    MAX_API_KEYS_PER_OWNER,
    MAX_SSH_KEYS_PER_OWNER,
    MAX_WEBHOOKS_PER_OWNER,
    EVENT_RETENTION_DAYS,
    EVENT_WAIT_MAX_MS,
    WEBHOOK_ALLOW_HOSTS,
];

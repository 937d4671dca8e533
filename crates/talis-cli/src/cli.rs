//! The command tree. One subcommand per RPC method (see `COVERAGE`), plus the original CLI's
//! `infra create|delete -f file.json`, `task watch`, `config` and `completions`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(test)]
use talis_client::wire::methods::{Method, public as m};
use talis_client::wire::{InstanceId, OwnerId, RowId, TaskId};

#[derive(Parser, Debug)]
#[command(
    name = "talis",
    version,
    about = "Deploy and track fleets of cloud machines with Talis",
    after_help = "Exit status: 0 success, 1 error, 2 usage error, 3 a waited-for task or instance failed."
)]
pub struct Cli {
    /// Talis API base URL [default: http://127.0.0.1:3000, or the config file's api_url]
    #[arg(long, env = "TALIS_API_URL", global = true)]
    pub api_url: Option<String>,
    /// API key, sent as `Authorization: Bearer <key>`
    #[arg(long, env = "TALIS_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Config file (TOML with api_url, api_key) [default: ~/.config/talis/config.toml]
    #[arg(long, env = "TALIS_CONFIG", global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Output format [default: table on a terminal, json when piped]
    #[arg(short, long, value_enum, global = true)]
    pub output: Option<Format>,
    /// Which API route carries the calls (both answer the same)
    #[arg(long, value_enum, global = true, default_value_t = RouteArg::Envelope)]
    pub route: RouteArg,
    /// Per-request timeout in seconds
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    /// Act for this owner (admin keys only)
    #[arg(long, global = true)]
    pub owner_id: Option<OwnerId>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouteArg {
    /// POST /api/v1/ {method, params}
    Envelope,
    /// POST /v1/<method>
    Typed,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Projects: named groups of instances
    #[command(subcommand, alias = "projects")]
    Project(ProjectCmd),
    /// Tasks: the asynchronous work (create, terminate, delete) on instances
    #[command(subcommand, alias = "tasks")]
    Task(TaskCmd),
    /// Instances: the machines
    #[command(subcommand, alias = "instances")]
    Instance(InstanceCmd),
    /// Users (creating and deleting needs an admin key)
    #[command(subcommand, alias = "users")]
    User(UserCmd),
    /// SSH public keys installed on new machines
    #[command(subcommand, alias = "sshkeys")]
    Sshkey(SshkeyCmd),
    /// API keys of the caller
    #[command(subcommand, alias = "apikeys")]
    Apikey(ApikeyCmd),
    /// Webhooks: events POSTed to a URL, signed (Standard Webhooks), retried for a day
    #[command(subcommand, alias = "webhooks")]
    Webhook(WebhookCmd),
    /// The original CLI's file-driven commands (create.json / delete.json)
    #[command(subcommand)]
    Infra(InfraCmd),
    /// The event log: status changes, provider steps and API calls, oldest first; `--follow`
    /// waits for new ones
    #[command(alias = "event")]
    Events(EventsArgs),
    /// Quotas of an owner and what it uses
    #[command(subcommand, alias = "quotas")]
    Quota(QuotaCmd),
    /// Show or write the config file
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script (e.g. `talis completions bash > /etc/bash_completion.d/talis`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `--wait` and its knobs, shared by every command that queues a task.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Wait for the task to finish, showing live progress; exit 3 if it or any instance failed
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (the task keeps running)
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub wait_timeout: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct PageArgs {
    /// Page number (1-based)
    #[arg(long)]
    pub page: Option<u32>,
    /// Rows per page (1-1000)
    #[arg(long)]
    pub limit: Option<u32>,
    /// Skip this many rows
    #[arg(long)]
    pub offset: Option<u32>,
    /// Continue after this cursor (from a previous page's next_cursor)
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project, optionally with instances, from flags or a JSON file
    Create {
        /// project.create params as JSON ({"name", "description", "config", "instances": [...]}),
        /// or the original create.json array of instance requests; `-` reads stdin
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Project name (overrides the file's)
        #[arg(short, long)]
        name: Option<String>,
        /// Project description
        #[arg(short, long)]
        description: Option<String>,
        /// Project config as a JSON object string
        #[arg(short, long)]
        config: Option<String>,
        /// Retrying with the same key returns the first answer instead of failing
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show one project
    Get { name: String },
    /// List projects
    List(PageArgs),
    /// Delete a project, terminating its live instances first
    Delete {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List a project's instances
    Instances {
        name: String,
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// `talis events`: filters, paging and `--follow`.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Only this project's events
    #[arg(short, long)]
    pub project: Option<String>,
    /// Only this task's events (with --follow: until the task finishes)
    #[arg(long, value_name = "ID")]
    pub task: Option<TaskId>,
    /// Only this instance's events
    #[arg(long, value_name = "ID")]
    pub instance: Option<InstanceId>,
    /// Only these kinds (repeatable): instance.status, task.status, api.call, provider.step, reconcile
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Events after this event id (a page's next cursor)
    #[arg(long, value_name = "ID", alias = "cursor")]
    pub after: Option<String>,
    /// Events per page (1-1000; default 50)
    #[arg(long)]
    pub limit: Option<u32>,
    /// Keep printing new events as they happen (one line each on a terminal, JSON lines when
    /// piped or with -o json); Ctrl-C stops
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    /// The limits in force and what the owner uses (yours, or --owner-id's with an admin key)
    Get,
    /// Override an owner's limits (admin); a limit not given goes back to the deployment's default
    Set {
        /// The owner (user id)
        owner: OwnerId,
        #[arg(long)]
        max_instances: Option<u32>,
        #[arg(long)]
        max_projects: Option<u32>,
        #[arg(long)]
        max_api_keys: Option<u32>,
        #[arg(long)]
        max_ssh_keys: Option<u32>,
        #[arg(long)]
        max_webhooks: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Show one task: on a terminal a summary (status, instances by status, duration, the last
    /// events, the Restate UI link); JSON when piped or with -o json
    Get {
        id: TaskId,
        /// Print the task's whole history (its logs) instead of the summary
        #[arg(long)]
        logs: bool,
    },
    /// List a project's tasks
    List {
        #[arg(short, long)]
        project: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Stop a task
    Terminate {
        id: TaskId,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Follow a task until it finishes, with live progress; exit 3 if it or any instance failed
    Watch {
        id: TaskId,
        #[arg(long, value_name = "SECS")]
        wait_timeout: Option<u64>,
    },
    /// List the tasks that acted on one instance
    ListByInstance {
        instance_id: InstanceId,
        /// create_instances, terminate_instances or delete_project
        #[arg(short, long)]
        action: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Force a task's status (admin)
    UpdateStatus { id: TaskId, status: String },
}

#[derive(Subcommand, Debug)]
pub enum InstanceCmd {
    /// List instances
    List {
        #[arg(short, long)]
        project: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// Include terminated instances
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one instance
    Get { id: InstanceId },
    /// Create instances in existing projects (file: {"instances": [...]} or a bare array)
    Create {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Terminate instances of a project
    Terminate {
        #[arg(short, long)]
        project: String,
        #[arg(required = true)]
        ids: Vec<InstanceId>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Public IPs of instances
    PublicIps {
        #[arg(short, long)]
        project: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    User,
    Admin,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user and its first API key (admin)
    Create {
        #[arg(short, long)]
        username: String,
        #[arg(short, long)]
        email: Option<String>,
        #[arg(long, value_enum, default_value_t = Role::User)]
        role: Role,
        /// File with the user's public SSH key
        #[arg(long, value_name = "FILE")]
        public_ssh_key_file: Option<PathBuf>,
    },
    /// Show a user by username or id
    Get {
        username: Option<String>,
        #[arg(long, conflicts_with = "username")]
        id: Option<RowId>,
    },
    /// List users
    List(PageArgs),
    /// Delete a user (admin)
    Delete { id: RowId },
}

#[derive(Subcommand, Debug)]
pub enum SshkeyCmd {
    /// Store a public SSH key under a name
    #[command(alias = "create")]
    Add {
        #[arg(short, long)]
        name: String,
        /// The key text (ssh-ed25519 AAAA...)
        #[arg(
            long,
            conflicts_with = "public_key_file",
            required_unless_present = "public_key_file"
        )]
        public_key: Option<String>,
        /// File holding the key (e.g. ~/.ssh/id_ed25519.pub)
        #[arg(short = 'k', long, value_name = "FILE")]
        public_key_file: Option<PathBuf>,
    },
    /// List stored keys
    List(PageArgs),
    /// Delete a stored key
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ApikeyCmd {
    /// Create an API key (shown once)
    Create {
        #[arg(short, long, default_value = "")]
        name: String,
    },
    /// List API keys (prefixes only)
    List(PageArgs),
    /// Revoke an API key
    Revoke { id: RowId },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Create a webhook; its signing secret is printed once
    Create {
        /// http(s) URL the messages are POSTed to
        #[arg(long)]
        url: String,
        /// Event kinds to send, repeated or comma-separated: instance.status, task.status,
        /// api.call, provider.step, reconcile
        #[arg(short, long = "event", value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Only this project's events
        #[arg(short, long)]
        project: Option<String>,
    },
    /// List webhooks
    List(PageArgs),
    /// Delete a webhook (its pending deliveries fail)
    Delete { id: RowId },
    /// Queue a ping message, delivered like any event
    Test { id: RowId },
    /// A webhook's deliveries: status, attempts, last HTTP status and error
    Deliveries {
        id: RowId,
        /// pending, delivered or failed
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum InfraCmd {
    /// Create instances from the original create.json (array of instance requests); writes
    /// delete-<project>-<timestamp>.json next to it for `infra delete`
    Create {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Terminate instances listed in delete.json ({"project_name", "instance_ids": [...]})
    Delete {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show the settings in effect and where each comes from (the key is masked)
    Show,
    /// Write api_url / api_key into the config file
    Set {
        #[arg(long = "url", value_name = "URL")]
        url: Option<String>,
        #[arg(long = "key", value_name = "KEY")]
        key: Option<String>,
    },
}

/// Which subcommand serves each RPC method (the test below checks every entry of the method table).
#[cfg(test)]
pub const COVERAGE: &[(&str, &str)] = &[
    (m::ProjectCreate::NAME, "project create"),
    (m::ProjectGet::NAME, "project get"),
    (m::ProjectList::NAME, "project list"),
    (m::ProjectDelete::NAME, "project delete"),
    (m::ProjectListInstances::NAME, "project instances"),
    (m::TaskGet::NAME, "task get"),
    (m::TaskList::NAME, "task list"),
    (m::TaskTerminate::NAME, "task terminate"),
    (m::TaskUpdateStatus::NAME, "task update-status"),
    (m::TaskListByInstance::NAME, "task list-by-instance"),
    (m::UserCreate::NAME, "user create"),
    (m::UserGet::NAME, "user list"),
    (m::UserGetId::NAME, "user get"),
    (m::UserDelete::NAME, "user delete"),
    (m::SshKeyCreate::NAME, "sshkey add"),
    (m::SshKeyList::NAME, "sshkey list"),
    (m::SshKeyDelete::NAME, "sshkey delete"),
    (m::ApiKeyCreate::NAME, "apikey create"),
    (m::ApiKeyList::NAME, "apikey list"),
    (m::ApiKeyRevoke::NAME, "apikey revoke"),
    (m::InstanceCreate::NAME, "instance create"),
    (m::InstanceList::NAME, "instance list"),
    (m::InstanceGet::NAME, "instance get"),
    (m::InstanceTerminate::NAME, "instance terminate"),
    (m::InstancePublicIps::NAME, "instance public-ips"),
    // The original's alias of `instance list`.
    (m::InstanceMetadata::NAME, "instance list"),
    (m::WebhookCreate::NAME, "webhook create"),
    (m::WebhookList::NAME, "webhook list"),
    (m::WebhookDelete::NAME, "webhook delete"),
    (m::WebhookTest::NAME, "webhook test"),
    (m::WebhookDeliveries::NAME, "webhook deliveries"),
    (m::EventList::NAME, "events"),
    (m::QuotaGet::NAME, "quota get"),
    (m::QuotaSet::NAME, "quota set"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_rpc_method_has_a_subcommand() {
        let root = Cli::command();
        for method in talis_client::wire::methods::public::METHODS
            .iter()
            .map(|m| m.name)
        {
            let (_, path) = COVERAGE
                .iter()
                .find(|(m, _)| *m == method)
                .unwrap_or_else(|| panic!("no subcommand for {method}"));
            let mut cmd = &root;
            for word in path.split(' ') {
                cmd = cmd
                    .find_subcommand(word)
                    .unwrap_or_else(|| panic!("`talis {path}` ({method}) does not exist"));
            }
        }
    }
}

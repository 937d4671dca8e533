//! Reading the contract's models from SQL rows: the column lists and their decoding, kept next
//! to each other so a column added to one is added to the other.

use talis_api::{
    ApiKey, Instance, InstanceId, InstanceStatus, OwnerId, Project, ProjectId, ProjectStatus,
    RowId, SshKey, Task, TaskAction, TaskId, TaskStatus, User, VolumeDetail,
};

use crate::db::{Row, RowExt};

fn json_or_default<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

pub const PROJECT: &str = "id, owner_id, name, description, config, status, created_at, updated_at";

pub fn project(r: &Row) -> Project {
    Project {
        id: ProjectId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        name: r.text(2),
        description: r.text(3),
        config: r.text(4),
        status: r.text(5).parse().unwrap_or(ProjectStatus::Active),
        created_at: r.text(6),
        updated_at: r.text(7),
    }
}

pub const INSTANCE: &str = "id, owner_id, project_id, name, provider_id, provider_ref, public_ip, region, size, \
     image, tags, status, volume_details, error, create_task_id, last_task_id, created_at, updated_at";

pub fn instance(r: &Row) -> Instance {
    let provider_ref = r.text(5);
    let volume_details: Vec<VolumeDetail> = json_or_default(&r.text(12));
    Instance {
        id: InstanceId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        project_id: ProjectId::from_db(r.int(2)),
        name: r.text(3),
        provider_id: r.text(4),
        provider_instance_id: provider_ref.parse().unwrap_or(0),
        provider_ref,
        public_ip: r.text(6),
        region: r.text(7),
        size: r.text(8),
        image: r.text(9),
        tags: json_or_default(&r.text(10)),
        status: r.text(11).parse().unwrap_or(InstanceStatus::Unknown),
        volume_ids: volume_details.iter().map(|v| v.id.clone()).collect(),
        volume_details,
        error: r.text(13),
        create_task_id: TaskId::from_db(r.int(14)),
        last_task_id: TaskId::from_db(r.int(15)),
        created_at: r.text(16),
        updated_at: r.text(17),
    }
}

/// Columns of a task (`tasks t`), its instance count included.
pub const TASK: &str = "t.id, t.owner_id, t.project_id, t.action, t.status, t.priority, t.attempts, \
     (SELECT COUNT(*) FROM task_instances ti WHERE ti.task_id = t.id), t.logs, t.error, t.result, \
     t.created_at, t.updated_at, t.dispatched_at, t.finished_at, t.invocation_id";

/// A task row; `restate_ui_url` (no trailing `/`, empty: none) links its invocation.
pub fn task(r: &Row, restate_ui_url: &str) -> Task {
    let invocation_id = r.opt_text(15);
    Task {
        id: TaskId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        project_id: ProjectId::from_db(r.int(2)),
        action: r.text(3).parse().unwrap_or(TaskAction::CreateInstances),
        status: r.text(4).parse().unwrap_or(TaskStatus::Unknown),
        priority: r.int(5),
        attempts: r.int(6),
        instance_count: r.int(7),
        logs: r.text(8),
        error: r.text(9),
        result: r.opt_text(10).and_then(|s| serde_json::from_str(&s).ok()),
        created_at: r.text(11),
        updated_at: r.text(12),
        dispatched_at: r.opt_text(13),
        finished_at: r.opt_text(14),
        invocation_url: invocation_url(invocation_id.as_deref(), restate_ui_url),
        invocation_id,
    }
}

/// `{restate_ui_url}/ui/invocations/{id}`: the invocation's page in the Restate UI.
fn invocation_url(id: Option<&str>, restate_ui_url: &str) -> Option<String> {
    let id = id.filter(|id| !id.is_empty() && !restate_ui_url.is_empty())?;
    Some(format!(
        "{restate_ui_url}/ui/invocations/{}",
        path_segment(id)
    ))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (Restate ids need none of it,
/// but the id arrives over RPC).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

pub const USER: &str = "id, username, email, role, public_ssh_key, created_at, updated_at";

pub fn user(r: &Row) -> User {
    User {
        id: OwnerId::from_db(r.int(0)),
        username: r.text(1),
        email: r.text(2),
        role: r.int(3) as u8,
        public_ssh_key: r.text(4),
        created_at: r.text(5),
        updated_at: r.text(6),
    }
}

pub const SSH_KEY: &str = "id, owner_id, name, public_key, created_at";

pub fn ssh_key(r: &Row) -> SshKey {
    SshKey {
        id: RowId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        name: r.text(2),
        public_key: r.text(3),
        created_at: r.text(4),
    }
}

pub const API_KEY: &str = "id, owner_id, name, prefix, created_at, revoked_at";

pub fn api_key(r: &Row) -> ApiKey {
    ApiKey {
        id: RowId::from_db(r.int(0)),
        owner_id: OwnerId::from_db(r.int(1)),
        name: r.text(2),
        prefix: r.text(3),
        created_at: r.text(4),
        revoked_at: r.opt_text(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ui_link_only_with_an_invocation_and_a_ui_url() {
        assert_eq!(invocation_url(None, "http://r:9070"), None);
        assert_eq!(invocation_url(Some("inv_1a/b"), ""), None);
        assert_eq!(
            invocation_url(Some("inv_1a/b"), "http://r:9070").as_deref(),
            Some("http://r:9070/ui/invocations/inv_1a%2Fb")
        );
    }
}

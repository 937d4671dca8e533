//! Making instances: one create_instances task per project covering N instances in a handful of
//! statements, the stored SSH keys they install, and idempotent replays of create calls.

use serde::Serialize;
use sha2::{Digest, Sha256};
use talis_api::{
    InstanceId, InstanceSpec, KeyName, OwnerId, Project, ProjectStatus, SshPublicKey, TaskAction,
    TaskId, TaskStatus,
};

use super::Service;
use super::quotas::Quota;
use crate::db::{RowExt, Value};
use crate::{Error, Result, now};
use talis_api::cloudinit;
use talis_api::rules::USER_DATA_LIMIT;

/// A hostname base derived from a project name, for instances requested without `name`.
pub(super) fn hostname_base(project: &str) -> String {
    let mut s: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(50);
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "talis".into() } else { s }
}

/// Hostnames of a request's machines: `<name>` for one named machine, `<name>-1..N` otherwise.
pub(super) fn hostnames(spec: &InstanceSpec<'_>, project: &str) -> Vec<String> {
    if spec.count == 1 && !spec.name.is_empty() {
        return vec![spec.name.to_owned()];
    }
    let base = if spec.name.is_empty() {
        hostname_base(project)
    } else {
        spec.name.to_owned()
    };
    (1..=spec.count).map(|i| format!("{base}-{i}")).collect()
}

pub(super) fn json_text<T: Serialize>(v: &T) -> Value {
    Value::Text(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

impl Service<'_> {
    /// Runs a create once per `(owner, idempotency_key)`: a repeat with the same params gets the
    /// stored answer (and triggers nothing new), a repeat with other params a 409. Runs inside
    /// the call's transaction; `params` is what identifies the request (without its key).
    pub(super) fn idempotent<P: Serialize, R: Serialize + serde::de::DeserializeOwned>(
        &self,
        owner: OwnerId,
        method: &str,
        key: Option<&str>,
        params: &P,
        create: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let Some(key) = key else {
            return create();
        };
        let mut params = serde_json::to_value(params).map_err(|e| Error::Db(e.to_string()))?;
        if let Some(o) = params.as_object_mut() {
            o.remove("idempotency_key");
        }
        // serde_json maps are sorted, so equal params hash equally whatever the key order.
        let hash = hex::encode(Sha256::digest(format!("{method}\n{params}").as_bytes()));
        if let Some(r) = self.q1(
            "SELECT request_hash, response FROM idempotency_keys WHERE owner_id = ? AND key = ?",
            &[owner.get().into(), key.into()],
        )? {
            if r.text(0) != hash {
                return Err(Error::Conflict(
                    "idempotency_key was already used with different params".into(),
                ));
            }
            // The first call dispatched (or the sweep will); nothing new to trigger.
            self.after.take();
            return serde_json::from_str(&r.text(1)).map_err(|e| Error::Db(e.to_string()));
        }
        let created = create()?;
        self.q(
            "INSERT INTO idempotency_keys (owner_id, key, method, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[owner.get().into(), key.into(), method.into(), hash.into(), json_text(&created), now().into()],
        )?;
        Ok(created)
    }

    pub(super) fn require_owner(&self, owner: OwnerId) -> Result<()> {
        self.q1(
            "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL",
            &[owner.get().into()],
        )?
        .map(|_| ())
        .ok_or(Error::NotFound("owner"))
    }

    /// One create_instances task covering every instance of `specs` (`at` names each spec's
    /// position in the call, for errors). A handful of statements whatever N is: the names go
    /// in as one JSON array expanded by `json_each`. The task is dispatched after commit.
    pub(super) fn insert_instances(
        &self,
        owner: OwnerId,
        project: &Project,
        specs: &[(usize, InstanceSpec<'_>)],
    ) -> Result<(TaskId, Vec<InstanceId>)> {
        if project.status != ProjectStatus::Active {
            return Err(Error::Conflict(format!(
                "project '{}' is being deleted",
                project.name
            )));
        }
        let ts = now();
        let task_id = self.insert_task(owner, project, TaskAction::CreateInstances, &ts)?;
        let mut ids = Vec::new();
        let requested: u32 = specs.iter().map(|(_, s)| s.count).sum();
        self.check_quota(owner, Quota::Instances, requested)?;
        for (at, spec) in specs {
            let keys = self.resolve_ssh_keys(owner, *at, &spec.ssh_keys)?;
            self.check_user_data(*at, spec, &keys)?;
            let request_id = self
                .q1(
                    "INSERT INTO instance_requests (task_id, provision, payload, execute_payload, ssh_keys, volumes) \
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    &[
                        task_id.get().into(),
                        spec.provision.into(),
                        spec.payload.into(),
                        spec.execute_payload.into(),
                        json_text(&keys),
                        json_text(&spec.volumes),
                    ],
                )?
                .map(|r| r.int(0))
                .ok_or_else(|| Error::Db("instance request insert returned no row".into()))?;
            let rows = self.q(
                "INSERT INTO instances (owner_id, project_id, request_id, create_task_id, last_task_id, name, \
                 provider_id, region, size, image, tags, status, created_at, updated_at) \
                 SELECT ?1, ?2, ?3, ?4, ?4, j.value, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?10 \
                 FROM json_each(?11) j ORDER BY j.key RETURNING id",
                &[
                    owner.get().into(),
                    project.id.get().into(),
                    request_id.into(),
                    task_id.get().into(),
                    spec.provider.as_str().into(),
                    spec.region.into(),
                    spec.size.into(),
                    spec.image.into(),
                    json_text(&spec.tags),
                    (&ts).into(),
                    json_text(&hostnames(spec, &project.name)),
                ],
            )?;
            ids.extend(rows.iter().map(|r| InstanceId::from_db(r.int(0))));
        }
        self.q(
            "INSERT INTO task_instances (task_id, instance_id) SELECT ?1, id FROM instances WHERE create_task_id = ?1",
            &[task_id.get().into()],
        )?;
        ids.sort_unstable();
        self.dispatch_after_commit(task_id);
        Ok((task_id, ids))
    }

    pub(super) fn insert_task(
        &self,
        owner: OwnerId,
        project: &Project,
        action: TaskAction,
        ts: &str,
    ) -> Result<TaskId> {
        let task_id = self.q1(
            "INSERT INTO tasks (owner_id, project_id, action, status, priority, created_at, updated_at) \
             VALUES (?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
            &[
                owner.get().into(),
                project.id.get().into(),
                action.as_str().into(),
                action.priority().into(),
                ts.into(),
                ts.into(),
            ],
        )?
        .map(|r| TaskId::from_db(r.int(0)))
        .ok_or_else(|| Error::Db("task insert returned no row".into()))?;
        let task = self.task_scoped(None, task_id)?;
        self.task_status_event(&task, None, TaskStatus::Pending, None)?;
        Ok(task_id)
    }

    /// Refuses a request whose machines' cloud-init user data (script, SSH keys, volume mounts
    /// and phone-home lines, with the longest ids) would not fit what the provider accepts, so
    /// it fails now with a 400 rather than later with the provider's 422.
    fn check_user_data(
        &self,
        at: usize,
        spec: &InstanceSpec<'_>,
        keys: &[SshPublicKey],
    ) -> Result<()> {
        let keys: Vec<String> = keys.iter().map(|k| k.public_key.clone()).collect();
        let len = cloudinit::worst_case_len(
            spec.payload,
            &keys,
            spec.volumes,
            &self.cfg.deployment,
            &self.cfg.public_url,
        );
        if cloudinit::fits(len) {
            return Ok(());
        }
        Err(Error::invalid(
            format!("instances[{at}].payload"),
            format!(
                "the machines' cloud-init user data would be {len} bytes (script, {} SSH keys, {} volume mounts and \
                 the phone-home lines); the provider accepts at most {USER_DATA_LIMIT}",
                keys.len(),
                spec.volumes.len()
            ),
        ))
    }

    /// The owner's stored keys by name; an unknown name is a 404 naming the field.
    fn resolve_ssh_keys(
        &self,
        owner: OwnerId,
        at: usize,
        names: &[KeyName<'_>],
    ) -> Result<Vec<SshPublicKey>> {
        names
            .iter()
            .map(|KeyName { field, name }| {
                self.q1(
                    "SELECT name, public_key FROM ssh_keys WHERE owner_id = ? AND name = ? AND deleted_at IS NULL",
                    &[owner.get().into(), (*name).into()],
                )?
                .map(|r| SshPublicKey { name: r.text(0), public_key: r.text(1) })
                .ok_or_else(|| Error::NotFoundField {
                    field: format!("instances[{at}].{field}"),
                    what: format!("SSH key '{name}'"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_from_name_or_project() {
        assert_eq!(hostname_base("My Project!"), "my-project");
        assert_eq!(hostname_base("---"), "talis");
    }
}

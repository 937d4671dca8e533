//! Projects and instances: creation of N instances in one transaction, lists, termination.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::{Outcome, Service, data, id_list, to_json};
use crate::auth::Caller;
use crate::db::{RowExt, Value};
use crate::model::{Instance, Project, SshPublicKey};
use crate::params::*;
use crate::status::{InstanceStatus, TaskAction};
use crate::validate::{self, InstanceSpec};
use crate::{Error, Result, now};

impl Service<'_> {
    pub(super) fn project_create(
        &self,
        c: &Caller,
        p: ProjectCreate,
        raw: &Json,
    ) -> Result<Outcome> {
        let name = validate::name("name", &p.name, 100)?;
        let config = validate::project_config(&p.config)?;
        let specs = validate::instance_requests(&p.instances, false)?;
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            self.idempotent(owner, "project.create", p.idempotency_key.as_deref(), raw, || {
                // The caller's own key was just resolved to a live user; only an admin acting
                // for someone else names an owner that may not exist.
                if owner != c.owner_id {
                    self.require_owner(owner)?;
                }
                let ts = now();
                // Insert unless a live project has the name: one statement, checked under the lock.
                let row = self
                    .q1(
                        &format!(
                            "INSERT INTO projects (owner_id, name, description, config, created_at, updated_at) \
                             SELECT ?1, ?2, ?3, ?4, ?5, ?5 WHERE NOT EXISTS (SELECT 1 FROM projects \
                             WHERE owner_id = ?1 AND name = ?2 AND deleted_at IS NULL) RETURNING {}",
                            Project::COLUMNS
                        ),
                        &[owner.into(), (&name).into(), p.description.trim().into(), config.into(), (&ts).into()],
                    )?
                    .ok_or_else(|| Error::Conflict(format!("project '{name}' already exists")))?;
                let project = Project::from_row(&row);
                let (task_id, instance_ids) = if specs.is_empty() {
                    (None, Vec::new())
                } else {
                    let (t, ids) = self.insert_instances(owner, &project, &specs)?;
                    (Some(t), ids)
                };
                let dispatch = task_id.into_iter().collect();
                Ok((to_json(ProjectCreated { project, task_id, instance_ids })?, dispatch))
            })
        })
    }

    /// Runs a create once per `(owner, idempotency_key)`: a repeat with the same params gets the
    /// stored answer, a repeat with other params a 409. Must run inside the call's transaction.
    fn idempotent(
        &self,
        owner: i64,
        method: &str,
        key: Option<&str>,
        raw: &Json,
        create: impl FnOnce() -> Result<(Json, Vec<i64>)>,
    ) -> Result<Outcome> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            let (data, dispatch) = create()?;
            return Ok(Outcome {
                data: Some(data),
                dispatch,
                cancel: Vec::new(),
            });
        };
        if key.len() > 200 {
            return Err(Error::invalid(
                "idempotency_key",
                "must be at most 200 characters",
            ));
        }
        let mut params = raw.clone();
        if let Some(o) = params.as_object_mut() {
            o.remove("idempotency_key");
        }
        // serde_json maps are sorted, so equal params hash equally whatever the key order.
        let hash = hex::encode(Sha256::digest(format!("{method}\n{params}").as_bytes()));
        if let Some(r) = self.q1(
            "SELECT request_hash, response FROM idempotency_keys WHERE owner_id = ? AND key = ?",
            &[owner.into(), key.into()],
        )? {
            if r.text(0) != hash {
                return Err(Error::Conflict(
                    "idempotency_key was already used with different params".into(),
                ));
            }
            let data = serde_json::from_str(&r.text(1)).map_err(|e| Error::Db(e.to_string()))?;
            // The first call dispatched (or the sweep will); nothing new to trigger.
            return Ok(Outcome {
                data: Some(data),
                dispatch: Vec::new(),
                cancel: Vec::new(),
            });
        }
        let (data, dispatch) = create()?;
        self.q(
            "INSERT INTO idempotency_keys (owner_id, key, method, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[owner.into(), key.into(), method.into(), hash.into(), data.to_string().into(), now().into()],
        )?;
        Ok(Outcome {
            data: Some(data),
            dispatch,
            cancel: Vec::new(),
        })
    }

    pub(super) fn require_owner(&self, owner: i64) -> Result<()> {
        self.q1(
            "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL",
            &[owner.into()],
        )?
        .map(|_| ())
        .ok_or(Error::NotFound("owner"))
    }

    /// One create_instances task covering every instance of `specs`. A handful of statements
    /// whatever N is: the names go in as one JSON array expanded by `json_each`.
    fn insert_instances(
        &self,
        owner: i64,
        project: &Project,
        specs: &[InstanceSpec],
    ) -> Result<(i64, Vec<i64>)> {
        if project.status != "active" {
            return Err(Error::Conflict(format!(
                "project '{}' is being deleted",
                project.name
            )));
        }
        let ts = now();
        let task_id = self.insert_task(owner, project.id, TaskAction::CreateInstances, &ts)?;
        let mut ids = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let keys = self.resolve_ssh_keys(owner, i, &spec.ssh_keys)?;
            let request_id = self
                .q1(
                    "INSERT INTO instance_requests (task_id, provision, payload, execute_payload, ssh_keys, volumes) \
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    &[
                        task_id.into(),
                        spec.provision.into(),
                        (&spec.payload).into(),
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
                    owner.into(),
                    project.id.into(),
                    request_id.into(),
                    task_id.into(),
                    (&spec.provider).into(),
                    (&spec.region).into(),
                    (&spec.size).into(),
                    (&spec.image).into(),
                    json_text(&spec.tags),
                    (&ts).into(),
                    json_text(&spec.names(&project.name)),
                ],
            )?;
            ids.extend(rows.iter().map(|r| r.int(0)));
        }
        self.q(
            "INSERT INTO task_instances (task_id, instance_id) SELECT ?1, id FROM instances WHERE create_task_id = ?1",
            &[task_id.into()],
        )?;
        ids.sort_unstable();
        Ok((task_id, ids))
    }

    pub(super) fn insert_task(
        &self,
        owner: i64,
        project_id: i64,
        action: TaskAction,
        ts: &str,
    ) -> Result<i64> {
        self.q1(
            "INSERT INTO tasks (owner_id, project_id, action, status, priority, created_at, updated_at) \
             VALUES (?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
            &[owner.into(), project_id.into(), action.as_str().into(), action.priority().into(), ts.into(), ts.into()],
        )?
        .map(|r| r.int(0))
        .ok_or_else(|| Error::Db("task insert returned no row".into()))
    }

    fn resolve_ssh_keys(
        &self,
        owner: i64,
        at: usize,
        names: &[String],
    ) -> Result<Vec<SshPublicKey>> {
        names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                self.q1(
                    "SELECT name, public_key FROM ssh_keys WHERE owner_id = ? AND name = ? AND deleted_at IS NULL",
                    &[owner.into(), name.into()],
                )?
                .map(|r| SshPublicKey { name: r.text(0), public_key: r.text(1) })
                .ok_or_else(|| {
                    Error::invalid(format!("instances[{at}].ssh_keys[{k}]"), format!("no SSH key named '{name}'"))
                })
            })
            .collect()
    }

    /// A live project of `owner` by name.
    pub(super) fn project_by_name(&self, owner: i64, name: &str) -> Result<Project> {
        let name = validate::name("name", name, 100)?;
        self.q1(
            &format!(
                "SELECT {} FROM projects WHERE owner_id = ? AND name = ? AND deleted_at IS NULL",
                Project::COLUMNS
            ),
            &[owner.into(), name.into()],
        )?
        .map(|r| Project::from_row(&r))
        .ok_or(Error::NotFound("project"))
    }

    pub(super) fn project_get(&self, c: &Caller, p: ProjectRef) -> Result<Project> {
        self.project_by_name(c.acting_for(p.owner_id)?, &p.name)
    }

    pub(super) fn project_list(&self, c: &Caller, p: OwnerList) -> Result<Page<Project>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "deleted_at IS NULL");
        self.page(
            Project::COLUMNS,
            "projects",
            &filter,
            args,
            "id",
            Project::from_row,
            |p| p.id,
            &p.page,
        )
    }

    /// Deletes at once when no machine is live; otherwise queues a delete_project task that
    /// destroys them and then marks the project deleted (`task.finish`). Repeat: same task.
    pub(super) fn project_delete(&self, c: &Caller, p: ProjectRef) -> Result<Outcome> {
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            let project = self.project_by_name(owner, &p.name)?;
            let ts = now();
            if project.status == "deleting" {
                let task = self.q1(
                    "SELECT id FROM tasks WHERE project_id = ? AND action = 'delete_project' \
                     AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1",
                    &[project.id.into()],
                )?;
                if let Some(t) = task {
                    return data(TaskQueued { task_id: Some(t.int(0)), instance_ids: self.task_instance_ids(t.int(0))? });
                }
            }
            let live = self.q(
                "SELECT id FROM instances WHERE project_id = ? AND status != 'terminated' ORDER BY id",
                &[project.id.into()],
            )?;
            let live: Vec<i64> = live.iter().map(|r| r.int(0)).collect();
            if live.is_empty() {
                self.q(
                    "UPDATE projects SET status = 'deleted', deleted_at = ?1, updated_at = ?1 WHERE id = ?2",
                    &[ts.into(), project.id.into()],
                )?;
                return data(TaskQueued::default());
            }
            // Creations still running would make machines behind the delete's back: their
            // workflows are told to stop and destroy what they made.
            let creating: Vec<i64> = self
                .q(
                    "SELECT id FROM tasks WHERE project_id = ? AND action = 'create_instances' \
                     AND status IN ('pending', 'running') ORDER BY id",
                    &[project.id.into()],
                )?
                .iter()
                .map(|r| r.int(0))
                .collect();
            let task_id = self.cover(owner, project.id, TaskAction::DeleteProject, &live, &ts)?;
            self.q(
                "UPDATE projects SET status = 'deleting', updated_at = ? WHERE id = ?",
                &[ts.into(), project.id.into()],
            )?;
            Ok(Outcome { data: Some(to_json(TaskQueued { task_id: Some(task_id), instance_ids: live })?), dispatch: vec![task_id], cancel: creating })
        })
    }

    /// A new task of `action` covering `instances` (which now point at it as their last task).
    pub(super) fn cover(
        &self,
        owner: i64,
        project_id: i64,
        action: TaskAction,
        instances: &[i64],
        ts: &str,
    ) -> Result<i64> {
        let task_id = self.insert_task(owner, project_id, action, ts)?;
        self.q(
            "INSERT INTO task_instances (task_id, instance_id) SELECT ?, value FROM json_each(?)",
            &[task_id.into(), id_list(instances)],
        )?;
        self.q(
            "UPDATE instances SET last_task_id = ?, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            &[task_id.into(), ts.into(), id_list(instances)],
        )?;
        Ok(task_id)
    }

    pub(super) fn task_instance_ids(&self, task_id: i64) -> Result<Vec<i64>> {
        let rows = self.q(
            "SELECT instance_id FROM task_instances WHERE task_id = ? ORDER BY instance_id",
            &[task_id.into()],
        )?;
        Ok(rows.iter().map(|r| r.int(0)).collect())
    }

    pub(super) fn project_list_instances(
        &self,
        c: &Caller,
        p: ProjectListInstances,
    ) -> Result<Page<Instance>> {
        let project = self.project_by_name(c.acting_for(p.owner_id)?, &p.name)?;
        let mut filter = "project_id = ?".to_owned();
        let mut args = vec![project.id.into()];
        if let Some(s) = p.status {
            filter.push_str(" AND status = ?");
            args.push(s.as_str().into());
        }
        self.page(
            Instance::COLUMNS,
            "instances",
            &filter,
            args,
            "id",
            Instance::from_row,
            |i| i.id,
            &p.page,
        )
    }

    pub(super) fn instance_create(
        &self,
        c: &Caller,
        p: InstanceCreate,
        raw: &Json,
    ) -> Result<Outcome> {
        if p.instances.is_empty() {
            return Err(Error::invalid(
                "instances",
                "at least one instance request is required",
            ));
        }
        let specs = validate::instance_requests(&p.instances, true)?;
        // Owner: the caller's (every element's owner_id must agree with it).
        let owners = specs
            .iter()
            .map(|s| c.acting_for(s.owner_id))
            .collect::<Result<Vec<_>>>()?;
        let owner = owners[0];
        if owners.iter().any(|o| *o != owner) {
            return Err(Error::invalid(
                "instances",
                "all elements must have the same owner_id",
            ));
        }
        let mut by_project: BTreeMap<&str, Vec<InstanceSpec>> = BTreeMap::new();
        for s in &specs {
            by_project
                .entry(s.project_name.as_str())
                .or_default()
                .push(s.clone());
        }
        self.tx(|| {
            self.idempotent(
                owner,
                "instance.create",
                p.idempotency_key.as_deref(),
                raw,
                || {
                    let mut task_ids = Vec::new();
                    let mut instances = Vec::new();
                    for (name, specs) in &by_project {
                        let project = self.project_by_name(owner, name)?;
                        let (task_id, _) = self.insert_instances(owner, &project, specs)?;
                        task_ids.push(task_id);
                        let rows = self.q(
                            &format!(
                                "SELECT {} FROM instances WHERE create_task_id = ? ORDER BY id",
                                Instance::COLUMNS
                            ),
                            &[task_id.into()],
                        )?;
                        instances.extend(rows.iter().map(Instance::from_row));
                    }
                    Ok((
                        to_json(InstancesCreated {
                            task_ids: task_ids.clone(),
                            instances,
                        })?,
                        task_ids,
                    ))
                },
            )
        })
    }

    pub(super) fn instance_get(&self, c: &Caller, p: InstanceGet) -> Result<Instance> {
        let id = validate::positive_id("id", p.id)?;
        let (filter, mut args) = owner_filter(c.scope(None)?, "id = ?");
        args.push(id.into());
        self.q1(
            &format!("SELECT {} FROM instances WHERE {filter}", Instance::COLUMNS),
            &args,
        )?
        .map(|r| Instance::from_row(&r))
        .ok_or(Error::NotFound("instance"))
    }

    fn instance_filter(&self, c: &Caller, p: &InstanceList) -> Result<(String, Vec<Value>)> {
        let scope = c.scope(p.owner_id)?;
        let mut clause = "1 = 1".to_owned();
        let mut extra: Vec<Value> = Vec::new();
        if let Some(name) = &p.project_name {
            let project = self.project_by_name(scope.unwrap_or(c.owner_id), name)?;
            clause.push_str(" AND project_id = ?");
            extra.push(project.id.into());
        }
        match p.status {
            Some(s) => {
                clause.push_str(" AND status = ?");
                extra.push(s.as_str().into());
            }
            None if !p.include_deleted => clause.push_str(" AND status != 'terminated'"),
            None => {}
        }
        let (filter, mut args) = owner_filter(scope, &clause);
        args.extend(extra);
        Ok((filter, args))
    }

    pub(super) fn instance_list(&self, c: &Caller, p: InstanceList) -> Result<Page<Instance>> {
        let (filter, args) = self.instance_filter(c, &p)?;
        self.page(
            Instance::COLUMNS,
            "instances",
            &filter,
            args,
            "id",
            Instance::from_row,
            |i| i.id,
            &p.page,
        )
    }

    pub(super) fn instance_public_ips(&self, c: &Caller, p: InstanceList) -> Result<PublicIps> {
        let (filter, args) = self.instance_filter(c, &p)?;
        let page = self.page(
            "id, public_ip",
            "instances",
            &filter,
            args,
            "id",
            |r| PublicIp {
                id: r.int(0),
                public_ip: r.text(1),
            },
            |p| p.id,
            &p.page,
        )?;
        Ok(PublicIps {
            public_ips: page.rows,
            pagination: page.pagination,
        })
    }

    /// Queues one terminate_instances task for the named live instances of a project.
    pub(super) fn instance_terminate(&self, c: &Caller, p: InstanceTerminate) -> Result<Outcome> {
        let owner = c.acting_for(p.owner_id)?;
        if p.instance_ids.is_empty() {
            return Err(Error::invalid(
                "instance_ids",
                "at least one instance id is required",
            ));
        }
        let mut ids = p
            .instance_ids
            .iter()
            .enumerate()
            .map(|(i, id)| validate::positive_id(&format!("instance_ids[{i}]"), *id))
            .collect::<Result<Vec<_>>>()?;
        ids.sort_unstable();
        ids.dedup();
        self.tx(|| {
            let project = self.project_by_name(owner, &p.project_name).map_err(|e| match e {
                Error::Invalid { reason, .. } => Error::invalid("project_name", reason),
                e => e,
            })?;
            let rows = self.q(
                "SELECT id, status FROM instances WHERE project_id = ? AND id IN (SELECT value FROM json_each(?))",
                &[project.id.into(), id_list(&ids)],
            )?;
            if rows.len() != ids.len() {
                return Err(Error::NotFound("instance"));
            }
            let live: Vec<i64> = rows
                .iter()
                .filter(|r| {
                    !matches!(r.text(1).parse(), Ok(InstanceStatus::Terminated | InstanceStatus::Terminating))
                })
                .map(|r| r.int(0))
                .collect();
            if live.is_empty() {
                return data(TaskQueued::default());
            }
            let task_id = self.cover(owner, project.id, TaskAction::TerminateInstances, &live, &now())?;
            Ok(Outcome {
                data: Some(to_json(TaskQueued { task_id: Some(task_id), instance_ids: live })?),
                dispatch: vec![task_id],
                cancel: Vec::new(),
            })
        })
    }
}

/// `owner_id = ? AND <rest>` for a scoped caller, `<rest>` for an unscoped admin.
pub(super) fn owner_filter(scope: Option<i64>, rest: &str) -> (String, Vec<Value>) {
    match scope {
        Some(owner) => (format!("owner_id = ? AND {rest}"), vec![owner.into()]),
        None => (rest.to_owned(), Vec::new()),
    }
}

fn json_text<T: serde::Serialize>(v: &T) -> Value {
    Value::Text(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

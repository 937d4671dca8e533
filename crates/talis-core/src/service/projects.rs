//! Project methods: create (with its instances, one transaction), read, list, delete.

use talis_api::TaskStatus;
use talis_api::decode::Valid;
use talis_api::methods::{Method, public as m};
use talis_api::{
    Instance, InstanceId, OwnerId, OwnerList, Page, Project, ProjectCreate, ProjectCreated,
    ProjectListInstances, ProjectRef, ProjectStatus, TaskAction, TaskId, TaskQueued,
};

use super::quotas::Quota;
use super::{PageQuery, Service, id_list, owner_filter};
use crate::auth::Caller;
use crate::db::RowExt;
use crate::{Error, Result, now, rows};

impl Service<'_> {
    pub(super) fn project_create(
        &self,
        c: &Caller,
        p: Valid<ProjectCreate>,
    ) -> Result<ProjectCreated> {
        let owner = c.acting_for(p.owner_id)?;
        let specs: Vec<_> = p.instances.iter().map(|r| r.spec()).enumerate().collect();
        self.check_per_call(specs.iter().map(|(_, s)| u64::from(s.count)).sum())?;
        self.tx(|| {
            self.idempotent(owner, m::ProjectCreate::NAME, p.idempotency_key.as_deref(), &*p, || {
                // The caller's own key was just resolved to a live user; only an admin acting
                // for someone else names an owner that may not exist.
                if owner != c.owner_id {
                    self.require_owner(owner)?;
                }
                self.check_quota(owner, Quota::Projects, 1)?;
                let ts = now();
                // Insert unless a live project has the name: one statement, checked under the lock.
                let row = self
                    .q1(
                        &format!(
                            "INSERT INTO projects (owner_id, name, description, config, created_at, updated_at) \
                             SELECT ?1, ?2, ?3, ?4, ?5, ?5 WHERE NOT EXISTS (SELECT 1 FROM projects \
                             WHERE owner_id = ?1 AND name = ?2 AND deleted_at IS NULL) RETURNING {}",
                            rows::PROJECT
                        ),
                        &[
                            owner.get().into(),
                            (&p.name).into(),
                            (&p.description).into(),
                            p.config.to_text().into(),
                            (&ts).into(),
                        ],
                    )?
                    .ok_or_else(|| Error::Conflict(format!("project '{}' already exists", p.name)))?;
                let project = rows::project(&row);
                let (task_id, instance_ids) = if specs.is_empty() {
                    (None, Vec::new())
                } else {
                    let (t, ids) = self.insert_instances(owner, &project, &specs)?;
                    (Some(t), ids)
                };
                Ok(ProjectCreated { project, task_id, instance_ids })
            })
        })
    }

    /// A live project of `owner` by name.
    pub(super) fn project_by_name(&self, owner: OwnerId, name: &str) -> Result<Project> {
        self.q1(
            &format!(
                "SELECT {} FROM projects WHERE owner_id = ? AND name = ? AND deleted_at IS NULL",
                rows::PROJECT
            ),
            &[owner.get().into(), name.into()],
        )?
        .map(|r| rows::project(&r))
        .ok_or(Error::NotFound("project"))
    }

    pub(super) fn project_get(&self, c: &Caller, p: Valid<ProjectRef>) -> Result<Project> {
        self.project_by_name(c.acting_for(p.owner_id)?, &p.name)
    }

    pub(super) fn project_list(&self, c: &Caller, p: Valid<OwnerList>) -> Result<Page<Project>> {
        let (filter, args) = owner_filter(c.scope(p.owner_id)?, "deleted_at IS NULL");
        let query = PageQuery {
            columns: rows::PROJECT,
            from: "projects",
            filter: &filter,
            id_col: "id",
        };
        self.page(
            query,
            args,
            rows::project,
            |p| p.id.get(),
            talis_api::Paged::paging(&*p),
        )
    }

    /// Sets a project's status through its state machine.
    pub(super) fn set_project_status(
        &self,
        project: &Project,
        to: ProjectStatus,
        ts: &str,
    ) -> Result<()> {
        project.status.transition(to)?;
        let deleted = (to == ProjectStatus::Deleted).then_some(ts);
        self.q(
            "UPDATE projects SET status = ?, deleted_at = COALESCE(?, deleted_at), updated_at = ? WHERE id = ?",
            &[to.as_str().into(), deleted.into(), ts.into(), project.id.get().into()],
        )?;
        Ok(())
    }

    /// Deletes at once when no machine is live; otherwise queues a delete_project task that
    /// destroys them and then marks the project deleted (`task.finish`). Repeat: same task.
    pub(super) fn project_delete(&self, c: &Caller, p: Valid<ProjectRef>) -> Result<TaskQueued> {
        let owner = c.acting_for(p.owner_id)?;
        self.tx(|| {
            let project = self.project_by_name(owner, &p.name)?;
            let ts = now();
            if project.status == ProjectStatus::Deleting {
                let task = self.q1(
                    "SELECT id FROM tasks WHERE project_id = ? AND action = ? AND status IN ('pending', 'running') \
                     ORDER BY id DESC LIMIT 1",
                    &[project.id.get().into(), TaskAction::DeleteProject.as_str().into()],
                )?;
                if let Some(t) = task {
                    let task_id = TaskId::from_db(t.int(0));
                    return Ok(TaskQueued { task_id: Some(task_id), instance_ids: self.task_instance_ids(task_id)? });
                }
            }
            let live: Vec<InstanceId> = self
                .q("SELECT id FROM instances WHERE project_id = ? AND status != 'terminated' ORDER BY id", &[
                    project.id.get().into(),
                ])?
                .iter()
                .map(|r| InstanceId::from_db(r.int(0)))
                .collect();
            if live.is_empty() {
                self.set_project_status(&project, ProjectStatus::Deleted, &ts)?;
                return Ok(TaskQueued::default());
            }
            // Creations still going would make machines behind the delete's back: they end
            // `terminated` in this transaction, and their workflows are told to stop and destroy
            // what they made.
            let creating: Vec<TaskId> = self
                .q(
                    "SELECT id FROM tasks WHERE project_id = ? AND action = ? AND status IN ('pending', 'running') ORDER BY id",
                    &[project.id.into(), TaskAction::CreateInstances.as_str().into()],
                )?
                .iter()
                .map(|r| TaskId::from_db(r.int(0)))
                .collect();
            for &t in &creating {
                let task = self.task_scoped(None, t)?;
                self.set_task_status(&task, TaskStatus::Terminated, None, Some("the project is being deleted"))?;
                if task.status == TaskStatus::Running {
                    self.cancel_after_commit([t]);
                }
            }
            let task_id = self.cover(owner, &project, TaskAction::DeleteProject, &live, &ts)?;
            self.set_project_status(&project, ProjectStatus::Deleting, &ts)?;
            Ok(TaskQueued { task_id: Some(task_id), instance_ids: live })
        })
    }

    /// A new task of `action` covering `instances` (which now point at it as their last task),
    /// dispatched after commit.
    pub(super) fn cover(
        &self,
        owner: OwnerId,
        project: &Project,
        action: TaskAction,
        instances: &[InstanceId],
        ts: &str,
    ) -> Result<TaskId> {
        let task_id = self.insert_task(owner, project, action, ts)?;
        let ids = id_list(instances.iter().map(|i| i.get()));
        self.q(
            "INSERT INTO task_instances (task_id, instance_id) SELECT ?, value FROM json_each(?)",
            &[task_id.get().into(), ids.clone()],
        )?;
        self.q(
            "UPDATE instances SET last_task_id = ?, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
            &[task_id.get().into(), ts.into(), ids],
        )?;
        self.dispatch_after_commit(task_id);
        Ok(task_id)
    }

    pub(super) fn task_instance_ids(&self, task: TaskId) -> Result<Vec<InstanceId>> {
        let rows = self.q(
            "SELECT instance_id FROM task_instances WHERE task_id = ? ORDER BY instance_id",
            &[task.get().into()],
        )?;
        Ok(rows.iter().map(|r| InstanceId::from_db(r.int(0))).collect())
    }

    pub(super) fn project_list_instances(
        &self,
        c: &Caller,
        p: Valid<ProjectListInstances>,
    ) -> Result<Page<Instance>> {
        let project = self.project_by_name(c.acting_for(p.owner_id)?, &p.name)?;
        let mut filter = "project_id = ?".to_owned();
        let mut args = vec![project.id.get().into()];
        if let Some(s) = p.status {
            filter.push_str(" AND status = ?");
            args.push(s.as_str().into());
        }
        let query = PageQuery {
            columns: rows::INSTANCE,
            from: "instances",
            filter: &filter,
            id_col: "id",
        };
        self.page(
            query,
            args,
            rows::instance,
            |i| i.id.get(),
            talis_api::Paged::paging(&*p),
        )
    }
}

//! Task reads and owner-side task changes.

use super::Service;
use super::projects::owner_filter;
use crate::auth::Caller;
use crate::db::Value;
use crate::model::Task;
use crate::params::*;
use crate::status::TaskStatus;
use crate::{Error, Result, now, validate};

impl Service<'_> {
    /// A task visible to the caller (another owner's task is "not found").
    pub(super) fn task_scoped(&self, scope: Option<i64>, task_id: i64) -> Result<Task> {
        let (filter, mut args) = owner_filter(scope, "t.id = ?");
        args.push(task_id.into());
        self.q1(
            &format!(
                "SELECT {} FROM tasks t WHERE {}",
                Task::COLUMNS,
                filter.replace("owner_id", "t.owner_id")
            ),
            &args,
        )?
        .map(|r| Task::from_row(&r).with_ui_link(&self.cfg.restate_ui_url))
        .ok_or(Error::NotFound("task"))
    }

    fn with_ui_links(&self, mut page: Page<Task>) -> Page<Task> {
        page.rows = page
            .rows
            .into_iter()
            .map(|t| t.with_ui_link(&self.cfg.restate_ui_url))
            .collect();
        page
    }

    pub(super) fn task_get(&self, c: &Caller, p: TaskRef) -> Result<Task> {
        let id = validate::positive_id("task_id", p.task_id)?;
        self.task_scoped(c.scope(p.owner_id)?, id)
    }

    pub(super) fn task_list(&self, c: &Caller, p: TaskList) -> Result<Page<Task>> {
        let owner = c.acting_for(p.owner_id)?;
        let project = self
            .project_by_name(owner, &p.project_name)
            .map_err(|e| match e {
                Error::Invalid { reason, .. } => Error::invalid("projectName", reason),
                e => e,
            })?;
        self.page(
            Task::COLUMNS,
            "tasks t",
            "t.project_id = ?",
            vec![project.id.into()],
            "t.id",
            Task::from_row,
            |t| t.id,
            &p.page,
        )
        .map(|page| self.with_ui_links(page))
    }

    pub(super) fn task_list_by_instance(
        &self,
        c: &Caller,
        p: TaskListByInstance,
    ) -> Result<Page<Task>> {
        let instance_id = validate::positive_id("instance_id", p.instance_id)?;
        // Resolves the instance first so another owner's instance is a 404, not an empty list.
        self.instance_get(
            c,
            InstanceGet {
                id: instance_id as u64,
            },
        )
        .and_then(|i| {
            if c.scope(p.owner_id)?.is_some_and(|o| o != i.owner_id) {
                return Err(Error::NotFound("instance"));
            }
            Ok(())
        })?;
        let mut filter = "x.instance_id = ?".to_owned();
        let mut args: Vec<Value> = vec![instance_id.into()];
        if let Some(a) = p.action {
            filter.push_str(" AND t.action = ?");
            args.push(a.as_str().into());
        }
        self.page(
            Task::COLUMNS,
            "tasks t JOIN task_instances x ON x.task_id = t.id",
            &filter,
            args,
            "t.id",
            Task::from_row,
            |t| t.id,
            &p.page,
        )
        .map(|page| self.with_ui_links(page))
    }

    /// Stops a task: pending or running → terminated (the workflow sees it at its next step).
    pub(super) fn task_terminate(&self, c: &Caller, p: TaskRef) -> Result<Task> {
        let id = validate::positive_id("task_id", p.task_id)?;
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let task = self.task_scoped(scope, id)?;
            self.set_task_status(&task, TaskStatus::Terminated, None, None)?;
            self.task_scoped(scope, id)
        })
    }

    /// Admin-only: any legal transition (the original declared this method but never routed it).
    pub(super) fn task_update_status(&self, c: &Caller, p: TaskUpdateStatus) -> Result<Task> {
        let id = validate::positive_id("task_id", p.task_id)?;
        let status = p
            .status
            .ok_or_else(|| Error::invalid("status", "is required"))?;
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let task = self.task_scoped(scope, id)?;
            self.set_task_status(&task, status, None, None)?;
            self.task_scoped(scope, id)
        })
    }

    /// Applies a checked task transition; on a terminal status, records result/error and the
    /// project consequences of a finished delete_project task.
    pub(super) fn set_task_status(
        &self,
        task: &Task,
        to: TaskStatus,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<()> {
        task.status.transition(to)?;
        if task.status == to {
            return Ok(());
        }
        let ts = now();
        let finished = to.is_terminal().then_some(ts.as_str());
        self.q(
            "UPDATE tasks SET status = ?, updated_at = ?, finished_at = COALESCE(?, finished_at), \
             result = COALESCE(?, result), error = CASE WHEN ? IS NULL THEN error ELSE ? END WHERE id = ?",
            &[
                to.as_str().into(),
                (&ts).into(),
                finished.into(),
                result.map(|r| r.to_string()).into(),
                error.into(),
                error.into(),
                task.id.into(),
            ],
        )?;
        if task.action == crate::status::TaskAction::DeleteProject && to.is_terminal() {
            // Completed: the machines are gone, the project goes. Otherwise it stays usable.
            let (status, deleted) = if to == TaskStatus::Completed {
                ("deleted", Some(ts.as_str()))
            } else {
                ("active", None)
            };
            self.q(
                "UPDATE projects SET status = ?, deleted_at = ?, updated_at = ? WHERE id = ?",
                &[
                    status.into(),
                    deleted.into(),
                    (&ts).into(),
                    task.project_id.into(),
                ],
            )?;
        }
        Ok(())
    }
}

//! Task reads and owner-side task changes.

use talis_api::decode::Valid;
use talis_api::{
    InstanceId, OwnerId, Page, Paged, ProjectStatus, Task, TaskAction, TaskId, TaskList,
    TaskListByInstance, TaskRef, TaskStatus, TaskUpdateStatus,
};

use super::events::On;
use super::{PageQuery, Service, owner_filter};
use crate::auth::Caller;
use crate::db::Value;
use crate::{Result, now, rows};
use talis_api::events::{EventBody, TaskStatusData};

impl Service<'_> {
    /// A task visible to `scope` (another owner's task is "not found").
    pub(super) fn task_scoped(&self, scope: Option<OwnerId>, task: TaskId) -> Result<Task> {
        let (filter, mut args) = owner_filter(scope, "t.id = ?");
        args.push(task.get().into());
        self.q1(
            &format!(
                "SELECT {} FROM tasks t WHERE {}",
                rows::TASK,
                filter.replace("owner_id", "t.owner_id")
            ),
            &args,
        )?
        .map(|r| rows::task(&r, &self.cfg.restate_ui_url))
        .ok_or(crate::Error::NotFound("task"))
    }

    /// A task with its history (`logs`, rendered from its events).
    pub(super) fn task_get(&self, c: &Caller, p: Valid<TaskRef>) -> Result<Task> {
        let task = self.task_scoped(c.scope(p.owner_id)?, p.task_id)?;
        Ok(Task {
            logs: self.task_logs(task.id)?,
            ..task
        })
    }

    /// Records a task's status change (or creation, `from` None) as an event.
    pub(super) fn task_status_event(
        &self,
        task: &Task,
        from: Option<TaskStatus>,
        to: TaskStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let body = EventBody::TaskStatus(TaskStatusData {
            from,
            to,
            error: error.map(str::to_owned),
        });
        let on = On {
            owner: Some(task.owner_id),
            project: Some(task.project_id),
            task: Some(task.id),
            instance: None,
        };
        self.record_event(on, &body, None).map(drop)
    }

    pub(super) fn task_list(&self, c: &Caller, p: Valid<TaskList>) -> Result<Page<Task>> {
        let project = self.project_by_name(c.acting_for(p.owner_id)?, &p.project_name)?;
        let query = PageQuery {
            columns: rows::TASK,
            from: "tasks t",
            filter: "t.project_id = ?",
            id_col: "t.id",
        };
        let ui = &self.cfg.restate_ui_url;
        self.page(
            query,
            vec![project.id.get().into()],
            |r| rows::task(r, ui),
            |t| t.id.get(),
            p.paging(),
        )
    }

    pub(super) fn task_list_by_instance(
        &self,
        c: &Caller,
        p: Valid<TaskListByInstance>,
    ) -> Result<Page<Task>> {
        // Resolves the instance first so another owner's instance is a 404, not an empty list.
        self.instance_scoped(c.scope(p.owner_id)?, p.instance_id)?;
        let mut filter = "x.instance_id = ?".to_owned();
        let mut args: Vec<Value> = vec![p.instance_id.get().into()];
        if let Some(a) = p.action {
            filter.push_str(" AND t.action = ?");
            args.push(a.as_str().into());
        }
        let query = PageQuery {
            columns: rows::TASK,
            from: "tasks t JOIN task_instances x ON x.task_id = t.id",
            filter: &filter,
            id_col: "t.id",
        };
        let ui = &self.cfg.restate_ui_url;
        self.page(
            query,
            args,
            |r| rows::task(r, ui),
            |t| t.id.get(),
            p.paging(),
        )
    }

    /// Stops a task: pending or running → terminated; its workflow is told to stop and destroy
    /// what it made once this commits.
    pub(super) fn task_terminate(&self, c: &Caller, p: Valid<TaskRef>) -> Result<Task> {
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let task = self.task_scoped(scope, p.task_id)?;
            self.set_task_status(&task, TaskStatus::Terminated, None, None)?;
            if task.status == TaskStatus::Running {
                self.cancel_after_commit([task.id]);
            }
            self.task_scoped(scope, p.task_id)
        })
    }

    /// Admin-only: any legal transition (the original declared this method but never routed it).
    pub(super) fn task_update_status(
        &self,
        c: &Caller,
        p: Valid<TaskUpdateStatus>,
    ) -> Result<Task> {
        let scope = c.scope(p.owner_id)?;
        self.tx(|| {
            let task = self.task_scoped(scope, p.task_id)?;
            self.set_task_status(&task, p.status, None, None)?;
            self.task_scoped(scope, p.task_id)
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
        // A running workflow must hear that its task was stopped; the cancel is delivered after
        // commit and sent again by the sweep until the workflow engine has taken it.
        let cancel = (to == TaskStatus::Terminated && task.status == TaskStatus::Running)
            .then_some(ts.as_str());
        self.q(
            "UPDATE tasks SET status = ?, updated_at = ?, finished_at = COALESCE(?, finished_at), \
             cancel_requested_at = COALESCE(?, cancel_requested_at), \
             result = COALESCE(?, result), error = COALESCE(?, error) WHERE id = ?",
            &[
                to.as_str().into(),
                (&ts).into(),
                finished.into(),
                cancel.into(),
                result.map(|r| r.to_string()).into(),
                error.into(),
                task.id.get().into(),
            ],
        )?;
        if finished.is_some() {
            // Phone-homes kept for droplets the task never recorded are nobody's now.
            self.q(
                "DELETE FROM early_phone_homes WHERE task_id = ?",
                &[task.id.get().into()],
            )?;
        }
        self.task_status_event(task, Some(task.status), to, error)?;
        if task.action == TaskAction::DeleteProject && to.is_terminal() {
            let project = self.project_by_id(task.project_id)?;
            self.set_project_status(&project, ProjectStatus::after_delete_task(to), &ts)?;
        }
        Ok(())
    }

    /// Instances a task covers, by id.
    pub(super) fn covers(&self, task: TaskId, instance: InstanceId) -> Result<bool> {
        Ok(self
            .q1(
                "SELECT 1 FROM task_instances WHERE task_id = ? AND instance_id = ?",
                &[task.get().into(), instance.get().into()],
            )?
            .is_some())
    }
}

//! Instance methods: create in existing projects, read, list, public IPs, terminate.

use std::collections::BTreeMap;

use talis_api::decode::Valid;
use talis_api::methods::{Method, public as m};
use talis_api::{
    Instance, InstanceCreate, InstanceGet, InstanceId, InstanceList, InstanceStatus,
    InstanceTerminate, InstancesCreated, OwnerId, Page, Paged, PublicIp, PublicIps, TaskAction,
    TaskQueued,
};

use super::{PageQuery, Service, id_list, owner_filter};
use crate::auth::Caller;
use crate::db::{RowExt, Value};
use crate::{Error, Result, now, rows};

impl Service<'_> {
    /// One create_instances task per (owner, project) named in the call.
    pub(super) fn instance_create(
        &self,
        c: &Caller,
        p: Valid<InstanceCreate>,
    ) -> Result<InstancesCreated> {
        self.check_per_call(
            p.instances
                .iter()
                .map(|r| u64::from(r.number_of_instances))
                .sum(),
        )?;
        let mut by_project: BTreeMap<(OwnerId, &str), Vec<_>> = BTreeMap::new();
        for (at, r) in p.instances.iter().enumerate() {
            let owner = c.acting_for(r.owner_id)?;
            by_project
                .entry((owner, r.project_name.as_str()))
                .or_default()
                .push((at, r.spec()));
        }
        // Idempotency is per the caller's key space.
        let key_owner = c.acting_for(None)?;
        self.tx(|| {
            self.idempotent(
                key_owner,
                m::InstanceCreate::NAME,
                p.idempotency_key.as_deref(),
                &*p,
                || {
                    let mut task_ids = Vec::new();
                    let mut instances = Vec::new();
                    for ((owner, name), specs) in &by_project {
                        let project = self.project_by_name(*owner, name)?;
                        let (task_id, _) = self.insert_instances(*owner, &project, specs)?;
                        task_ids.push(task_id);
                        let rows = self.q(
                            &format!(
                                "SELECT {} FROM instances WHERE create_task_id = ? ORDER BY id",
                                rows::INSTANCE
                            ),
                            &[task_id.get().into()],
                        )?;
                        instances.extend(rows.iter().map(rows::instance));
                    }
                    Ok(InstancesCreated {
                        task_ids,
                        instances,
                    })
                },
            )
        })
    }

    pub(super) fn instance_get(&self, c: &Caller, p: Valid<InstanceGet>) -> Result<Instance> {
        self.instance_scoped(c.scope(None)?, p.id)
    }

    /// An instance visible to `scope` (another owner's is "not found").
    pub(super) fn instance_scoped(
        &self,
        scope: Option<OwnerId>,
        id: InstanceId,
    ) -> Result<Instance> {
        let (filter, mut args) = owner_filter(scope, "id = ?");
        args.push(id.get().into());
        self.q1(
            &format!("SELECT {} FROM instances WHERE {filter}", rows::INSTANCE),
            &args,
        )?
        .map(|r| rows::instance(&r))
        .ok_or(Error::NotFound("instance"))
    }

    fn instance_filter(&self, c: &Caller, p: &InstanceList) -> Result<(String, Vec<Value>)> {
        let scope = c.scope(p.owner_id)?;
        let mut clause = "1 = 1".to_owned();
        let mut extra: Vec<Value> = Vec::new();
        if let Some(name) = &p.project_name {
            let project = self.project_by_name(scope.unwrap_or(c.owner_id), name)?;
            clause.push_str(" AND project_id = ?");
            extra.push(project.id.get().into());
        }
        match p.status {
            Some(s) => {
                clause.push_str(" AND status = ?");
                extra.push(s.as_str().into());
            }
            None if !p.include_deleted => {
                clause.push_str(" AND status != ?");
                extra.push(InstanceStatus::Terminated.as_str().into());
            }
            None => {}
        }
        let (filter, mut args) = owner_filter(scope, &clause);
        args.extend(extra);
        Ok((filter, args))
    }

    pub(super) fn instance_list(
        &self,
        c: &Caller,
        p: Valid<InstanceList>,
    ) -> Result<Page<Instance>> {
        let (filter, args) = self.instance_filter(c, &p)?;
        let query = PageQuery {
            columns: rows::INSTANCE,
            from: "instances",
            filter: &filter,
            id_col: "id",
        };
        self.page(query, args, rows::instance, |i| i.id.get(), p.paging())
    }

    pub(super) fn instance_metadata(
        &self,
        c: &Caller,
        p: Valid<InstanceList>,
    ) -> Result<Page<Instance>> {
        self.instance_list(c, p)
    }

    pub(super) fn instance_public_ips(
        &self,
        c: &Caller,
        p: Valid<InstanceList>,
    ) -> Result<PublicIps> {
        let (filter, args) = self.instance_filter(c, &p)?;
        let query = PageQuery {
            columns: "id, public_ip",
            from: "instances",
            filter: &filter,
            id_col: "id",
        };
        let page = self.page(
            query,
            args,
            |r| PublicIp {
                id: InstanceId::from_db(r.int(0)),
                public_ip: r.text(1),
            },
            |p| p.id.get(),
            p.paging(),
        )?;
        Ok(PublicIps {
            public_ips: page.rows,
            pagination: page.pagination,
        })
    }

    /// Queues one terminate_instances task for the named live instances of a project.
    pub(super) fn instance_terminate(
        &self,
        c: &Caller,
        p: Valid<InstanceTerminate>,
    ) -> Result<TaskQueued> {
        let owner = c.acting_for(p.owner_id)?;
        let mut ids: Vec<InstanceId> = p.instance_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        self.tx(|| {
            let project = self.project_by_name(owner, &p.project_name)?;
            let rows = self.q(
                "SELECT id, status FROM instances WHERE project_id = ? AND id IN (SELECT value FROM json_each(?))",
                &[project.id.get().into(), id_list(ids.iter().map(|i| i.get()))],
            )?;
            if rows.len() != ids.len() {
                return Err(Error::NotFound("instance"));
            }
            let live: Vec<InstanceId> = rows
                .iter()
                .filter(|r| !r.text(1).parse::<InstanceStatus>().is_ok_and(InstanceStatus::is_going))
                .map(|r| InstanceId::from_db(r.int(0)))
                .collect();
            if live.is_empty() {
                return Ok(TaskQueued::default());
            }
            let task_id = self.cover(owner, &project, TaskAction::TerminateInstances, &live, &now())?;
            Ok(TaskQueued { task_id: Some(task_id), instance_ids: live })
        })
    }
}

//! One typed method per public RPC method. Params and results are the wire types of
//! `talis-api`; nothing is redefined here.

use crate::wire::*;
use crate::{Client, Result};

macro_rules! rpc {
    ($( $(#[$doc:meta])* $name:ident => $method:literal ($params:ty) -> $result:ty; )+) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&self, params: &$params) -> Result<$result> {
                    self.call($method, params).await
                }
            )+
        }

        /// Every public method name this client implements, in declaration order.
        pub const METHODS: &[&str] = &[$($method),+];
    };
}

rpc! {
    /// Creates a project, optionally with instances (one transaction; one create task).
    project_create => "project.create" (ProjectCreate) -> ProjectCreated;
    project_get => "project.get" (ProjectRef) -> Project;
    project_list => "project.list" (OwnerList) -> Page<Project>;
    /// Deletes a project; its live instances are terminated first by a task.
    project_delete => "project.delete" (ProjectRef) -> TaskQueued;
    project_list_instances => "project.listInstances" (ProjectListInstances) -> Page<Instance>;
    task_get => "task.get" (TaskRef) -> Task;
    task_list => "task.list" (TaskList) -> Page<Task>;
    /// Stops a task: a pending task ends at once, a running one at its next step.
    task_terminate => "task.terminate" (TaskRef) -> Task;
    /// Admin only.
    task_update_status => "task.updateStatus" (TaskUpdateStatus) -> Task;
    task_list_by_instance => "task.listByInstance" (TaskListByInstance) -> Page<Task>;
    /// Admin only. The answer carries the new user's first API key (shown only once).
    user_create => "user.create" (UserCreate) -> UserCreated;
    user_get => "user.get" (UserGet) -> UserGetResult;
    user_get_id => "user.get.id" (IdRef) -> User;
    /// Admin only.
    user_delete => "user.delete" (IdRef) -> ();
    sshkey_create => "sshkey.create" (SshKeyCreate) -> SshKey;
    sshkey_list => "sshkey.list" (OwnerList) -> Page<SshKey>;
    sshkey_delete => "sshkey.delete" (SshKeyDelete) -> ();
    /// The answer carries the key itself (shown only once).
    apikey_create => "apikey.create" (ApiKeyCreate) -> ApiKeyCreated;
    apikey_list => "apikey.list" (OwnerList) -> Page<ApiKey>;
    apikey_revoke => "apikey.revoke" (IdRef) -> ();
    /// The original's `POST /api/v1/instances`: instances in existing projects.
    instance_create => "instance.create" (InstanceCreate) -> InstancesCreated;
    instance_list => "instance.list" (InstanceList) -> Page<Instance>;
    instance_get => "instance.get" (InstanceGet) -> Instance;
    /// The original's `DELETE /api/v1/instances`.
    instance_terminate => "instance.terminate" (InstanceTerminate) -> TaskQueued;
    instance_public_ips => "instance.publicIps" (InstanceList) -> PublicIps;
}

impl Client {
    /// Every instance matching `filter`, following `next_cursor` across pages of the largest size.
    pub async fn instance_list_all(&self, filter: &InstanceList) -> Result<Vec<Instance>> {
        let mut params = filter.clone();
        params.page.limit = Some(1000);
        params.page.page = None;
        let mut rows = Vec::new();
        loop {
            let page = self.instance_list(&params).await?;
            rows.extend(page.rows);
            match page.pagination.next_cursor {
                Some(c) => params.page.cursor = Some(c),
                None => return Ok(rows),
            }
        }
    }

    /// Every project of the caller (all pages).
    pub async fn project_list_all(&self) -> Result<Vec<Project>> {
        let mut params = OwnerList::default();
        params.page.limit = Some(1000);
        let mut rows = Vec::new();
        loop {
            let page = self.project_list(&params).await?;
            rows.extend(page.rows);
            match page.pagination.next_cursor {
                Some(c) => params.page.cursor = Some(c),
                None => return Ok(rows),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_public_server_method_has_a_client_method() {
        for (method, _) in talis_api::METHODS {
            // `instance.metadata` is the original's alias of `instance.list`.
            assert!(
                super::METHODS.contains(method) || *method == "instance.metadata",
                "the client has no method for {method}"
            );
        }
    }
}

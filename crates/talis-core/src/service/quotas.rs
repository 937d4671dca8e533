//! Per-owner quotas: no owner may exhaust what owners share (the cloud account's machine limit
//! and budget, the database). Checked inside the transaction that would exceed them, so an
//! over-quota call writes nothing and names the quota, its limit, the use and the request.

use talis_api::decode::Valid;
use talis_api::rules::MAX_INSTANCES_PER_CALL;
use talis_api::{InstanceStatus, OwnerId, QuotaGet, QuotaSet, QuotaUsage, Quotas};

use super::Service;
use crate::auth::Caller;
use crate::db::RowExt;
use crate::settings;
use crate::{Error, Result, now};

/// One of an owner's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quota {
    Instances,
    Projects,
    ApiKeys,
    SshKeys,
    Webhooks,
}

impl Quota {
    /// The quota's name: the Spin variable holding its default.
    fn name(self) -> &'static str {
        match self {
            Quota::Instances => settings::MAX_INSTANCES_PER_OWNER,
            Quota::Projects => settings::MAX_PROJECTS_PER_OWNER,
            Quota::ApiKeys => settings::MAX_API_KEYS_PER_OWNER,
            Quota::SshKeys => settings::MAX_SSH_KEYS_PER_OWNER,
            Quota::Webhooks => settings::MAX_WEBHOOKS_PER_OWNER,
        }
    }

    fn of(self, q: &Quotas) -> u32 {
        match self {
            Quota::Instances => q.max_instances,
            Quota::Projects => q.max_projects,
            Quota::ApiKeys => q.max_api_keys,
            Quota::SshKeys => q.max_ssh_keys,
            Quota::Webhooks => q.max_webhooks,
        }
    }

    /// How much of it `owner` uses now.
    fn used(self, svc: &Service<'_>, owner: OwnerId) -> Result<u32> {
        let (sql, extra) = match self {
            Quota::Instances => (
                "SELECT COUNT(*) FROM instances WHERE owner_id = ? AND status != ?",
                Some(InstanceStatus::Terminated.as_str()),
            ),
            Quota::Projects => (
                "SELECT COUNT(*) FROM projects WHERE owner_id = ? AND deleted_at IS NULL",
                None,
            ),
            Quota::ApiKeys => (
                "SELECT COUNT(*) FROM api_keys WHERE owner_id = ? AND revoked_at IS NULL",
                None,
            ),
            Quota::SshKeys => (
                "SELECT COUNT(*) FROM ssh_keys WHERE owner_id = ? AND deleted_at IS NULL",
                None,
            ),
            Quota::Webhooks => (
                "SELECT COUNT(*) FROM webhooks WHERE owner_id = ? AND deleted_at IS NULL",
                None,
            ),
        };
        let mut args = vec![owner.into()];
        args.extend(extra.map(Into::into));
        Ok(crate::db::scalar(svc.db, sql, &args)? as u32)
    }
}

impl Service<'_> {
    /// The limits in force for `owner`: its overrides, else the deployment's defaults.
    fn limits(&self, owner: OwnerId) -> Result<Quotas> {
        let d = self.cfg.quotas;
        let Some(r) = self.q1(
            "SELECT max_instances, max_projects, max_api_keys, max_ssh_keys, max_webhooks FROM quotas WHERE owner_id = ?",
            &[owner.into()],
        )?
        else {
            return Ok(d);
        };
        let or = |i: usize, default: u32| r.opt_int(i).map_or(default, |v| v as u32);
        Ok(Quotas {
            max_instances: or(0, d.max_instances),
            max_projects: or(1, d.max_projects),
            max_api_keys: or(2, d.max_api_keys),
            max_ssh_keys: or(3, d.max_ssh_keys),
            max_webhooks: or(4, d.max_webhooks),
        })
    }

    /// Refuses `requested` more of `quota` when it would take `owner` over its limit. Called
    /// inside the transaction that adds them.
    pub(crate) fn check_quota(&self, owner: OwnerId, quota: Quota, requested: u32) -> Result<()> {
        let limit = quota.of(&self.limits(owner)?);
        let used = quota.used(self, owner)?;
        if u64::from(used) + u64::from(requested) > u64::from(limit) {
            return Err(Error::QuotaExceeded {
                quota: quota.name(),
                limit: i64::from(limit),
                used: i64::from(used),
                requested: i64::from(requested),
            });
        }
        Ok(())
    }

    /// One call makes at most [`MAX_INSTANCES_PER_CALL`] machines, whatever the owner's quota
    /// (a larger create would be one very large transaction).
    pub(crate) fn check_per_call(&self, requested: u64) -> Result<()> {
        if requested > u64::from(MAX_INSTANCES_PER_CALL) {
            return Err(Error::QuotaExceeded {
                quota: "max_instances_per_call",
                limit: i64::from(MAX_INSTANCES_PER_CALL),
                used: 0,
                requested: requested as i64,
            });
        }
        Ok(())
    }

    fn usage(&self, owner: OwnerId) -> Result<QuotaUsage> {
        let used = Quotas {
            max_instances: Quota::Instances.used(self, owner)?,
            max_projects: Quota::Projects.used(self, owner)?,
            max_api_keys: Quota::ApiKeys.used(self, owner)?,
            max_ssh_keys: Quota::SshKeys.used(self, owner)?,
            max_webhooks: Quota::Webhooks.used(self, owner)?,
        };
        Ok(QuotaUsage {
            owner_id: owner,
            limits: self.limits(owner)?,
            used,
        })
    }

    pub(super) fn quota_get(&self, c: &Caller, p: Valid<QuotaGet>) -> Result<QuotaUsage> {
        self.usage(c.acting_for(p.owner_id)?)
    }

    pub(super) fn quota_set(&self, _: &Caller, p: Valid<QuotaSet>) -> Result<QuotaUsage> {
        self.tx(|| {
            self.require_owner(p.owner_id)?;
            self.q(
                "INSERT INTO quotas (owner_id, max_instances, max_projects, max_api_keys, max_ssh_keys, max_webhooks, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6) ON CONFLICT (owner_id) DO UPDATE SET max_instances = ?2, \
                 max_projects = ?3, max_api_keys = ?4, max_ssh_keys = ?5, max_webhooks = ?7, updated_at = ?6",
                &[
                    p.owner_id.into(),
                    p.max_instances.map(i64::from).into(),
                    p.max_projects.map(i64::from).into(),
                    p.max_api_keys.map(i64::from).into(),
                    p.max_ssh_keys.map(i64::from).into(),
                    now().into(),
                    p.max_webhooks.map(i64::from).into(),
                ],
            )?;
            self.usage(p.owner_id)
        })
    }
}

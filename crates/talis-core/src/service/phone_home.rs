//! Phone-home: a machine reports that its provisioning script ran. The report is untrusted
//! input: the URL's token must be valid, unexpired and made for this task and instance, and the
//! reporting machine must be one of the task's. It is applied in the database directly (no
//! workflow state per machine); the task's workflow sees it at its next look.

use talis_api::decode::Valid;
use talis_api::internal::{InstanceTransition, PhoneHomeBody, PhoneHomeStatus};
use talis_api::phone_home::{self, Refused};
use talis_api::{InstanceId, InstanceStatus, TaskId};

use super::Service;
use crate::db::RowExt;
use crate::{Error, Result};

/// How long a machine waits before reporting again when its record is not there yet.
pub const RETRY_AFTER_SECS: u32 = 2;

/// Step name of the events phone-homes record.
pub const STEP: &str = "phone home";

/// What a phone-home URL carries besides the instance in its path.
#[derive(Clone, Debug)]
pub struct PhoneHomeToken<'a> {
    pub task: TaskId,
    pub expires: i64,
    pub token: &'a str,
}

/// What was done with a report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PhoneHomeApplied {
    pub task_id: TaskId,
    pub instance_id: InstanceId,
    pub status: InstanceStatus,
    /// The same report had been applied before.
    pub duplicate: bool,
}

impl Service<'_> {
    /// Checks and applies one report for `instance`'s URL. The token is checked before the
    /// body is read, so an anonymous poster learns nothing about what a body should hold.
    pub fn phone_home(
        &self,
        instance: InstanceId,
        t: PhoneHomeToken<'_>,
        body: impl FnOnce() -> Result<serde_json::Value>,
    ) -> Result<PhoneHomeApplied> {
        let now = chrono::Utc::now().timestamp();
        phone_home::verify(
            &self.cfg.internal_secret,
            t.task.get(),
            instance.get(),
            t.expires,
            t.token,
            now,
        )
        .map_err(|r| match r {
            Refused::BadToken => Error::Unauthorized,
            Refused::Expired => Error::Forbidden(
                "this phone-home URL has expired (its provision timeout passed)".into(),
            ),
        })?;
        let body: Valid<PhoneHomeBody> = talis_api::decode::decode(body()?)?;
        let applied = self.tx(|| {
            let task = self.task_scoped(None, t.task)?;
            let droplet = body.droplet_id.to_string();
            // `provider_ref != ''` lets SQLite use the partial index on provider_ref (it cannot
            // tell that a parameter is not ''): without it, every report scanned every instance.
            let Some(row) = self.q1(
                "SELECT i.id, i.status FROM instances i WHERE i.provider_ref = ? AND i.provider_ref != '' \
                 AND EXISTS (SELECT 1 FROM task_instances x WHERE x.task_id = ? AND x.instance_id = i.id)",
                &[droplet.as_str().into(), task.id.into()],
            )?
            else {
                // Not (yet) one of the task's machines: while some are still being made, the
                // record may simply not be written yet (the report is kept, and applied when
                // it is); otherwise it is none of ours.
                let making = self
                    .q1(
                        "SELECT 1 FROM task_instances x JOIN instances i ON i.id = x.instance_id \
                         WHERE x.task_id = ? AND i.status = ? LIMIT 1",
                        &[task.id.into(), InstanceStatus::Pending.as_str().into()],
                    )?
                    .is_some();
                if !making || task.status.is_terminal() {
                    return Err(Error::NotFound("machine of this task"));
                }
                self.keep_early(task.id, &droplet, &body, task.instance_count)?;
                return Ok(None);
            };
            let id = InstanceId::from_db(row.int(0));
            let current: InstanceStatus = row.text(1).parse().unwrap_or(InstanceStatus::Unknown);
            let to = match body.status {
                PhoneHomeStatus::Ok => InstanceStatus::Ready,
                PhoneHomeStatus::Failed => InstanceStatus::Failed,
            };
            if current == to {
                return Ok(Some(PhoneHomeApplied {
                    task_id: task.id,
                    instance_id: id,
                    status: to,
                    duplicate: true,
                }));
            }
            if current.is_going() {
                return Err(Error::Conflict(format!(
                    "instance {id} is {current}: no longer wanted"
                )));
            }
            let change = report_change(id, body.status, body.public_ip.to_string());
            self.apply_transition(&task, &change, STEP)?;
            Ok(Some(PhoneHomeApplied {
                task_id: task.id,
                instance_id: id,
                status: to,
                duplicate: false,
            }))
        })?;
        // Kept for later: the machine still hears "retry later", and its retry finds the
        // report applied (or applies it, if the record came without this droplet).
        applied.ok_or_else(|| Error::RetryLater {
            reason: format!(
                "machine {} is not recorded yet (the report is kept and applied when it is)",
                body.droplet_id
            ),
            after_secs: RETRY_AFTER_SECS,
        })
    }

    /// Keeps a report whose machine is not recorded yet, once per droplet and at most as many
    /// per task as it has instances (`cap`): a report for a droplet that never becomes one of
    /// the task's is never applied, and goes when the task finishes.
    fn keep_early(
        &self,
        task: TaskId,
        droplet: &str,
        body: &PhoneHomeBody,
        cap: i64,
    ) -> Result<()> {
        let kept = crate::db::scalar(
            self.db,
            "SELECT COUNT(*) FROM early_phone_homes WHERE task_id = ? AND droplet <> ?",
            &[task.into(), droplet.into()],
        )?;
        if kept >= cap {
            return Ok(());
        }
        self.q(
            "INSERT OR REPLACE INTO early_phone_homes (task_id, droplet, status, public_ip, at) \
             VALUES (?, ?, ?, ?, ?)",
            &[
                task.into(),
                droplet.into(),
                status_text(body.status).into(),
                body.public_ip.to_string().into(),
                crate::now().into(),
            ],
        )?;
        Ok(())
    }

    /// The report kept for `droplet` of `task` before it was recorded, taken out of the table
    /// as the change it asks for (applied by the caller in the recording transaction).
    pub(super) fn take_early(
        &self,
        task: TaskId,
        instance: InstanceId,
        droplet: &str,
    ) -> Result<Option<InstanceTransition>> {
        let Some(row) = self.q1(
            "DELETE FROM early_phone_homes WHERE task_id = ? AND droplet = ? \
             RETURNING status, public_ip",
            &[task.into(), droplet.into()],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(report_change(
            instance,
            status_from_text(&row.text(0)),
            row.text(1),
        )))
    }
}

/// The instance change a report asks for.
fn report_change(id: InstanceId, status: PhoneHomeStatus, public_ip: String) -> InstanceTransition {
    match status {
        PhoneHomeStatus::Ok => InstanceTransition {
            public_ip: Some(public_ip),
            ..InstanceTransition::to(id, InstanceStatus::Ready)
        },
        PhoneHomeStatus::Failed => InstanceTransition {
            error: Some("the provisioning script reported a failure".into()),
            ..InstanceTransition::to(id, InstanceStatus::Failed)
        },
    }
}

/// How a kept report's status is stored (the contract's spelling).
fn status_text(s: PhoneHomeStatus) -> &'static str {
    match s {
        PhoneHomeStatus::Ok => "ok",
        PhoneHomeStatus::Failed => "failed",
    }
}

fn status_from_text(s: &str) -> PhoneHomeStatus {
    if s == status_text(PhoneHomeStatus::Failed) {
        PhoneHomeStatus::Failed
    } else {
        PhoneHomeStatus::Ok
    }
}

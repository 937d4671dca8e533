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
        self.tx(|| {
            let task = self.task_scoped(None, t.task)?;
            let droplet = body.droplet_id.to_string();
            let Some(row) = self.q1(
                "SELECT i.id, i.status FROM instances i WHERE i.provider_ref = ? AND EXISTS \
                 (SELECT 1 FROM task_instances x WHERE x.task_id = ? AND x.instance_id = i.id)",
                &[droplet.as_str().into(), task.id.into()],
            )?
            else {
                // Not (yet) one of the task's machines: while some are still being made, the
                // record may simply not be written yet; otherwise it is none of ours.
                let making = self
                    .q1(
                        "SELECT 1 FROM task_instances x JOIN instances i ON i.id = x.instance_id \
                         WHERE x.task_id = ? AND i.status = ? LIMIT 1",
                        &[task.id.into(), InstanceStatus::Pending.as_str().into()],
                    )?
                    .is_some();
                return Err(if making && !task.status.is_terminal() {
                    Error::RetryLater {
                        reason: format!("machine {droplet} is not recorded yet"),
                        after_secs: RETRY_AFTER_SECS,
                    }
                } else {
                    Error::NotFound("machine of this task")
                });
            };
            let id = InstanceId::from_db(row.int(0));
            let current: InstanceStatus = row.text(1).parse().unwrap_or(InstanceStatus::Unknown);
            let to = match body.status {
                PhoneHomeStatus::Ok => InstanceStatus::Ready,
                PhoneHomeStatus::Failed => InstanceStatus::Failed,
            };
            if current == to {
                return Ok(PhoneHomeApplied {
                    task_id: task.id,
                    instance_id: id,
                    status: to,
                    duplicate: true,
                });
            }
            if current.is_going() {
                return Err(Error::Conflict(format!(
                    "instance {id} is {current}: no longer wanted"
                )));
            }
            let mut change = InstanceTransition::to(id, to);
            match body.status {
                PhoneHomeStatus::Ok => change.public_ip = Some(body.public_ip.to_string()),
                PhoneHomeStatus::Failed => {
                    change.error = Some("the provisioning script reported a failure".into())
                }
            }
            self.apply_transition(&task, &change, STEP)?;
            Ok(PhoneHomeApplied {
                task_id: task.id,
                instance_id: id,
                status: to,
                duplicate: false,
            })
        })
    }
}

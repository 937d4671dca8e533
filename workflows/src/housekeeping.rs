//! `Housekeeping`: one virtual object per deployment that wakes on a durable timer to
//! reconcile (destroy machines carrying this deployment's tags that no live instance owns, and
//! record what it did) and to delete events past their retention. The API kicks it whenever it
//! dispatches a task: a kick starts the chain when none is alive (its first sweep one interval
//! later) and otherwise returns at once, so kicks never stack up chains.

use std::collections::HashSet;
use std::sync::Arc;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use talis_api::InstanceId;
use talis_api::internal::{Deployment, DeploymentGet, EventPurge, ReconcileRecord};
use talis_api::methods::internal as m;

use crate::App;
use crate::metrics;
use crate::plan::Keys;
use crate::policy::{provider_policy, rpc_policy};
use crate::steps::{self, names, now_ms, provider_err, rpc_err};

/// State key: when the next scheduled tick is due (Unix ms).
const NEXT: &str = "next_at";
/// Events deleted per call (a purge repeats until less comes back).
const PURGE_BATCH: u32 = 10_000;

/// A machine of this deployment as the sweep sees it (journaled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagged {
    pub provider_ref: String,
    pub name: String,
    /// The provider key of its instance (from its name); `None` for a machine Talis did not name.
    pub instance_key: Option<String>,
}

/// The instances the machines name (to ask which are still live).
pub fn named_instances(keys: &Keys, machines: &[Tagged]) -> Vec<InstanceId> {
    let mut ids: Vec<InstanceId> = machines
        .iter()
        .filter_map(|m| m.instance_key.as_deref().and_then(|k| keys.instance_of(k)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The machines no live instance owns: their instance is terminated or unknown, or they name
/// none. (An instance's row exists before its machine is made, so a machine being made is
/// never taken for an orphan.)
pub fn orphans<'a>(
    keys: &Keys,
    machines: &'a [Tagged],
    live: &HashSet<InstanceId>,
) -> Vec<&'a Tagged> {
    machines
        .iter()
        .filter(|m| {
            !m.instance_key
                .as_deref()
                .and_then(|k| keys.instance_of(k))
                .is_some_and(|id| live.contains(&id))
        })
        .collect()
}

/// What a tick did (its answer).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Swept {
    /// False when another tick chain is alive and this kick did nothing.
    pub ran: bool,
    pub destroyed: Vec<String>,
    pub events_deleted: u32,
}

pub struct Housekeeping(pub Arc<App>);

#[restate_sdk::object(name = "Housekeeping")]
impl Housekeeping {
    /// A tick: `scheduled` for the chain's own timer (reconciles, purges old events, schedules
    /// the next tick), false for a kick (starts the chain if none is alive).
    #[handler]
    async fn tick(
        &self,
        ctx: ObjectContext<'_>,
        scheduled: Json<bool>,
    ) -> HandlerResult<Json<Swept>> {
        let app = self.0.clone();
        let every = app.config.housekeeping_every();
        let now: i64 = ctx.run(|| async { Ok(now_ms()) }).name("now").await?;
        let next_at = ctx.get::<i64>(NEXT).await?.unwrap_or(0);
        if !scheduled.into_inner() {
            // A kick: a chain is alive when its next tick is due within one interval. Else it
            // starts one whose first sweep is an interval away, so the sweep never spends the
            // provider's rate budget while the task that kicked it makes its machines.
            if next_at <= now - every.as_millis() as i64 {
                schedule(&ctx, now, every);
            }
            return Ok(Json(Swept::default()));
        }
        let mut swept = Swept {
            ran: true,
            ..Swept::default()
        };
        let a = app.clone();
        let d: Deployment = ctx
            .run(|| async move {
                metrics::step(
                    names::DEPLOYMENT,
                    a.rpc.call::<m::DeploymentGet>(&DeploymentGet {}),
                )
                .await
                .map(Json)
                .map_err(rpc_err)
            })
            .name(names::DEPLOYMENT)
            .retry_policy(rpc_policy())
            .await?
            .into_inner();
        let keys = Keys::new(&d.deployment).map_err(TerminalError::new)?;
        let (a, tag) = (app.clone(), keys.deployment_tag());
        let machines: Vec<Tagged> = ctx
            .run(|| async move {
                let ms = metrics::step(names::LIST_DEPLOYMENT, a.provider.list_tagged(&tag))
                    .await
                    .map_err(provider_err)?;
                Ok(Json(
                    ms.into_iter()
                        .map(|m| Tagged {
                            provider_ref: m.provider_ref,
                            name: m.name,
                            instance_key: m.instance_id,
                        })
                        .collect::<Vec<_>>(),
                ))
            })
            .name(names::LIST_DEPLOYMENT)
            .retry_policy(provider_policy())
            .await?
            .into_inner();
        let ids = named_instances(&keys, &machines);
        let a = app.clone();
        let live: HashSet<InstanceId> = ctx
            .run(|| steps::live(a, ids))
            .name(names::LIVE)
            .retry_policy(rpc_policy())
            .await?
            .into_inner()
            .into_iter()
            .collect();
        let doomed: Vec<Tagged> = orphans(&keys, &machines, &live)
            .into_iter()
            .cloned()
            .collect();
        if !doomed.is_empty() {
            let (a, refs) = (
                app.clone(),
                doomed
                    .iter()
                    .map(|m| m.provider_ref.clone())
                    .collect::<Vec<_>>(),
            );
            ctx.run(|| async move {
                metrics::step(names::DESTROY_ORPHANS, async {
                    for r in &refs {
                        a.provider.delete_machine(r).await?;
                    }
                    Ok(())
                })
                .await
                .map_err(provider_err)
            })
            .name(names::DESTROY_ORPHANS)
            .retry_policy(provider_policy())
            .await?;
            let record = ReconcileRecord {
                destroyed: doomed.iter().map(|m| m.provider_ref.clone()).collect(),
                names: doomed.iter().map(|m| m.name.clone()).collect(),
            };
            let a = app.clone();
            ctx.run(|| async move {
                metrics::step(
                    names::RECORD_RECONCILE,
                    a.rpc.call::<m::ReconcileRecord>(&record),
                )
                .await
                .map_err(rpc_err)
            })
            .name(names::RECORD_RECONCILE)
            .retry_policy(rpc_policy())
            .await?;
            swept.destroyed = doomed.into_iter().map(|m| m.provider_ref).collect();
        }
        for n in 0.. {
            let a = app.clone();
            let deleted = ctx
                .run(|| async move {
                    metrics::step(
                        names::PURGE_EVENTS,
                        a.rpc
                            .call::<m::EventPurge>(&EventPurge { limit: PURGE_BATCH }),
                    )
                    .await
                    .map(|p| p.deleted)
                    .map_err(rpc_err)
                })
                .name(format!("{} #{n}", names::PURGE_EVENTS))
                .retry_policy(rpc_policy())
                .await?;
            swept.events_deleted += deleted;
            if deleted < PURGE_BATCH {
                break;
            }
        }
        schedule(&ctx, now, every);
        Ok(Json(swept))
    }
}

/// The chain's next tick, `every` from `now`.
fn schedule(ctx: &ObjectContext<'_>, now: i64, every: std::time::Duration) {
    ctx.set(NEXT, now + every.as_millis() as i64);
    ctx.object_client::<HousekeepingClient>(ctx.key())
        .tick(Json(true))
        .send_after(every);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(r: &str, key: Option<&str>) -> Tagged {
        Tagged {
            provider_ref: r.into(),
            name: format!("m-{r}"),
            instance_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn orphans_are_machines_no_live_instance_owns() {
        let keys = Keys::new("dev").unwrap();
        let machines = vec![
            tagged("1", Some("dev-10")),
            tagged("2", Some("dev-11")),
            tagged("3", None),
            tagged("4", Some("prod-10")),
            tagged("5", Some("dev-x")),
        ];
        let id = |n| InstanceId::new(n).unwrap();
        assert_eq!(named_instances(&keys, &machines), vec![id(10), id(11)]);
        let live: HashSet<InstanceId> = [id(10)].into();
        let o: Vec<&str> = orphans(&keys, &machines, &live)
            .iter()
            .map(|m| m.provider_ref.as_str())
            .collect();
        assert_eq!(o, vec!["2", "3", "4", "5"]);
    }
}

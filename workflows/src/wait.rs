//! What a chunk decides while it makes and watches machines, as pure functions of what it has
//! seen: no I/O, no Restate, so every case has a native unit test. The workflow glue feeds in
//! what its journaled steps returned and does what comes out.
//!
//! Machines report readiness by phoning home to the API, which records it in the database
//! directly (checking the machine belongs to the task, and answering "retry later" to a report
//! that arrives before its machine is recorded); the chunk looks at its instances' progress
//! every tick. Without phone-home (no public URL) it polls the provider instead.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use talis_api::internal::{InstanceTransition, Progress, Refusal, TransitionsApplied, Watched};
use talis_api::{InstanceId, InstanceStatus};

/// One machine as a provider poll saw it: only what the chunk acts on (journaled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub provider_ref: String,
    pub running: bool,
    pub public_ip: Option<String>,
}

/// What to do after looking at the chunk's progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Look {
    /// Every machine is ready or failed.
    Done,
    /// The task is finished (its owner stopped it, or deleted the project): stop and destroy
    /// what the chunk made.
    Stopped,
    /// Keep waiting: record `record` (instances past the deadline) first, poll the provider
    /// when `poll`, then look again after `sleep`.
    Wait {
        record: Vec<InstanceTransition>,
        poll: bool,
        sleep: Duration,
    },
}

/// The waiting part of a chunk.
///
/// Looks back off (doubling up to `max`) while nothing changes, and come closer again (halving,
/// down to `first`) while machines report: the wait ends soon after the last report instead of
/// up to `max` later, and the number of looks (two journal entries each) stays bounded by how
/// long the chunk waits, not by how many machines it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    phone_home: bool,
    deadline_ms: i64,
    timeout: Duration,
    sleep: Duration,
    first_sleep: Duration,
    max_sleep: Duration,
    /// How many instances waited at the previous look.
    last_waiting: Option<usize>,
}

impl Wait {
    /// Waiting starts at `now_ms`; machines not ready within `timeout` fail. Looks start
    /// `first` apart and back off to `max`.
    pub fn new(
        now_ms: i64,
        timeout: Duration,
        phone_home: bool,
        first: Duration,
        max: Duration,
    ) -> Self {
        Wait {
            phone_home,
            deadline_ms: now_ms.saturating_add(timeout.as_millis() as i64),
            timeout,
            sleep: first.min(max),
            first_sleep: first.min(max),
            max_sleep: max,
            last_waiting: None,
        }
    }

    pub fn look(&mut self, p: &Progress, now_ms: i64) -> Look {
        if p.task_status.is_terminal() {
            return Look::Stopped;
        }
        if p.waiting.is_empty() {
            return Look::Done;
        }
        if now_ms >= self.deadline_ms {
            let why = format!(
                "not ready within {} s (provision timeout)",
                self.timeout.as_secs()
            );
            let record = p
                .waiting
                .iter()
                .map(|w| InstanceTransition {
                    error: Some(why.clone()),
                    ..InstanceTransition::to(w.id, InstanceStatus::Failed)
                })
                .collect();
            return Look::Wait {
                record,
                poll: false,
                sleep: Duration::ZERO,
            };
        }
        let progressed = self.last_waiting.is_some_and(|n| p.waiting.len() < n);
        self.last_waiting = Some(p.waiting.len());
        let sleep = if progressed {
            self.sleep = (self.sleep / 2).max(self.first_sleep);
            self.sleep
        } else {
            let sleep = self.sleep;
            self.sleep = (self.sleep * 2).min(self.max_sleep);
            sleep
        };
        Look::Wait {
            record: Vec::new(),
            poll: !self.phone_home,
            sleep,
        }
    }

    /// What a provider poll means for the waiting instances: a running machine is ready (no
    /// phone-home to wait for) with its address; a machine the provider no longer lists is
    /// gone, so its instance fails.
    pub fn seen(&self, waiting: &[Watched], machines: &[Seen]) -> Vec<InstanceTransition> {
        waiting
            .iter()
            .filter(|w| !w.provider_ref.is_empty())
            .filter_map(
                |w| match machines.iter().find(|m| m.provider_ref == w.provider_ref) {
                    None => Some(InstanceTransition {
                        error: Some(format!(
                            "machine {} is gone from the provider",
                            w.provider_ref
                        )),
                        ..InstanceTransition::to(w.id, InstanceStatus::Failed)
                    }),
                    Some(m) if m.running && !self.phone_home => Some(InstanceTransition {
                        public_ip: m.public_ip.clone(),
                        ..InstanceTransition::to(w.id, InstanceStatus::Ready)
                    }),
                    Some(_) => None,
                },
            )
            .collect()
    }
}

/// What the component's answer to a record means for the chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The task is finished: stop.
    pub stop: bool,
    /// Instances no longer wanted (terminated by their owner meanwhile): the machines just made
    /// for them must be destroyed.
    pub unwanted: Vec<InstanceId>,
}

pub fn recorded(applied: &TransitionsApplied) -> Recorded {
    let mut r = Recorded::default();
    for t in &applied.results {
        match t.refused {
            Some(Refusal::TaskFinished) => r.stop = true,
            Some(Refusal::IllegalTransition) => r.unwanted.push(t.instance_id),
            Some(Refusal::NotInTask) | None => {}
        }
    }
    r
}

/// Whether any of the waiting instances needs the provider's view (machines that are made).
pub fn any_made(waiting: &[Watched]) -> bool {
    waiting.iter().any(|w| !w.provider_ref.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use talis_api::TaskStatus;
    use talis_api::internal::TransitionResult;

    fn id(n: i64) -> InstanceId {
        InstanceId::new(n).unwrap()
    }

    fn watched(n: i64, status: InstanceStatus, r: &str) -> Watched {
        Watched {
            id: id(n),
            status,
            provider_ref: r.into(),
        }
    }

    fn progress(task: TaskStatus, waiting: Vec<Watched>) -> Progress {
        Progress {
            task_status: task,
            waiting,
            failed: vec![],
            counts: Default::default(),
        }
    }

    const S: Duration = Duration::from_millis(500);

    fn wait(phone_home: bool) -> Wait {
        Wait::new(
            0,
            Duration::from_secs(60),
            phone_home,
            S,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn done_when_nothing_waits_stopped_when_the_task_is_finished() {
        let mut w = wait(true);
        assert_eq!(
            w.look(&progress(TaskStatus::Running, vec![]), 10),
            Look::Done
        );
        let one = vec![watched(1, InstanceStatus::Created, "101")];
        // Cancel mid-wait: the owner terminated the task (the cancel signal only wakes us).
        assert_eq!(
            w.look(&progress(TaskStatus::Terminated, one.clone()), 10),
            Look::Stopped
        );
        assert_eq!(
            w.look(&progress(TaskStatus::Failed, one), 10),
            Look::Stopped
        );
    }

    #[test]
    fn looks_back_off_and_poll_only_without_phone_home() {
        let mut w = wait(true);
        let p = progress(
            TaskStatus::Running,
            vec![watched(1, InstanceStatus::Created, "101")],
        );
        let sleeps: Vec<Duration> = (0..4)
            .map(|_| match w.look(&p, 10) {
                Look::Wait {
                    record,
                    poll,
                    sleep,
                } => {
                    assert!(record.is_empty() && !poll);
                    sleep
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sleeps, [S, 2 * S, 4 * S, Duration::from_secs(2)]);
        let mut w = wait(false);
        assert!(matches!(w.look(&p, 10), Look::Wait { poll: true, .. }));
    }

    /// While machines keep reporting, looks come closer again; when reports stop they back off.
    #[test]
    fn looks_come_closer_while_machines_report() {
        let mut w = wait(true);
        let waiting = |n: i64| {
            progress(
                TaskStatus::Running,
                (1..=n)
                    .map(|i| watched(i, InstanceStatus::Created, "101"))
                    .collect(),
            )
        };
        let mut sleep_at = |n: i64| match w.look(&waiting(n), 10) {
            Look::Wait { sleep, .. } => sleep,
            other => panic!("{other:?}"),
        };
        // Nothing reports: S, 2S, then the 2 s cap (4S).
        let quiet: Vec<Duration> = (0..4).map(|_| sleep_at(9)).collect();
        assert_eq!(quiet, [S, 2 * S, 4 * S, 4 * S]);
        // Reports arrive at every look: halving from the cap down to S, and no lower.
        let busy: Vec<Duration> = [8, 6, 4, 3].iter().map(|&n| sleep_at(n)).collect();
        assert_eq!(busy, [2 * S, S, S, S]);
        // Quiet again: back off from there.
        assert_eq!(sleep_at(3), S);
        assert_eq!(sleep_at(3), 2 * S);
    }

    #[test]
    fn a_phone_home_recorded_meanwhile_settles_the_instance() {
        // The phone-home was applied by the API between two looks: the instance is no longer
        // waiting, whatever the chunk saw before.
        let mut w = wait(true);
        let before = progress(
            TaskStatus::Running,
            vec![
                watched(1, InstanceStatus::Created, "101"),
                watched(2, InstanceStatus::Created, "102"),
            ],
        );
        assert!(matches!(w.look(&before, 10), Look::Wait { .. }));
        let after = progress(
            TaskStatus::Running,
            vec![watched(2, InstanceStatus::Created, "102")],
        );
        assert!(matches!(w.look(&after, 20), Look::Wait { .. }));
        assert_eq!(
            w.look(&progress(TaskStatus::Running, vec![]), 30),
            Look::Done
        );
    }

    #[test]
    fn instances_past_the_deadline_fail_with_the_limit_named() {
        let mut w = wait(true);
        let p = progress(
            TaskStatus::Running,
            vec![
                watched(1, InstanceStatus::Created, "101"),
                watched(2, InstanceStatus::Pending, ""),
            ],
        );
        match w.look(&p, 60_000) {
            Look::Wait {
                record,
                poll: false,
                sleep: Duration::ZERO,
            } => {
                assert_eq!(record.len(), 2);
                assert!(record.iter().all(|t| t.status == InstanceStatus::Failed));
                assert!(
                    record[0]
                        .error
                        .as_deref()
                        .unwrap()
                        .contains("60 s (provision timeout)")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_poll_makes_running_machines_ready_and_gone_ones_failed() {
        let waiting = vec![
            watched(1, InstanceStatus::Created, "101"),
            watched(2, InstanceStatus::Created, "102"),
            watched(3, InstanceStatus::Created, "103"),
            watched(4, InstanceStatus::Pending, ""),
        ];
        let machines = vec![
            Seen {
                provider_ref: "101".into(),
                running: true,
                public_ip: Some("10.0.0.1".into()),
            },
            Seen {
                provider_ref: "102".into(),
                running: false,
                public_ip: None,
            },
        ];
        let ts = wait(false).seen(&waiting, &machines);
        assert_eq!(ts.len(), 2, "{ts:?}");
        assert_eq!(
            (ts[0].instance_id, ts[0].status, ts[0].public_ip.as_deref()),
            (id(1), InstanceStatus::Ready, Some("10.0.0.1"))
        );
        assert_eq!(
            (ts[1].instance_id, ts[1].status),
            (id(3), InstanceStatus::Failed)
        );
        // With phone-home a running machine waits for its report; a gone one still fails.
        let ts = wait(true).seen(&waiting, &machines);
        assert_eq!(
            ts.iter().map(|t| t.instance_id).collect::<Vec<_>>(),
            vec![id(3)]
        );
        assert!(any_made(&waiting) && !any_made(&waiting[3..]));
    }

    #[test]
    fn refusals_stop_the_chunk_or_mark_machines_unwanted() {
        let r = |n: i64, refused: Option<Refusal>| TransitionResult {
            instance_id: id(n),
            refused,
            message: None,
        };
        let applied = TransitionsApplied {
            results: vec![
                r(1, None),
                r(2, Some(Refusal::IllegalTransition)),
                r(3, Some(Refusal::NotInTask)),
            ],
        };
        assert_eq!(
            recorded(&applied),
            Recorded {
                stop: false,
                unwanted: vec![id(2)]
            }
        );
        let applied = TransitionsApplied {
            results: vec![r(1, Some(Refusal::TaskFinished))],
        };
        assert!(recorded(&applied).stop);
    }
}

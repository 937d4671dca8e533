//! Statuses and actions, and their legal transitions: the one place transitions are decided.
//! The service applies them to rows, the workflows use them to decide what is left to do; both
//! ask these functions, so a status is never compared as text anywhere else.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown value '{s}', expected one of: {}",
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Lifecycle of one machine.
    InstanceStatus {
        /// Accepted on input for compatibility with the original Talis; never written.
        Unknown = "unknown",
        Pending = "pending",
        /// The provider accepted the machine (kept from the original Talis).
        Created = "created",
        Provisioning = "provisioning",
        Ready = "ready",
        Failed = "failed",
        Terminating = "terminating",
        Terminated = "terminated",
    }
}

string_enum! {
    /// Lifecycle of one task (one workflow run).
    TaskStatus {
        /// Accepted on input for compatibility with the original Talis; never written.
        Unknown = "unknown",
        Pending = "pending",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Terminated = "terminated",
    }
}

string_enum! {
    /// What a task does.
    TaskAction {
        CreateInstances = "create_instances",
        TerminateInstances = "terminate_instances",
        DeleteProject = "delete_project",
    }
}

string_enum! {
    /// Lifecycle of a project.
    ProjectStatus {
        Active = "active",
        /// A delete_project task is destroying its machines.
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

/// A refused status change. The service answers it as a 409 with reason `illegal_transition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    pub what: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cannot go from {} to {}",
            self.what, self.from, self.to
        )
    }
}

fn check(
    what: &'static str,
    from: &'static str,
    to: &'static str,
    ok: bool,
) -> Result<(), IllegalTransition> {
    if ok {
        Ok(())
    } else {
        Err(IllegalTransition { what, from, to })
    }
}

impl InstanceStatus {
    /// Whether the machine may still exist at the provider.
    pub fn is_live(self) -> bool {
        self != InstanceStatus::Terminated
    }

    /// Whether the instance is leaving or has left (a terminate or delete covers it).
    pub fn is_going(self) -> bool {
        matches!(
            self,
            InstanceStatus::Terminating | InstanceStatus::Terminated
        )
    }

    /// Whether a create workflow still has to make or watch this instance's machine.
    pub fn needs_machine(self) -> bool {
        use InstanceStatus::*;
        matches!(self, Unknown | Pending | Created | Provisioning)
    }

    /// Whether the instance reached an end of its creation (ready or failed) or left.
    pub fn is_settled(self) -> bool {
        !self.needs_machine()
    }

    /// Whether the instance has already gone past `to` on its way up (pending → created →
    /// provisioning → ready or failed): a late record of an earlier step (e.g. `created`
    /// recorded again after a phone-home made the instance ready) changes nothing.
    pub fn is_past(self, to: InstanceStatus) -> bool {
        use InstanceStatus::*;
        let rank = |s: InstanceStatus| match s {
            Unknown | Pending => Some(0),
            Created => Some(1),
            Provisioning => Some(2),
            Ready | Failed => Some(3),
            Terminating | Terminated => None,
        };
        matches!((rank(self), rank(to)), (Some(a), Some(b)) if a > b)
    }

    /// Checks `self → to`. The same status again is a legal no-op (internal calls are retried).
    pub fn transition(self, to: InstanceStatus) -> Result<(), IllegalTransition> {
        use InstanceStatus::*;
        let ok = self == to
            || matches!(
                (self, to),
                (Pending | Unknown, Created)
                    | (Created, Provisioning | Ready)
                    | (Provisioning, Ready)
                    | (Pending | Unknown | Created | Provisioning, Failed)
                    | (Pending | Unknown | Created | Provisioning | Ready | Failed, Terminating)
                    // A machine that never reached the provider can be dropped directly.
                    | (Terminating | Pending | Failed, Terminated)
            );
        check("instance", self.as_str(), to.as_str(), ok)
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Terminated
        )
    }

    /// Checks `self → to`. The same status again is a legal no-op.
    pub fn transition(self, to: TaskStatus) -> Result<(), IllegalTransition> {
        use TaskStatus::*;
        let ok = self == to
            || matches!(
                (self, to),
                (Pending | Unknown, Running)
                    | (Running, Completed | Failed | Terminated)
                    | (Pending | Unknown, Terminated)
            );
        check("task", self.as_str(), to.as_str(), ok)
    }
}

impl TaskAction {
    /// The original Talis priorities: creates first (1 = high), terminations after (2 = low).
    pub fn priority(self) -> i64 {
        match self {
            TaskAction::TerminateInstances => 2,
            _ => 1,
        }
    }

    /// The status every instance of a successful task of this action ends in.
    pub fn goal(self) -> InstanceStatus {
        match self {
            TaskAction::CreateInstances => InstanceStatus::Ready,
            TaskAction::TerminateInstances | TaskAction::DeleteProject => {
                InstanceStatus::Terminated
            }
        }
    }
}

impl ProjectStatus {
    /// Checks `self → to`. The same status again is a legal no-op.
    pub fn transition(self, to: ProjectStatus) -> Result<(), IllegalTransition> {
        use ProjectStatus::*;
        let ok = self == to
            || matches!(
                (self, to),
                // A delete with live machines goes through `deleting`; without, straight away.
                (Active, Deleting | Deleted)
                    // The delete task finished: the machines are gone, or it failed and the
                    // project stays usable.
                    | (Deleting, Deleted | Active)
            );
        check("project", self.as_str(), to.as_str(), ok)
    }

    /// The project status once its delete_project task ends with `task`.
    pub fn after_delete_task(task: TaskStatus) -> ProjectStatus {
        if task == TaskStatus::Completed {
            ProjectStatus::Deleted
        } else {
            ProjectStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_transitions() {
        use InstanceStatus::*;
        let legal = [
            (Pending, Created),
            (Created, Provisioning),
            (Provisioning, Ready),
            (Created, Ready),
            (Provisioning, Failed),
            (Ready, Terminating),
            (Terminating, Terminated),
            (Pending, Terminated),
            (Ready, Ready),
        ];
        for (a, b) in legal {
            assert!(a.transition(b).is_ok(), "{a} -> {b}");
        }
        let illegal = [
            (Ready, Pending),
            (Terminated, Ready),
            (Terminated, Terminating),
            (Ready, Created),
        ];
        for (a, b) in illegal {
            let e = a.transition(b).unwrap_err();
            assert_eq!(e.to_string(), format!("instance cannot go from {a} to {b}"));
        }
    }

    #[test]
    fn task_transitions() {
        use TaskStatus::*;
        assert!(Pending.transition(Running).is_ok());
        assert!(Running.transition(Completed).is_ok());
        assert!(Pending.transition(Terminated).is_ok());
        assert!(Completed.transition(Completed).is_ok());
        assert!(Completed.transition(Running).is_err());
        assert!(Pending.transition(Completed).is_err());
        assert!(Failed.transition(Terminated).is_err());
    }

    #[test]
    fn project_transitions() {
        use ProjectStatus::*;
        for (a, b) in [
            (Active, Deleting),
            (Active, Deleted),
            (Deleting, Deleted),
            (Deleting, Active),
        ] {
            assert!(a.transition(b).is_ok(), "{a} -> {b}");
        }
        for (a, b) in [(Deleted, Active), (Deleted, Deleting)] {
            assert!(a.transition(b).is_err(), "{a} -> {b}");
        }
        assert_eq!(
            ProjectStatus::after_delete_task(TaskStatus::Completed),
            Deleted
        );
        assert_eq!(ProjectStatus::after_delete_task(TaskStatus::Failed), Active);
    }

    #[test]
    fn strings_round_trip() {
        for s in InstanceStatus::ALL {
            assert_eq!(s.as_str().parse::<InstanceStatus>().unwrap(), *s);
        }
        for s in ProjectStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("bogus".parse::<TaskAction>().is_err());
    }
}

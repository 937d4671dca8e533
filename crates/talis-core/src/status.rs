//! Instance and task statuses and their legal transitions: the only place transitions are decided.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name { $(#[serde(rename = $s)] $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
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

string_enum! {
    /// Lifecycle of one machine.
    InstanceStatus {
        Unknown = "unknown",
        Pending = "pending",
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

impl InstanceStatus {
    /// Whether the machine may still exist at the provider (counts against deleting its project).
    pub fn is_live(self) -> bool {
        self != InstanceStatus::Terminated
    }

    /// Checks `self → to`. The same status again is a legal no-op (internal calls are retried).
    pub fn transition(self, to: InstanceStatus) -> Result<(), Error> {
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
        if ok {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "instance cannot go from {self} to {to}"
            )))
        }
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
    pub fn transition(self, to: TaskStatus) -> Result<(), Error> {
        use TaskStatus::*;
        let ok = self == to
            || matches!(
                (self, to),
                (Pending | Unknown, Running)
                    | (Running, Completed | Failed | Terminated)
                    | (Pending | Unknown, Terminated)
            );
        if ok {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "task cannot go from {self} to {to}"
            )))
        }
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
            assert!(a.transition(b).is_err(), "{a} -> {b}");
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
    fn strings_round_trip() {
        for s in InstanceStatus::ALL {
            assert_eq!(s.as_str().parse::<InstanceStatus>().unwrap(), *s);
        }
        assert!("bogus".parse::<TaskAction>().is_err());
    }
}

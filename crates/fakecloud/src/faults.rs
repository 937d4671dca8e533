//! Fault injection: which configured fault (if any) fires for a call, counting each rule's
//! firings (`count`) and 429 bursts, and what it does to the call. The HTTP edge applies the
//! effect; control routes are never faulted.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use crate::config::{Fault, FaultKind};
use crate::error::ApiError;

/// `error_5xx` answers this status unless the rule names one.
const DEFAULT_STATUS: u16 = 500;
/// `stall` holds a request this long unless the rule says.
const DEFAULT_STALL_MS: u64 = 5_000;

/// What a fired fault does to the call.
#[derive(Debug)]
pub enum Effect {
    /// Answer this error and do nothing.
    Answer(ApiError),
    /// Close the connection and do nothing.
    Drop,
    /// Hold the request, then process it (even if the client gave up).
    Stall(Duration),
    /// Process the request, then close the connection without answering.
    LoseAnswer,
}

/// The configured rules and how often each has fired.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Fault>,
    fired: Vec<u64>,
    /// Calls left in a 429 burst, per rule.
    burst: Vec<u64>,
}

impl Faults {
    pub fn new(rules: Vec<Fault>) -> Self {
        let n = rules.len();
        Faults {
            rules,
            fired: vec![0; n],
            burst: vec![0; n],
        }
    }

    /// The effect of the first rule that fires for operation `op`, if any.
    pub fn pick(&mut self, op: &str, rng: &mut StdRng) -> Option<Effect> {
        for (i, f) in self.rules.iter().enumerate() {
            if f.endpoint != "*" && f.endpoint != op {
                continue;
            }
            if self.burst[i] > 0 {
                self.burst[i] -= 1;
                return Some(effect(f));
            }
            if f.count.is_some_and(|c| self.fired[i] >= c) {
                continue;
            }
            if rng.random_bool(f.probability.clamp(0.0, 1.0)) {
                self.fired[i] += 1;
                if f.kind == FaultKind::RateLimit429 {
                    self.burst[i] = f.burst.unwrap_or(1).saturating_sub(1);
                }
                return Some(effect(f));
            }
        }
        None
    }
}

fn effect(f: &Fault) -> Effect {
    match f.kind {
        FaultKind::Error5xx => {
            let status = f.status.unwrap_or(DEFAULT_STATUS);
            let id = if status == 503 {
                "service_unavailable"
            } else {
                "server_error"
            };
            Effect::Answer(ApiError::new(status, id, "Server Error"))
        }
        FaultKind::RateLimit429 => Effect::Answer(ApiError::too_many_requests()),
        FaultKind::Drop => Effect::Drop,
        FaultKind::Stall => Effect::Stall(Duration::from_millis(
            f.stall_ms.unwrap_or(DEFAULT_STALL_MS),
        )),
        FaultKind::LostResponse => Effect::LoseAnswer,
    }
}

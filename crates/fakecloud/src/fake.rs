//! The running fake: the cloud, the knobs and the counters behind one lock, shared by every
//! connection, the phone-home scheduler and the snapshot writer. Work that may be slow
//! (network, disk, JSON of the whole state) happens outside the lock.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, Semaphore};

use crate::cloud::Cloud;
use crate::config::Config;
use crate::faults::Faults;
use crate::ratelimit::Window;
use crate::stats::Counters;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything behind the lock.
pub struct Inner {
    pub cloud: Cloud,
    pub config: Config,
    pub rng: StdRng,
    /// Rate-limit windows per bearer token.
    pub windows: HashMap<String, Window>,
    pub faults: Faults,
    pub counters: Counters,
    /// Phone-homes to make: (when, droplet id), earliest first.
    pub phone_home_due: BTreeSet<(u64, u64)>,
    /// One permit per phone-home POST under way: `phone_home.max_in_flight` (a new semaphore
    /// when that changes; POSTs under way finish on the old one).
    pub phone_home_slots: Arc<Semaphore>,
    /// Bumped by a reset, so that a phone-home begun before it records nothing after it.
    pub generation: u64,
}

impl Inner {
    fn new(config: Config, cloud: Cloud) -> Self {
        Inner {
            phone_home_slots: slots(&config),
            rng: StdRng::seed_from_u64(config.seed),
            faults: Faults::new(config.faults.clone()),
            cloud,
            config,
            windows: HashMap::new(),
            counters: Counters::default(),
            phone_home_due: BTreeSet::new(),
            generation: 0,
        }
    }
}

fn slots(config: &Config) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        config.phone_home.max_in_flight.max(1) as usize
    ))
}

/// The fake cloud: shared by every connection.
pub struct Fake {
    inner: Mutex<Inner>,
    /// Where the state is kept: fixed at start-up (`--snapshot`), never changed at run time.
    pub(crate) snapshot: Option<PathBuf>,
    /// State changed since the snapshot was last written.
    pub(crate) dirty: AtomicBool,
    /// Held while the snapshot is written: one writer at a time.
    pub(crate) saving: Mutex<()>,
    /// Loaded on first use when `validate_requests` is on.
    pub(crate) spec: Mutex<Option<crate::contract::Spec>>,
    /// The phone-home client (the machines' `curl`).
    pub(crate) http: reqwest::Client,
    /// Wakes the phone-home scheduler: new phone-homes were queued.
    pub(crate) phone_home_wake: Notify,
}

impl Fake {
    /// A fake with `config`; its state is loaded from `config.snapshot` if that file exists.
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let snapshot = config.snapshot.clone();
        let cloud = match &snapshot {
            Some(p) => crate::snapshot::load(p)?,
            None => Cloud::default(),
        };
        Ok(Arc::new(Fake {
            inner: Mutex::new(Inner::new(config, cloud)),
            snapshot,
            dirty: AtomicBool::new(false),
            saving: Mutex::new(()),
            spec: Mutex::new(None),
            http: reqwest::Client::builder()
                // `curl` without `-L`: an answer is final, a redirect is not followed.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            phone_home_wake: Notify::new(),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state changed: the snapshot writer will write it.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Replaces the knobs (faults start afresh); state, stats and rate windows are kept, and
    /// so is the snapshot path, which only start-up sets.
    pub fn set_config(&self, mut config: Config) {
        config.snapshot = self.snapshot.clone();
        let mut g = self.lock();
        g.rng = StdRng::seed_from_u64(config.seed);
        g.faults = Faults::new(config.faults.clone());
        if config.phone_home.max_in_flight != g.config.phone_home.max_in_flight {
            g.phone_home_slots = slots(&config);
        }
        g.config = config;
    }

    /// Forgets every resource and counter; the knobs stay.
    pub(crate) fn reset(&self) {
        let mut g = self.lock();
        let (config, generation) = (g.config.clone(), g.generation + 1);
        *g = Inner::new(config, Cloud::default());
        g.generation = generation;
        drop(g);
        self.mark_dirty();
    }

    /// `/_fake/stats`.
    pub fn stats(&self) -> serde_json::Value {
        let g = self.lock();
        crate::stats::report(&g.cloud, &g.config, &g.counters, now_ms())
    }
}

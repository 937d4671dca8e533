//! The observer hook against the fake cloud over real HTTP: every exchange is reported once per
//! attempt with its endpoint template (never a raw id), its status (`None` when no answer came)
//! and its duration, and rate-limit waits are reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fakecloud::{Config as FakeConfig, Fault, FaultKind};
use talis_provider::{Config, DigitalOcean, Exchange, MachineSpec, Observer, Provider};

#[derive(Default)]
struct Seen {
    exchanges: Mutex<Vec<Exchange>>,
    waits: Mutex<Vec<Duration>>,
}

impl Observer for Seen {
    fn exchange(&self, e: &Exchange) {
        self.exchanges.lock().unwrap().push(*e);
    }

    fn rate_limit_wait(&self, wait: Duration) {
        self.waits.lock().unwrap().push(wait);
    }
}

fn fault(endpoint: &str, kind: FaultKind) -> Fault {
    Fault {
        endpoint: endpoint.into(),
        kind,
        probability: 1.0,
        count: Some(1),
        status: None,
        stall_ms: None,
        burst: None,
    }
}

#[tokio::test]
async fn every_attempt_is_reported_with_its_template_and_status() {
    let fake = fakecloud::spawn(FakeConfig {
        faults: vec![
            fault("droplets_get", FaultKind::RateLimit429),
            fault("droplets_destroy", FaultKind::Drop),
        ],
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let seen = Arc::new(Seen::default());
    let mut c = Config::new(fake.base_url(), "t-observer");
    c.timeout = Duration::from_secs(3);
    c.backoff = Duration::from_millis(5);
    let client = DigitalOcean::new(c).unwrap().with_observer(seen.clone());

    let m = client
        .ensure_machine(&MachineSpec {
            instance_id: "obs-1".into(),
            project_id: "obs".into(),
            name: "m-obs".into(),
            region: "nyc3".into(),
            size: "s-1vcpu-1gb".into(),
            image: "ubuntu-24-04-x64".into(),
            ssh_keys: vec![],
            user_data: None,
            extra_tags: vec![],
        })
        .await
        .unwrap();
    let id: u64 = m.provider_ref.parse().unwrap();
    // A 429 first (retried after the limiter's wait), then the droplet.
    assert!(client.get_droplet(id).await.unwrap().is_some());
    // A dropped connection first (no answer), then the delete.
    client.delete_droplet(id).await.unwrap();

    let ex = seen.exchanges.lock().unwrap().clone();
    let of = |method: &str, endpoint: &str| -> Vec<Option<u16>> {
        ex.iter()
            .filter(|e| e.method == method && e.endpoint == endpoint)
            .map(|e| e.status)
            .collect()
    };
    assert_eq!(of("POST", "/v2/droplets"), vec![Some(202)], "{ex:?}");
    assert_eq!(
        of("GET", "/v2/droplets/{id}"),
        vec![Some(429), Some(200)],
        "{ex:?}"
    );
    assert_eq!(
        of("DELETE", "/v2/droplets/{id}"),
        vec![None, Some(204)],
        "{ex:?}"
    );
    for e in &ex {
        assert!(
            !e.endpoint.contains(&id.to_string()),
            "raw id in {}",
            e.endpoint
        );
        assert!(e.elapsed < Duration::from_secs(3), "{e:?}");
    }
    let waits = seen.waits.lock().unwrap().clone();
    assert!(
        waits.iter().any(|w| !w.is_zero()),
        "the 429's wait was not reported: {waits:?}"
    );
}

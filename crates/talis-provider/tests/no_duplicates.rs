//! Property: no sequence of injected faults makes an ensure round create two droplets (or two
//! volumes) for one instance. Every case runs a fresh fake over loopback with count-limited
//! faults on the calls a round makes (look-ups, multi-creates, volume creates, single creates
//! with volumes), lets the round run (it may give up: a terminal outcome is allowed), then
//! ensures again without faults and checks the fake's own accounting.

use std::time::Duration;

use fakecloud::{Config as FakeConfig, Fault, FaultKind};
use proptest::prelude::*;
use serde_json::Value;
use talis_provider::{BatchMember, Config, DigitalOcean, MachineBatch, Provider, VolumeSpec};

const ENDPOINTS: &[&str] = &[
    "droplets_list",
    "droplets_create",
    "volumes_list",
    "volumes_create",
];

fn fault_strategy() -> impl Strategy<Value = Fault> {
    (
        0..ENDPOINTS.len(),
        prop_oneof![
            Just(FaultKind::Error5xx),
            Just(FaultKind::RateLimit429),
            Just(FaultKind::Drop),
            Just(FaultKind::LostResponse),
            Just(FaultKind::Stall),
        ],
        1u64..=3,
    )
        .prop_map(|(e, kind, count)| Fault {
            endpoint: ENDPOINTS[e].to_string(),
            kind,
            probability: 1.0,
            count: Some(count),
            status: Some(503),
            // Longer than the client timeout, shorter than timeout + settle.
            stall_ms: Some(1_200),
            burst: Some(2),
        })
}

fn stat(stats: &Value, path: &str) -> u64 {
    stats.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

async fn run_case(
    faults: Vec<Fault>,
    n: usize,
    with_volumes: usize,
    case: u64,
) -> Result<(), TestCaseError> {
    let fake = fakecloud::spawn(FakeConfig {
        faults,
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let mut c = Config::new(fake.base_url(), format!("prop-{case}"));
    // Margins for a loaded machine: a stalled create (1.2 s) lands long before the look-up
    // that follows its timeout (1 s) + settle (1.5 s).
    c.timeout = Duration::from_millis(1_000);
    c.backoff = Duration::from_millis(2);
    c.settle = Duration::from_millis(1_500);
    c.max_attempts = 2;
    c.ensure_attempts = 4;
    let do_ = DigitalOcean::new(c).unwrap();
    let project = format!("prop{case}");
    let batch = |tag: &str, n: usize, volumes: bool| MachineBatch {
        project_id: project.clone(),
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        ssh_keys: vec![],
        user_data: None,
        extra_tags: vec![],
        // The rounds look up by this group's tag, as the workflows' chunks do.
        group_tag: Some(format!("talis-chunk-prop{case}")),
        members: (0..n)
            .map(|i| {
                let instance_id = format!("c{case}-{tag}{i}");
                BatchMember {
                    name: format!("m{i}"),
                    volumes: if volumes {
                        vec![VolumeSpec {
                            name: format!("data-{instance_id}"),
                            instance_id: instance_id.clone(),
                            project_id: project.clone(),
                            region: "nyc3".into(),
                            size_gigabytes: 1,
                            filesystem_type: None,
                        }]
                    } else {
                        vec![]
                    },
                    instance_id,
                }
            })
            .collect(),
    };
    // Display names repeat across the two batches: identity is the machine name, which
    // carries the instance id.
    let round = vec![batch("a", n, false), batch("v", with_volumes, true)];
    let round: Vec<MachineBatch> = round
        .into_iter()
        .filter(|b| !b.members.is_empty())
        .collect();
    let total = n + with_volumes;
    // Under faults: may succeed or give up (a workflow would retry the step later).
    let _ = do_.ensure_round(&round).await;
    // Stalled requests finish meanwhile; then a fault-free retry must converge.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    fake.fake.set_config(FakeConfig::instant());
    let results = do_.ensure_round(&round).await.unwrap();
    let machines: usize = results.iter().map(|r| r.as_ref().unwrap().len()).sum();
    prop_assert_eq!(machines, total);

    let s = fake.fake.stats();
    prop_assert_eq!(stat(&s, "/duplicates/count"), 0, "stats: {}", s);
    prop_assert_eq!(stat(&s, "/orphans/count"), 0, "stats: {}", s);
    prop_assert_eq!(stat(&s, "/droplets/live"), total as u64, "stats: {}", s);
    // Stronger than "no duplicates left": no droplet was ever created twice (none was healed).
    prop_assert_eq!(stat(&s, "/droplets/created"), total as u64, "stats: {}", s);
    prop_assert_eq!(stat(&s, "/droplets/destroyed"), 0, "stats: {}", s);
    prop_assert_eq!(
        stat(&s, "/volumes/live"),
        with_volumes as u64,
        "stats: {}",
        s
    );
    prop_assert_eq!(
        stat(&s, "/volumes/attached"),
        with_volumes as u64,
        "stats: {}",
        s
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn no_fault_sequence_creates_two_droplets_for_one_instance(
        faults in prop::collection::vec(fault_strategy(), 0..5),
        n in 0usize..=4,
        with_volumes in 0usize..=2,
        case in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        prop_assume!(n + with_volumes > 0);
        rt.block_on(run_case(faults, n, with_volumes, case))?;
    }
}

//! The DigitalOcean client against the fake cloud over real HTTP on loopback, including every
//! fault mode the fake can inject.

use std::collections::HashSet;
use std::time::Duration;

use fakecloud::{Config as FakeConfig, Fault, FaultKind};
use serde_json::Value;
use talis_provider::digitalocean::api::DropletCreate;
use talis_provider::{
    BatchMember, Config, DigitalOcean, Error, MachineBatch, MachineSpec, MachineStatus, Provider,
    RoundStart, VolumeSpec, tags,
};

fn fault(endpoint: &str, kind: FaultKind, count: u64) -> Fault {
    Fault {
        endpoint: endpoint.into(),
        kind,
        probability: 1.0,
        count: Some(count),
        status: None,
        stall_ms: None,
        burst: None,
    }
}

/// A fake with `faults` and a client with short timeouts/backoffs, each test with its own token
/// (rate limiters are shared per token).
async fn setup(faults: Vec<Fault>, token: &str) -> (fakecloud::Running, DigitalOcean) {
    let fake = fakecloud::spawn(FakeConfig {
        faults,
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let client = client(&fake.base_url(), token);
    (fake, client)
}

fn client(base: &str, token: &str) -> DigitalOcean {
    let mut c = Config::new(base, token);
    // Generous: a loaded 2-core machine must not turn slow answers into faults.
    c.timeout = Duration::from_secs(3);
    c.backoff = Duration::from_millis(5);
    c.settle = Duration::from_millis(1_000);
    DigitalOcean::new(c).unwrap()
}

fn spec(instance: &str, project: &str) -> MachineSpec {
    MachineSpec {
        instance_id: instance.into(),
        project_id: project.into(),
        name: format!("m-{instance}"),
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        ssh_keys: vec![],
        user_data: None,
        extra_tags: vec![],
    }
}

fn batch(project: &str, n: usize) -> MachineBatch {
    MachineBatch {
        project_id: project.into(),
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        ssh_keys: vec![],
        user_data: None,
        extra_tags: vec![],
        group_tag: None,
        members: (0..n)
            .map(|i| BatchMember {
                instance_id: format!("{project}-i{i}"),
                name: format!("{project}-web-{i}"),
                volumes: vec![],
            })
            .collect(),
    }
}

fn stat(stats: &Value, path: &str) -> u64 {
    stats.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test]
async fn batch_ensure_is_idempotent_and_polls_by_tag() {
    let (fake, do_) = setup(vec![], "t-batch").await;
    let b = batch("p1", 10);
    let first = do_.ensure_machines(&b).await.unwrap();
    assert_eq!(first.len(), 10);
    for (m, member) in first.iter().zip(&b.members) {
        assert_eq!(m.instance_id.as_deref(), Some(member.instance_id.as_str()));
        assert_eq!(m.project_id.as_deref(), Some("p1"));
        assert!(m.tags.contains(&tags::TALIS.to_string()));
    }
    let again = do_.ensure_machines(&b).await.unwrap();
    let ids = |v: &[talis_provider::Machine]| {
        v.iter().map(|m| m.provider_ref.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&first),
        ids(&again),
        "second ensure finds the same droplets"
    );

    let project = do_.list_project("p1").await.unwrap();
    assert_eq!(project.len(), 10);
    assert!(
        project
            .iter()
            .all(|m| m.status == MachineStatus::Active && m.is_running())
    );
    let found = do_.find_machine("p1", "p1-i3").await.unwrap().unwrap();
    assert_eq!(found.name, "p1-web-3.ip1-i3");
    assert_eq!(found.instance_id.as_deref(), Some("p1-i3"));
    assert_eq!(do_.find_machine("p1", "nope").await.unwrap(), None);
    assert_eq!(
        do_.get_machine(&found.provider_ref).await.unwrap(),
        Some(found.clone())
    );
    assert_eq!(do_.get_machine("1").await.unwrap(), None);

    let s = fake.fake.stats();
    assert_eq!(
        stat(&s, "/calls/droplets_list/200"),
        5,
        "1 per ensure, 1 poll, 1 per find"
    );
    assert_eq!(
        stat(&s, "/calls/droplets_create/202"),
        1,
        "one multi-create for the batch of 10"
    );
    assert_eq!(stat(&s, "/calls/tags_assign_resources/204"), 0);
    assert_eq!(stat(&s, "/droplets/live"), 10);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
    assert_eq!(stat(&s, "/orphans/count"), 0);

    do_.delete_machines("p1", &["p1-i0".into()]).await.unwrap();
    do_.delete_machines("p1", &["p1-i0".into()]).await.unwrap(); // already gone: still Ok
    assert_eq!(do_.list_project("p1").await.unwrap().len(), 9);
    do_.delete_project("p1").await.unwrap();
    assert!(do_.list_project("p1").await.unwrap().is_empty());
    assert_eq!(stat(&fake.fake.stats(), "/droplets/live"), 0);
}

#[tokio::test]
async fn listing_follows_pagination() {
    let (fake, do_) = setup(vec![], "t-pages").await;
    // 23 batches of 10 = 230 droplets > one page of 200.
    for b in 0..23 {
        let mut bt = batch("big", 10);
        for m in &mut bt.members {
            m.instance_id = format!("{}-{b}", m.instance_id);
            m.name = format!("{}-{b}", m.name);
        }
        do_.ensure_machines(&bt).await.unwrap();
    }
    let lists = || stat(&fake.fake.stats(), "/calls/droplets_list/200");
    let before = lists();
    let all = do_.list_project("big").await.unwrap();
    assert_eq!(lists() - before, 2, "two pages of 200");
    assert_eq!(all.len(), 230);
    let unique: HashSet<_> = all.iter().map(|m| &m.provider_ref).collect();
    assert_eq!(unique.len(), 230);
}

/// A round of a group (a workflow chunk) looks up only that group's machines: its cost stays one
/// page however many machines the project already has (it listed every page of the project).
#[tokio::test]
async fn a_grouped_round_looks_up_its_group_not_the_project() {
    let (fake, do_) = setup(vec![], "t-group").await;
    let group = |g: usize, b: usize| {
        let mut bt = batch("wide", 10);
        bt.group_tag = Some(format!("talis-chunk-t-{g}"));
        for m in &mut bt.members {
            m.instance_id = format!("{}-{g}-{b}", m.instance_id);
            m.name = format!("{}-{g}-{b}", m.name);
        }
        bt
    };
    // Group 0: 41 batches (410 machines: three pages of the project's listing).
    for b in 0..41 {
        do_.ensure_machines(&group(0, b)).await.unwrap();
    }
    let lists = || stat(&fake.fake.stats(), "/calls/droplets_list/200");
    let before = lists();
    let made = do_.ensure_machines(&group(1, 0)).await.unwrap();
    assert_eq!(made.len(), 10);
    assert_eq!(lists() - before, 1, "one page: group 1's machines only");
    assert!(
        made.iter()
            .all(|m| m.tags.contains(&"talis-chunk-t-1".to_string()))
    );
    // Ensured again, each group finds its own machines: nothing is made twice.
    do_.ensure_machines(&group(1, 0)).await.unwrap();
    do_.ensure_machines(&group(0, 40)).await.unwrap();
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/droplets/live"), 420);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
    // Batches of two groups never share a round.
    let mixed = do_.ensure_round(&[group(0, 0), group(1, 0)]).await;
    assert!(
        matches!(&mixed, Err(Error::Invalid { field, .. }) if *field == "group_tag"),
        "{mixed:?}"
    );
}

#[tokio::test]
async fn retryable_faults_are_absorbed() {
    // 5xx, a 429 burst, a dropped connection and a lost create answer, one after the other.
    let mut burst = fault("droplets_list", FaultKind::RateLimit429, 1);
    burst.burst = Some(3);
    let faults = vec![
        fault("droplets_list", FaultKind::Error5xx, 2),
        burst,
        fault("droplets_list", FaultKind::Drop, 1),
        fault("droplets_create", FaultKind::LostResponse, 1),
        fault("tags_assign_resources", FaultKind::Error5xx, 1),
    ];
    let (fake, mut do_) = setup(faults, "t-faults").await;
    let mut c = do_.config().clone();
    c.max_attempts = 8;
    do_ = DigitalOcean::new(c).unwrap();
    let machines = do_.ensure_machines(&batch("pf", 4)).await.unwrap();
    assert_eq!(machines.len(), 4);
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/calls/droplets_list/500"), 2);
    assert_eq!(stat(&s, "/calls/droplets_list/429"), 3);
    assert_eq!(stat(&s, "/calls/droplets_list/dropped"), 1);
    assert_eq!(stat(&s, "/calls/droplets_create/lost"), 1);
    assert_eq!(stat(&s, "/calls/droplets_create/202"), 0);
    assert_eq!(
        stat(&s, "/droplets/created"),
        4,
        "the lost create was found again, not repeated"
    );
    assert_eq!(stat(&s, "/droplets/live"), 4);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
    assert_eq!(stat(&s, "/orphans/count"), 0);
}

#[tokio::test]
async fn stalled_create_times_out_and_ensure_finds_it_after_settling() {
    let mut stall = fault("droplets_create", FaultKind::Stall, 1);
    // Longer than the client timeout (1 s), well before timeout + settle (3 s).
    stall.stall_ms = Some(2_000);
    let (fake, mut do_) = setup(vec![stall], "t-stall").await;
    let mut c = do_.config().clone();
    c.timeout = Duration::from_secs(1);
    c.settle = Duration::from_secs(2);
    do_ = DigitalOcean::new(c).unwrap();
    let m = do_.ensure_machine(&spec("s1", "ps")).await.unwrap();
    assert_eq!(m.instance_id.as_deref(), Some("s1"));
    let again = do_.ensure_machine(&spec("s1", "ps")).await.unwrap();
    assert_eq!(m.provider_ref, again.provider_ref);
    let s = fake.fake.stats();
    assert_eq!(
        stat(&s, "/calls/droplets_create/202"),
        1,
        "the stalled create, not a second one"
    );
    assert_eq!(stat(&s, "/droplets/live"), 1);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
}

#[tokio::test]
async fn ensure_heals_duplicates_left_by_an_earlier_race() {
    let (fake, do_) = setup(vec![], "t-dupes").await;
    let s = spec("d1", "pd");
    let create = || DropletCreate {
        name: Some(tags::machine_name(&s.name, "d1")),
        region: s.region.clone(),
        size: s.size.clone(),
        image: s.image.clone(),
        tags: vec![tags::TALIS.into(), tags::project("pd")],
        ..Default::default()
    };
    let first = do_.create_droplets(&create()).await.unwrap()[0].id;
    do_.create_droplets(&create()).await.unwrap();
    assert_eq!(stat(&fake.fake.stats(), "/duplicates/count"), 1);
    assert!(matches!(
        do_.find_machine("pd", "d1").await,
        Err(Error::Conflict(_))
    ));
    let m = do_.ensure_machine(&s).await.unwrap();
    assert_eq!(m.provider_ref, first.to_string(), "the oldest is kept");
    let st = fake.fake.stats();
    assert_eq!(stat(&st, "/duplicates/count"), 0);
    assert_eq!(stat(&st, "/droplets/live"), 1);
}

#[tokio::test]
async fn terminal_errors_keep_the_provider_message() {
    let fake = fakecloud::spawn(FakeConfig {
        droplet_limit: 3,
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let do_ = client(&fake.base_url(), "t-terminal");
    let err = do_.ensure_machines(&batch("q", 5)).await.unwrap_err();
    match &err {
        Error::Api {
            status: 422,
            id,
            message,
            ..
        } => {
            assert_eq!(id, "unprocessable_entity");
            assert!(message.contains("droplet limit"), "{message}");
        }
        other => panic!("expected a 422, got {other:?}"),
    }
    assert!(!err.is_retryable());
    // A multi-create is all or nothing: nothing was made.
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/droplets/live"), 0);
    assert_eq!(stat(&s, "/orphans/count"), 0);
    assert!(do_.list_project("q").await.unwrap().is_empty());

    let mut bad = spec("x", "q");
    bad.region = "mars1".into();
    let err = do_.ensure_machine(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 422, .. }) && err.to_string().contains("mars1"));

    let mut bad = spec("x", "q");
    bad.extra_tags = vec!["not valid".into()];
    assert!(matches!(
        do_.ensure_machine(&bad).await,
        Err(Error::Invalid {
            field: "extra_tags",
            ..
        })
    ));

    // An empty token is refused locally; a missing one by the fake (401).
    assert!(DigitalOcean::new(Config::new(fake.base_url(), " ")).is_err());
    let r = reqwest::get(format!("{}/v2/account", fake.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn unreachable_provider_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = Config::new(format!("http://{addr}"), "t-conn");
    c.max_attempts = 2;
    c.backoff = Duration::from_millis(1);
    let do_ = DigitalOcean::new(c).unwrap();
    let err = do_.account().await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn rate_limit_is_honoured_and_shared_per_token() {
    let fake = fakecloud::spawn(FakeConfig {
        rate_limit_per_minute: 5,
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let mut c = Config::new(fake.base_url(), "t-limit");
    c.max_rate_limit_wait = Duration::from_millis(100);
    c.backoff = Duration::from_millis(1);
    let a = DigitalOcean::new(c.clone()).unwrap();
    let b = DigitalOcean::new(c).unwrap();
    for _ in 0..5 {
        a.account().await.unwrap();
    }
    // The 6th call gets 429 + retry-after (≤ 60 s), more than this client will wait.
    let err = b.account().await.unwrap_err();
    let Error::RateLimited { retry_after } = err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert!(retry_after > Duration::from_secs(1) && retry_after <= Duration::from_secs(60));
    // `a` now knows too (same token → same limiter) and does not even call.
    let before = stat(&fake.fake.stats(), "/calls/account_get/429");
    assert!(matches!(a.account().await, Err(Error::RateLimited { .. })));
    assert_eq!(stat(&fake.fake.stats(), "/calls/account_get/429"), before);
    // ensure_* hands a long wait back too, instead of sleeping through it.
    let started = std::time::Instant::now();
    let err = a.ensure_machine(&spec("rl", "prl")).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Another token is unaffected.
    client(&fake.base_url(), "t-limit-other")
        .account()
        .await
        .unwrap();
}

#[tokio::test]
async fn volumes_ensure_attach_region_check_and_delete() {
    let (fake, do_) = setup(vec![], "t-vol").await;
    let m = do_.ensure_machine(&spec("v1", "pv")).await.unwrap();
    let vs = VolumeSpec {
        instance_id: "v1".into(),
        project_id: "pv".into(),
        name: "data-v1".into(),
        region: "nyc3".into(),
        size_gigabytes: 10,
        filesystem_type: Some("ext4".into()),
    };
    let v = do_.ensure_volume(&vs).await.unwrap();
    assert_eq!(
        do_.ensure_volume(&vs).await.unwrap().provider_ref,
        v.provider_ref
    );
    do_.attach_volume(&v.provider_ref, &m.provider_ref)
        .await
        .unwrap();
    do_.attach_volume(&v.provider_ref, &m.provider_ref)
        .await
        .unwrap(); // idempotent
    let d = do_.find_machine("pv", "v1").await.unwrap().unwrap();
    assert_eq!(d.volume_ids, vec![v.provider_ref.clone()]);

    // A volume in another region cannot be attached: terminal 422 with DO's message.
    let far = do_
        .ensure_volume(&VolumeSpec {
            name: "far-v1".into(),
            region: "fra1".into(),
            ..vs.clone()
        })
        .await
        .unwrap();
    let err = do_
        .attach_volume(&far.provider_ref, &m.provider_ref)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 422, .. }), "{err:?}");
    assert!(err.to_string().contains("same region"));

    do_.delete_volumes(&["v1".into()]).await.unwrap();
    do_.delete_volumes(&["v1".into()]).await.unwrap();
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/volumes/live"), 0);
}

/// Machines with volumes: one look-up of droplets and one of volumes for the round, then per
/// machine one volume create and one droplet create that attaches it (no attach action).
#[tokio::test]
async fn round_with_volumes_attaches_at_creation() {
    let (fake, do_) = setup(vec![], "t-round-vol").await;
    let mut with_vol = batch("rv", 3);
    for m in &mut with_vol.members {
        m.volumes = vec![VolumeSpec {
            instance_id: m.instance_id.clone(),
            project_id: "rv".into(),
            name: format!("data-{}", m.instance_id),
            region: "nyc3".into(),
            size_gigabytes: 10,
            filesystem_type: Some("ext4".into()),
        }];
    }
    let mut bare = batch("rv", 10);
    for m in &mut bare.members {
        m.instance_id = format!("{}-b", m.instance_id);
    }
    // Each batch is reported as soon as it is made.
    let reported = std::sync::Mutex::new(Vec::new());
    let r = do_
        .ensure_round_with(
            &[with_vol.clone(), bare.clone()],
            RoundStart::LookUp,
            &|pos, machines| {
                reported.lock().unwrap().push((pos, machines.len()));
            },
        )
        .await
        .unwrap();
    let mut reported = reported.into_inner().unwrap();
    reported.sort_unstable();
    assert_eq!(reported, vec![(0, 3), (1, 10)]);
    let first = r[0].as_ref().unwrap();
    assert_eq!(first.len(), 3);
    for e in first {
        assert_eq!(e.volumes.len(), 1);
        assert_eq!(
            e.machine.volume_ids,
            vec![e.volumes[0].provider_ref.clone()]
        );
    }
    assert_eq!(r[1].as_ref().unwrap().len(), 10);
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/calls/droplets_list/200"), 1);
    assert_eq!(stat(&s, "/calls/volumes_list/200"), 1);
    assert_eq!(stat(&s, "/calls/volumes_create/201"), 3);
    assert_eq!(
        stat(&s, "/calls/droplets_create/202"),
        4,
        "3 with volumes + 1 multi-create"
    );
    assert_eq!(stat(&s, "/calls/volumeActions_post_byId/202"), 0);
    assert_eq!(stat(&s, "/total_calls"), 9);
    assert_eq!(stat(&s, "/volumes/attached"), 3);
    // Again: found, nothing made.
    let again = do_.ensure_round(&[with_vol, bare]).await.unwrap();
    assert_eq!(
        again[0].as_ref().unwrap()[2].volumes,
        first[2].volumes,
        "same volumes found"
    );
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/droplets/created"), 13);
    assert_eq!(stat(&s, "/total_calls"), 11);
    assert_eq!(stat(&s, "/orphans/count"), 0);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
}

/// A round the caller knows is new spends no call on a look-up: its creates are its only calls.
/// The same round again (as after a crash) looks up and finds them.
#[tokio::test]
async fn a_new_round_creates_without_a_look_up() {
    let (fake, do_) = setup(vec![], "t-round-new").await;
    let a = batch("rn", 10);
    let mut b = batch("rn", 10);
    for m in &mut b.members {
        m.instance_id = format!("{}-b", m.instance_id);
    }
    let r = do_
        .ensure_round_with(&[a.clone(), b.clone()], RoundStart::New, &|_, _| {})
        .await
        .unwrap();
    assert!(r.iter().all(|b| b.as_ref().is_ok_and(|m| m.len() == 10)));
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/calls/droplets_create/202"), 2);
    assert_eq!(stat(&s, "/total_calls"), 2, "no look-up");
    let again = do_.ensure_round(&[a, b]).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap()[0], r[0].as_ref().unwrap()[0]);
    let s = fake.fake.stats();
    assert_eq!(stat(&s, "/calls/droplets_list/200"), 1);
    assert_eq!(stat(&s, "/droplets/created"), 20);
    assert_eq!(stat(&s, "/duplicates/count"), 0);
}

#[tokio::test]
async fn machines_are_listed_by_tag() {
    let (_fake, do_) = setup(vec![], "t-orphans").await;
    do_.ensure_machines(&batch("po", 3)).await.unwrap();
    // A talis droplet that names no instance.
    do_.create_droplets(&DropletCreate {
        name: Some("stray".into()),
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: vec![tags::TALIS.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let all = do_.list_tagged(tags::TALIS).await.unwrap();
    let mut names: Vec<_> = all.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "po-web-0.ipo-i0",
            "po-web-1.ipo-i1",
            "po-web-2.ipo-i2",
            "stray"
        ]
    );
    let stray = all.iter().find(|m| m.name == "stray").unwrap();
    assert_eq!(stray.instance_id, None);
    assert_eq!(
        do_.list_tagged(&tags::project("po")).await.unwrap().len(),
        3
    );
    assert!(do_.list_tagged("not a tag").await.is_err());
}

#[tokio::test]
async fn catalogue_account_keys_and_actions() {
    let (_fake, do_) = setup(vec![], "t-misc").await;
    assert!(
        do_.list_regions()
            .await
            .unwrap()
            .iter()
            .any(|r| r.slug == "nyc3")
    );
    assert!(
        do_.list_sizes()
            .await
            .unwrap()
            .iter()
            .any(|s| s.slug == "s-1vcpu-1gb")
    );
    assert!(
        do_.list_images()
            .await
            .unwrap()
            .iter()
            .any(|i| i.slug.as_deref() == Some("ubuntu-24-04-x64"))
    );
    assert_eq!(do_.account().await.unwrap().status, "active");
    let key = do_
        .create_ssh_key("laptop", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q me@host")
        .await
        .unwrap();
    assert_eq!(do_.list_ssh_keys().await.unwrap(), vec![key.clone()]);
    let mut s = spec("k1", "pk");
    s.ssh_keys = vec![key.id.to_string(), key.fingerprint.clone()];
    let m = do_.ensure_machine(&s).await.unwrap();
    let id: u64 = m.provider_ref.parse().unwrap();
    let action = do_.droplet_action(id, "power_off").await.unwrap();
    assert_eq!(action.kind, "power_off");
    assert_eq!(do_.get_droplet(id).await.unwrap().unwrap().status, "off");
    assert_eq!(do_.get_droplet(999).await.unwrap(), None);
}

/// The client's request bodies validate against DigitalOcean's spec: the fake checks every body
/// against the vendored request schemas and would answer 400.
#[tokio::test]
async fn client_requests_validate_against_the_spec() {
    let fake = fakecloud::spawn(FakeConfig {
        validate_requests: true,
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let do_ = client(&fake.base_url(), "t-spec");
    let key = do_
        .create_ssh_key("ci", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q ci@host")
        .await
        .unwrap();
    let mut b = batch("pspec", 3);
    b.ssh_keys = vec![key.id.to_string(), key.fingerprint];
    b.user_data = Some("#!/bin/sh\necho hi\n".into());
    b.extra_tags = vec!["env:test".into()];
    let ms = do_.ensure_machines(&b).await.unwrap();
    let m = do_.ensure_machine(&spec("solo", "pspec")).await.unwrap();
    let vs = VolumeSpec {
        instance_id: "solo".into(),
        project_id: "pspec".into(),
        name: "data-solo".into(),
        region: "nyc3".into(),
        size_gigabytes: 5,
        filesystem_type: Some("ext4".into()),
    };
    let v = do_.ensure_volume(&vs).await.unwrap();
    do_.attach_volume(&v.provider_ref, &m.provider_ref)
        .await
        .unwrap();
    do_.delete_volumes(&["solo".into()]).await.unwrap();
    do_.droplet_action(ms[0].provider_ref.parse().unwrap(), "power_cycle")
        .await
        .unwrap();
    do_.create_tag("extra-tag").await.unwrap();

    let s = fake.fake.stats();
    let bad: Vec<String> = s["calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, by_status)| by_status.get("400").is_some())
        .map(|(op, _)| op.clone())
        .collect();
    assert!(
        bad.is_empty(),
        "requests refused by the spec check: {bad:?} ({s})"
    );

    // The check is live: a body DigitalOcean would refuse is refused.
    let r = reqwest::Client::new()
        .post(format!("{}/v2/droplets", fake.base_url()))
        .bearer_auth("t-spec")
        .json(&serde_json::json!({"name": "x", "region": "nyc3", "size": 1, "image": "ubuntu-24-04-x64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A droplet made by an older client (plain name, instance tag) is found, not made again.
#[tokio::test]
async fn a_droplet_with_the_instance_tag_is_found() {
    let (fake, do_) = setup(vec![], "t-legacy").await;
    let s = spec("lg1", "plg");
    let old = do_
        .create_droplets(&DropletCreate {
            name: Some(s.name.clone()),
            region: s.region.clone(),
            size: s.size.clone(),
            image: s.image.clone(),
            tags: vec![
                tags::TALIS.into(),
                tags::project("plg"),
                tags::instance("lg1"),
            ],
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id;
    let m = do_.ensure_machine(&s).await.unwrap();
    assert_eq!(m.provider_ref, old.to_string());
    assert_eq!(m.instance_id.as_deref(), Some("lg1"));
    assert_eq!(stat(&fake.fake.stats(), "/droplets/created"), 1);
    do_.delete_machines("plg", &["lg1".into()]).await.unwrap();
    assert_eq!(stat(&fake.fake.stats(), "/droplets/live"), 0);
}

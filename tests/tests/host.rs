//! talis-host against the real `spin-test` component (built by `cargo xtask build`): routing
//! precedence, Spin's request headers, SQLite, variables, key-value, outbound HTTP allowed and
//! denied (to loopback servers), traps, limits, shutdown and manifest errors. Every test
//! starts its own host process with its own state directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use talis_stack::host::{self, Host, HostOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn test_app() -> PathBuf {
    talis_stack::workspace_root().join("tests/components/spin-test/spin.toml")
}

fn wasm() -> Result<PathBuf> {
    let w = talis_stack::wasm("spin-test-component");
    ensure!(
        w.exists(),
        "{} is missing: run `cargo xtask build` first",
        w.display()
    );
    Ok(w)
}

/// Options for the test app with a private state directory and the required variable set.
fn options(dir: &Path) -> Result<HostOptions> {
    wasm()?;
    let mut o = HostOptions::new(test_app(), "/hello").variable("api_token", "s3cret");
    o.state_dir = Some(dir.join("state"));
    o.ready_timeout = Duration::from_secs(90);
    Ok(o)
}

async fn start(opts: &HostOptions, dir: &Path) -> Result<Host> {
    host::start(opts, &dir.join("logs")).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

async fn get(host: &Host, path: &str) -> Result<(u16, String)> {
    let r = client().get(host.url(path)).send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

async fn get_json(host: &Host, path: &str) -> Result<Value> {
    let (status, body) = get(host, path).await?;
    ensure!(status == 200, "GET {path}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

async fn sql(host: &Host, path: &str, body: Value) -> Result<(u16, Value)> {
    let r = client().post(host.url(path)).json(&body).send().await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    let v = serde_json::from_str(&text).with_context(|| format!("{path}: {status} {text}"))?;
    Ok((status, v))
}

/// A loopback HTTP server answering `body` to everything and counting connections.
async fn loopback_server(body: &'static str) -> Result<(u16, Arc<AtomicUsize>)> {
    slow_loopback_server(body, Duration::ZERO).await
}

/// Like `loopback_server`, answering each request only after `delay`.
async fn slow_loopback_server(
    body: &'static str,
    delay: Duration,
) -> Result<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                // Read the request head, then answer and close.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok((port, hits))
}

#[tokio::test]
async fn routing_precedence_and_spin_headers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    let route_of = |v: &Value| v["headers"]["spin-raw-component-route"].clone();

    // Exact beats parameter beats wildcard; longer beats shorter.
    for (path, route) in [
        ("/exact", "/exact"),
        ("/exact/", "/exact"),
        ("/users/me", "/users/me"),
        ("/users/42", "/users/:id"),
        ("/users/42/files", "/users/:user_id/files/..."),
        ("/users/42/files/a/b", "/users/:user_id/files/..."),
        ("/users", "/..."),
        ("/users/42/other", "/..."),
        ("/", "/..."),
    ] {
        let v = get_json(&h, path).await?;
        assert_eq!(route_of(&v), json!(route), "{path}: {v}");
    }

    // Every header Spin sets, on a parameter + wildcard route with a query string.
    let v = get_json(&h, "/users/42/files/a/b/?x=1&y=2").await?;
    let hd = &v["headers"];
    assert_eq!(
        hd["spin-full-url"],
        json!(format!("{}/users/42/files/a/b/?x=1&y=2", h.base_url))
    );
    assert_eq!(hd["spin-path-info"], json!("/a/b/"));
    assert_eq!(hd["spin-matched-route"], json!("/users/:user_id/files/..."));
    assert_eq!(
        hd["spin-raw-component-route"],
        json!("/users/:user_id/files/...")
    );
    assert_eq!(hd["spin-component-route"], json!("/users/:user_id/files"));
    assert_eq!(hd["spin-base-path"], json!("/"));
    assert_eq!(hd["spin-path-match-user-id"], json!("42"));
    let client_addr = hd["spin-client-addr"].as_str().unwrap_or_default();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");
    assert!(client_addr[10..].parse::<u16>().is_ok(), "{client_addr}");

    let v = get_json(&h, "/users/7").await?;
    assert_eq!(v["headers"]["spin-path-match-id"], json!("7"));
    assert_eq!(v["headers"]["spin-path-info"], json!(""));
    assert_eq!(v["headers"]["spin-component-route"], json!("/users/:id"));

    // A client cannot forge the Spin headers.
    let r = client()
        .get(h.url("/exact"))
        .header("spin-path-info", "/forged")
        .send()
        .await?;
    let v: Value = r.json().await?;
    assert_eq!(v["headers"]["spin-path-info"], json!(""));

    // The wildcard prefix goes to the second component; the private route is unroutable.
    let v = get_json(&h, "/limited/x").await?;
    assert_eq!(v["headers"]["spin-component-route"], json!("/limited"));
    assert_eq!(v["headers"]["spin-path-info"], json!("/x"));
    Ok(())
}

#[tokio::test]
async fn unmatched_path_is_404() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"spin_manifest_version = 2
[application]
name = "only-api"
[[trigger.http]]
route = "/api/..."
component = "api"
[component.api]
source = {:?}
"#,
            wasm()?.display().to_string()
        ),
    )?;
    let h = start(&HostOptions::new(&manifest, "/api/hello"), dir.path()).await?;
    assert_eq!(get(&h, "/other").await?.0, 404);
    assert_eq!(get(&h, "/api").await?.0, 200);
    assert_eq!(get(&h, "/apix").await?.0, 404);
    // Spin's default state directory: `.spin` beside the manifest.
    assert!(dir.path().join(".spin").is_dir());
    Ok(())
}

fn typed_row() -> Value {
    json!([{"integer": 7}, {"real": 1.5}, {"text": "héllo"}, {"blob": [0, 1, 255]}, "null"])
}

#[tokio::test]
async fn sqlite_types_versions_and_permissions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;

    let (s, v) = sql(
        &h,
        "/db/x",
        json!({"sql": "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)"}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(
        &h,
        "/db/x",
        json!({"sql": "INSERT INTO t VALUES (?, ?, ?, ?, ?)", "params": typed_row()}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(
        &h,
        "/db3/x",
        json!({"sql": "INSERT INTO t VALUES (?, ?, ?, ?, ?)", "params": typed_row()}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changes"], json!(1));
    assert_eq!(v["last_insert_rowid"], json!(2));

    for path in ["/db/x", "/db3/x"] {
        let (s, v) = sql(
            &h,
            path,
            json!({"sql": "SELECT i, r, s, b, n FROM t WHERE i = ?", "params": [{"integer": 7}]}),
        )
        .await?;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["columns"], json!(["i", "r", "s", "b", "n"]));
        assert_eq!(v["rows"], json!([typed_row(), typed_row()]), "{path}");
    }

    // SQL errors are reported to the guest, not as a trap.
    let (s, v) = sql(&h, "/db/x", json!({"sql": "SELECT * FROM missing"})).await?;
    assert_eq!(s, 500);
    assert!(
        v["error"].as_str().unwrap_or_default().contains("missing"),
        "{v}"
    );

    // Without the label in `sqlite_databases`: access denied, for both versions and for
    // labels nobody defined.
    for path in ["/limited/db/x", "/limited/db3/x"] {
        let (s, v) = sql(&h, path, json!({"sql": "SELECT 1"})).await?;
        assert_eq!(s, 403, "{path}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .contains("AccessDenied")
        );
    }
    let (s, _) = sql(&h, "/db/x", json!({"db": "other", "sql": "SELECT 1"})).await?;
    assert_eq!(s, 403);

    // The data is in the real file Spin uses: <state>/sqlite_db.db.
    let conn = rusqlite::Connection::open(dir.path().join("state/sqlite_db.db"))?;
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM t WHERE b = x'0001ff' AND n IS NULL",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(n, 2);
    Ok(())
}

/// The host reuses SQLite connections between requests; a guest must still get what a fresh
/// connection gives: default pragmas, no TEMP objects, no transaction left open by another.
#[tokio::test]
async fn sqlite_connections_come_back_fresh() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    let read = |pragma: &'static str| {
        let h = &h;
        async move {
            let (s, v) = sql(h, "/db3/x", json!({ "sql": format!("PRAGMA {pragma}") })).await?;
            anyhow::ensure!(s == 200, "{pragma}: {v}");
            Ok::<_, anyhow::Error>(v["rows"][0][0].clone())
        }
    };
    let fresh_fk = read("foreign_keys").await?;
    let fresh_timeout = read("busy_timeout").await?;
    // Twice: the second time the statement may come from a statement cache.
    for _ in 0..2 {
        for set in ["PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 1"] {
            let (s, v) = sql(&h, "/db3/x", json!({ "sql": set })).await?;
            assert_eq!(s, 200, "{set}: {v}");
        }
        assert_eq!(read("foreign_keys").await?, fresh_fk);
        assert_eq!(read("busy_timeout").await?, fresh_timeout);
    }

    let (s, v) = sql(&h, "/db/x", json!({"sql": "CREATE TEMP TABLE scratch (x)"})).await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(&h, "/db/x", json!({"sql": "SELECT * FROM scratch"})).await?;
    assert_eq!(s, 500, "a TEMP table outlived its connection: {v}");

    // A transaction left open ends with its request: the next one is not inside it.
    let (s, v) = sql(&h, "/db/x", json!({"sql": "BEGIN"})).await?;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(&h, "/db/x", json!({"sql": "COMMIT"})).await?;
    assert_eq!(s, 500, "COMMIT outside a transaction must fail: {v}");
    Ok(())
}

#[tokio::test]
async fn sqlite_init_statements_and_runtime_config_label() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let init = dir.path().join("init.sql");
    std::fs::write(
        &init,
        "CREATE TABLE seed (v TEXT); INSERT INTO seed VALUES ('from-file');",
    )?;
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(
        &rc,
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"custom/app.db\"\n",
    )?;
    let mut o = options(dir.path())?;
    o.runtime_config = Some(rc);
    o.sqlite = vec![
        format!("@{}", init.display()),
        "INSERT INTO seed VALUES ('inline')".into(),
    ];
    let h = start(&o, dir.path()).await?;
    let (s, v) = sql(&h, "/db/x", json!({"sql": "SELECT v FROM seed ORDER BY v"})).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([[{"text": "from-file"}], [{"text": "inline"}]])
    );
    // The label points at the runtime config's file (relative to the config), not .spin.
    assert!(dir.path().join("custom/app.db").exists());
    assert!(!dir.path().join("state/sqlite_db.db").exists());
    Ok(())
}

#[tokio::test]
async fn variables_defaults_templates_and_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    assert_eq!(
        get(&h, "/var/greeting").await?,
        (200, "hello, world".into())
    );
    assert_eq!(get(&h, "/var/api_token").await?, (200, "s3cret".into()));
    let (s, body) = get(&h, "/var/undeclared").await?;
    assert_eq!(s, 404, "{body}");
    let (s, body) = get(&h, "/var/Not_Valid").await?;
    assert_eq!(s, 400, "{body}");
    // wasi:config/store sees the same component variables.
    assert_eq!(
        get(&h, "/config/greeting").await?,
        (200, "hello, world".into())
    );
    assert_eq!(get(&h, "/config/undeclared").await?.0, 404);
    // A component without variables sees none.
    assert_eq!(get(&h, "/limited/var/greeting").await?.0, 404);
    // `environment` and `files` from the manifest.
    assert_eq!(
        get(&h, "/env/SPIN_TEST_ENV").await?,
        (200, "from-manifest".into())
    );
    assert_eq!(
        get(&h, "/file/static/hello.txt").await?,
        (200, "static file content\n".into())
    );
    assert_eq!(get(&h, "/limited/file/static/hello.txt").await?.0, 404);
    drop(h);

    // Overriding a default through the environment.
    let dir2 = tempfile::tempdir()?;
    let o = options(dir2.path())?.variable("greeting", "bonjour");
    let h = start(&o, dir2.path()).await?;
    assert_eq!(
        get(&h, "/var/greeting").await?,
        (200, "bonjour, world".into())
    );
    Ok(())
}

#[tokio::test]
async fn required_variable_missing_stops_start_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut o = options(dir.path())?;
    o.variables.clear();
    o.ready_timeout = Duration::from_secs(30);
    let err = start(&o, dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("exited during start-up"), "{err}");
    assert!(err.contains("api_token"), "{err}");
    Ok(())
}

#[tokio::test]
async fn outbound_http_allowed_and_denied() -> Result<()> {
    let (allowed_port, allowed_hits) = loopback_server("pong").await?;
    let (denied_port, denied_hits) = loopback_server("should not be reached").await?;
    let dir = tempfile::tempdir()?;
    let o =
        options(dir.path())?.variable("allowed_origin", format!("http://127.0.0.1:{allowed_port}"));
    let h = start(&o, dir.path()).await?;
    let call = |target: String, path: &'static str| {
        let url = h.url(path);
        async move {
            let r = client().get(url).header("x-target", target).send().await?;
            let s = r.status().as_u16();
            anyhow::Ok((s, r.json::<Value>().await?))
        }
    };

    let (s, v) = call(format!("http://127.0.0.1:{allowed_port}/ping"), "/outbound").await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"status": 200, "body": "pong"}));
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    // Another port on the same host, and the allowed origin from a component without the
    // permission: denied like Spin does (HTTP-request-denied), with no connection made.
    let (s, v) = call(format!("http://127.0.0.1:{denied_port}/"), "/outbound").await?;
    assert_eq!(s, 502);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HttpRequestDenied"),
        "{v}"
    );
    let (s, v) = call(
        format!("http://127.0.0.1:{allowed_port}/"),
        "/limited/outbound",
    )
    .await?;
    assert_eq!(s, 502);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HttpRequestDenied"),
        "{v}"
    );
    assert_eq!(denied_hits.load(Ordering::SeqCst), 0);
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
    Ok(())
}

/// A burst larger than the instance pool waits for free slots instead of failing: with room
/// for two instances, eight requests that each hold their instance for 300 ms all succeed.
#[tokio::test]
async fn burst_beyond_the_instance_pool_waits_for_a_slot() -> Result<()> {
    let (port, hits) = slow_loopback_server("pong", Duration::from_millis(300)).await?;
    let dir = tempfile::tempdir()?;
    let mut o = options(dir.path())?.variable("allowed_origin", format!("http://127.0.0.1:{port}"));
    o.args = vec!["--max-instances".into(), "2".into()];
    let h = start(&o, dir.path()).await?;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = client()
            .get(h.url("/outbound"))
            .header("x-target", format!("http://127.0.0.1:{port}/ping"));
        burst.spawn(async move { anyhow::Ok(req.send().await?.status().as_u16()) });
    }
    let statuses: Vec<u16> = burst.join_all().await.into_iter().collect::<Result<_>>()?;
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(hits.load(Ordering::SeqCst), 8);
    Ok(())
}

#[tokio::test]
async fn key_value_default_store_and_permission() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    let c = client();
    assert_eq!(
        c.put(h.url("/kv/colour"))
            .body("blue")
            .send()
            .await?
            .status(),
        200
    );
    assert_eq!(get(&h, "/kv/colour").await?, (200, "blue".into()));
    assert_eq!(get(&h, "/kv/").await?, (200, "[\"colour\"]".into()));
    assert_eq!(c.delete(h.url("/kv/colour")).send().await?.status(), 200);
    assert_eq!(get(&h, "/kv/colour").await?.0, 404);
    assert_eq!(get(&h, "/limited/kv/colour").await?.0, 403);
    // Spin's SQLite-backed store file.
    c.put(h.url("/kv/k")).body("v").send().await?;
    let conn = rusqlite::Connection::open(dir.path().join("state/sqlite_key_value.db"))?;
    let v: Vec<u8> = conn.query_row(
        "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'k'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(v, b"v");
    Ok(())
}

#[tokio::test]
async fn wasi_keyvalue_store_atomics_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    let v = get_json(&h, "/wkv").await?;
    assert_eq!(
        v,
        json!({
            "a": "1",
            "exists": [true, false],
            "n": 10,
            "many": [["b1", "x"], ["missing", null]],
            "keys": ["a", "b1", "n"],
            "cas_before": null,
            "cas_first": true,
            "cas_second": "cas-failed",
            "c": "interfering",
        })
    );
    assert_eq!(get(&h, "/limited/wkv").await?.0, 403);
    Ok(())
}

#[tokio::test]
async fn traps_give_500_and_the_host_survives() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut h = start(&options(dir.path())?, dir.path()).await?;
    for path in ["/panic", "/trap", "/noresponse", "/limited/panic"] {
        assert_eq!(get(&h, path).await?.0, 500, "{path}");
        assert_eq!(get(&h, "/hello").await?, (200, "hello, world".into()));
    }
    assert!(h.service.is_running());
    // Component stdout/stderr go to the host's log.
    assert_eq!(get(&h, "/log/marker-7f3a").await?.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = h.service.log_tail(200);
        if log.contains("spin-test stdout: marker-7f3a")
            && log.contains("spin-test stderr: marker-7f3a")
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "component output not in the host log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn request_body_limit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut o = options(dir.path())?;
    o.args = vec!["--max-request-body".into(), "1024".into()];
    let h = start(&o, dir.path()).await?;
    let c = client();
    let ok = c.post(h.url("/echo")).body("[1,2,3]").send().await?;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await?, "[1,2,3]");
    let big = c.post(h.url("/echo")).body(vec![b' '; 4096]).send().await?;
    assert_eq!(big.status(), 413);
    // Without Content-Length (chunked), the limit still holds.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port)).await?;
    let chunk = " ".repeat(800);
    let raw = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    tcp.write_all(raw.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    Ok(())
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut h = start(&options(dir.path())?, dir.path()).await?;
    let started = Instant::now();
    // SIGTERM first; SIGKILL only after 20 s. A graceful exit is much faster than that.
    h.service.stop(Duration::from_secs(20)).await?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(h.service.log_tail(20).contains("shutting down"));
    Ok(())
}

#[tokio::test]
async fn bad_manifest_names_line_and_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"bad\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"nope\"\n",
    )?;
    let mut o = HostOptions::new(&manifest, "/");
    o.ready_timeout = Duration::from_secs(30);
    let err = start(&o, dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("trigger.http[0].component"), "{err}");
    Ok(())
}

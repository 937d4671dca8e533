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
use talis_e2e::metrics::sample;
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

/// Writes `request` on a raw connection and reads until the host closes it (or `patience`
/// runs out, which is an error: the host kept the connection open).
async fn raw_exchange(host: &Host, request: &[u8], patience: Duration) -> Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", host.port)).await?;
    tcp.write_all(request).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(patience, tcp.read_to_end(&mut answer))
        .await
        .context("the host kept the connection open")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The host's metrics, parsed as a Prometheus scraper would.
async fn scrape(host: &Host, path: &str) -> Result<prometheus_parse::Scrape> {
    talis_e2e::metrics::parse(client().get(host.url(path)).send().await?).await
}

fn with_args(mut o: HostOptions, args: &[&str]) -> HostOptions {
    o.args.extend(args.iter().map(|a| a.to_string()));
    o
}

/// Slowloris: a client that sends part of its headers and then nothing has its connection
/// closed after the header read timeout; an idle kept-alive connection too.
#[tokio::test]
async fn slow_headers_are_cut_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(options(dir.path())?, &["--header-read-timeout", "300ms"]);
    let h = start(&o, dir.path()).await?;
    let answer = raw_exchange(
        &h,
        b"GET /hello HTTP/1.1\r\nhost: localhost\r\nx-slow: 1",
        Duration::from_secs(15),
    )
    .await?;
    assert!(answer.is_empty(), "{answer}");
    // A kept-alive connection that goes quiet after one request is closed as well.
    let answer = raw_exchange(
        &h,
        b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n",
        Duration::from_secs(15),
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&h, "/hello").await?.0, 200);
    let m = scrape(&h, "/metrics").await?;
    assert!(
        sample(&m, "talis_host_timeouts_total", &[("kind", "header_read")]) >= 2.0,
        "{:?}",
        m.samples
    );
    Ok(())
}

/// A client that sends half its body and then nothing gets 408 naming the limit, and the
/// connection is closed.
#[tokio::test]
async fn half_a_body_gets_408() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(options(dir.path())?, &["--body-read-timeout", "300ms"]);
    let h = start(&o, dir.path()).await?;
    let answer = raw_exchange(
        &h,
        b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{\"half\":",
        Duration::from_secs(15),
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-read-timeout = 300ms"), "{answer}");
    let m = scrape(&h, "/metrics").await?;
    assert_eq!(
        sample(&m, "talis_host_timeouts_total", &[("kind", "body_read")]),
        1.0
    );
    Ok(())
}

/// A guest that computes forever (epoch interruption) and one blocked in a host call (the
/// timeout around the whole execution) are stopped at the deadline with 504 naming it; the
/// host keeps serving.
#[tokio::test]
async fn execution_deadline_stops_the_guest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(options(dir.path())?, &["--execution-deadline", "1s"]);
    let mut h = start(&o, dir.path()).await?;
    for path in ["/spin", "/sleep/600000", "/limited/spin"] {
        let (status, body) = get(&h, path).await?;
        assert_eq!(status, 504, "{path}: {body}");
        assert!(body.contains("--execution-deadline = 1s"), "{path}: {body}");
        assert_eq!(get(&h, "/hello").await?, (200, "hello, world".into()));
    }
    // A request within the deadline is untouched.
    assert_eq!(get(&h, "/sleep/10").await?, (200, "slept".into()));
    assert!(h.service.is_running());
    let m = scrape(&h, "/metrics").await?;
    let hits = |c| {
        sample(
            &m,
            "talis_host_execution_deadline_hits_total",
            &[("component", c)],
        )
    };
    assert_eq!((hits("main"), hits("limited")), (2.0, 1.0));
    assert_eq!(
        sample(
            &m,
            "talis_host_requests_total",
            &[("route", "/..."), ("status", "504")]
        ),
        2.0
    );
    assert_eq!(sample(&m, "talis_host_guest_traps_total", &[]), 0.0);
    Ok(())
}

/// An outbound service that accepts the connection and never answers: the guest gets an
/// error after the host's first-byte timeout (not wasi-http's 600 s), the log names the limit.
#[tokio::test]
async fn outbound_first_byte_timeout() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // accepted, read by nobody, never answered
        }
    });
    let dir = tempfile::tempdir()?;
    let o = options(dir.path())?.variable("allowed_origin", format!("http://127.0.0.1:{port}"));
    let o = with_args(o, &["--outbound-first-byte-timeout", "500ms"]);
    let h = start(&o, dir.path()).await?;
    let r = client()
        .get(h.url("/outbound"))
        .header(
            "x-target",
            format!("http://127.0.0.1:{port}/slow?token=not-logged"),
        )
        .send()
        .await?;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await?;
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ConnectionReadTimeout"),
        "{v}"
    );
    let log = h.service.log_tail(100);
    assert!(
        log.contains("--outbound-first-byte-timeout = 500ms"),
        "{log}"
    );
    assert!(!log.contains("not-logged"), "outbound path logged:\n{log}");
    let m = scrape(&h, "/metrics").await?;
    assert_eq!(
        sample(
            &m,
            "talis_host_timeouts_total",
            &[("kind", "outbound_first_byte")]
        ),
        1.0
    );
    Ok(())
}

/// With every instance busy, a request waits at most the instance wait timeout, then gets
/// 503 with Retry-After naming the limit; once the slot frees up, requests succeed again.
#[tokio::test]
async fn instance_wait_is_bounded() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(
        options(dir.path())?,
        &["--max-instances", "1", "--instance-wait-timeout", "300ms"],
    );
    let h = start(&o, dir.path()).await?;
    let long = client().get(h.url("/sleep/3000")).send();
    let long = tokio::spawn(long);
    // Wait until the long request holds the only slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry_after, body) = loop {
        let r = client().get(h.url("/hello")).send().await?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = r.text().await?;
        if status != 200 || Instant::now() > deadline {
            break (status, retry_after, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body.contains("--instance-wait-timeout = 300ms"), "{body}");
    assert_eq!(long.await??.status(), 200);
    assert_eq!(get(&h, "/hello").await?.0, 200);
    let m = scrape(&h, "/metrics").await?;
    assert!(sample(&m, "talis_host_instance_pool_waits_total", &[]) >= 1.0);
    assert!(sample(&m, "talis_host_instance_pool_wait_seconds_total", &[]) >= 0.3);
    assert!(
        sample(
            &m,
            "talis_host_timeouts_total",
            &[("kind", "instance_wait")]
        ) >= 1.0
    );
    Ok(())
}

/// Beyond --max-connections, a new connection is not served until an open one closes.
#[tokio::test]
async fn max_connections_makes_new_connections_wait() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(options(dir.path())?, &["--max-connections", "1"]);
    let h = start(&o, dir.path()).await?;
    // The ready probe's connection may still be open: wait until a kept-alive connection of
    // our own is served, then hold it.
    let request = b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(("127.0.0.1", h.port)).await?;
    first.write_all(request).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(40), first.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut second = tokio::net::TcpStream::connect(("127.0.0.1", h.port)).await?;
    second.write_all(request).await?;
    let waited = tokio::time::timeout(Duration::from_secs(1), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "a second connection was served beyond the limit"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(15), second.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let log = h.service.log_tail(100);
    assert!(log.contains("--max-connections = 1)"), "{log}");
    Ok(())
}

#[tokio::test]
async fn mount_destination_escaping_the_root_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let app = talis_stack::workspace_root().join("tests/components/spin-test");
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"spin_manifest_version = 2
[application]
name = "escape"
[[trigger.http]]
route = "/..."
component = "main"
[component.main]
source = {:?}
files = [
  {{ source = {:?}, destination = "/../../../escaped.txt" }},
]
"#,
            wasm()?.display().to_string(),
            app.join("static/hello.txt").display().to_string()
        ),
    )?;
    let mut o = HostOptions::new(&manifest, "/hello");
    o.state_dir = Some(dir.path().join("state"));
    o.ready_timeout = Duration::from_secs(30);
    let err = start(&o, dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("line 10"), "{err}");
    assert!(err.contains("component.main.files"), "{err}");
    assert!(err.contains("/../../../escaped.txt"), "{err}");
    // state/files/main/../../../escaped.txt would be the temp directory itself.
    assert!(!dir.path().join("escaped.txt").exists());
    Ok(())
}

/// `GET /metrics` is served by the host: Prometheus text with the expected series, labelled
/// by the manifest's route pattern (never the raw path), counting the requests made.
#[tokio::test]
async fn metrics_count_requests_by_route_pattern() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    for path in ["/users/1", "/users/2", "/exact", "/panic"] {
        get(&h, path).await?;
    }
    let m = scrape(&h, "/metrics").await?;
    let requests = |route, status| {
        sample(
            &m,
            "talis_host_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/users/:id", "200"), 2.0);
    assert_eq!(requests("/exact", "200"), 1.0);
    assert_eq!(requests("/...", "500"), 1.0);
    assert!(
        m.samples.iter().all(|s| s
            .labels
            .get("route")
            .is_none_or(|r| !r.starts_with("/users/1"))),
        "a raw path became a label"
    );
    assert_eq!(
        sample(
            &m,
            "talis_host_request_duration_seconds_count",
            &[("route", "/users/:id")]
        ),
        2.0
    );
    assert_eq!(
        sample(&m, "talis_host_guest_traps_total", &[("component", "main")]),
        1.0
    );
    assert!(sample(&m, "talis_host_connections_open", &[]) >= 1.0);
    for name in [
        "talis_host_instance_pool_waits_total",
        "talis_host_instance_pool_wait_seconds_total",
        "talis_host_connection_limit_waits_total",
    ] {
        assert!(m.samples.iter().any(|s| s.metric == name), "{name} missing");
    }
    for help in ["talis_host_execution_deadline_hits", "talis_host_timeouts"] {
        assert!(
            m.docs.keys().any(|k| k.starts_with(help)),
            "{help} not described: {:?}",
            m.docs.keys()
        );
    }
    // The scrape itself is counted under its own path.
    let again = scrape(&h, "/metrics").await?;
    assert!(
        sample(
            &again,
            "talis_host_requests_total",
            &[("route", "/metrics")]
        ) >= 1.0
    );
    drop(h);

    // Another path, or none: then `/metrics` reaches the app's own route.
    let dir = tempfile::tempdir()?;
    let h = start(
        &with_args(options(dir.path())?, &["--metrics-path", "/_host/metrics"]),
        dir.path(),
    )
    .await?;
    scrape(&h, "/_host/metrics").await?;
    let v = get_json(&h, "/metrics").await?;
    assert_eq!(v["headers"]["spin-path-info"], json!("/metrics"));
    drop(h);
    let dir = tempfile::tempdir()?;
    let h = start(
        &with_args(options(dir.path())?, &["--no-metrics"]),
        dir.path(),
    )
    .await?;
    let v = get_json(&h, "/metrics").await?;
    assert_eq!(v["headers"]["spin-path-info"], json!("/metrics"));
    Ok(())
}

/// Spin's reserved routes, answered before the app's `/...` catch-all.
#[tokio::test]
async fn well_known_health_and_info() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let h = start(&options(dir.path())?, dir.path()).await?;
    assert_eq!(
        get(&h, "/.well-known/spin/health").await?,
        (200, "OK".into())
    );
    let info = get_json(&h, "/.well-known/spin/info").await?;
    assert_eq!(info, json!({"name": "spin-test", "version": "0.1.0"}));
    assert_eq!(get(&h, "/.well-known/spin/other").await?.0, 404);
    Ok(())
}

/// `--log-format json`: every line the host writes is a JSON object, component output
/// included; variable values (secrets) are never logged.
#[tokio::test]
async fn json_logs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let o = with_args(options(dir.path())?, &["--log-format", "json"]);
    let h = start(&o, dir.path()).await?;
    assert_eq!(get(&h, "/log/marker-json-5e1").await?.0, 200);
    assert_eq!(get(&h, "/var/api_token").await?, (200, "s3cret".into()));
    assert_eq!(get(&h, "/panic").await?.0, 500);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = h.service.log_tail(10_000);
        let lines: Vec<Value> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect::<Result<_>>()?;
        assert!(!log.contains("s3cret"), "a secret was logged:\n{log}");
        let guest = lines.iter().find(|v| {
            v["message"] == json!("spin-test stderr: marker-json-5e1")
                && v["component"] == json!("main")
        });
        if guest.is_some() && lines.iter().any(|v| v["message"] == json!("serving")) {
            assert!(lines.iter().all(|v| v["level"].is_string()));
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "expected log lines missing:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

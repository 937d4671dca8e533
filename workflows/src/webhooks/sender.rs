//! The HTTP side of a delivery: one signed POST, through a resolver that refuses addresses the
//! SSRF guard refuses (checked on the resolved address, right before connecting, so a name
//! that re-resolves elsewhere later cannot slip through), without redirects or proxies. A URL
//! whose host is a literal address is checked before the request (no resolver runs for it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use talis_api::RowId;
use talis_api::egress::{self, AllowList, NameCheck, Refused};
use talis_api::methods::internal as m;
use talis_api::signing::Secret;
use talis_api::webhooks::WebhookEndpointGet;

use super::Outcomes;
use super::retry::RetryPolicy;
use crate::config::Config;
use crate::rpc::{Internal, RpcError};

/// The setting an operator changes to allow a refused host (named in refusals).
pub const ALLOW_SETTING: &str = "TALIS_WEBHOOK_ALLOW_HOSTS";
/// How long a webhook's URL and secret are reused before asking the API again (a webhook
/// deleted meanwhile may still get a message within this window).
const ENDPOINT_TTL: Duration = Duration::from_secs(1);
/// Most of an answer's body read (and dropped) so the connection can be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where a webhook sends and the key it signs with; never journaled, never logged.
pub struct Endpoint {
    pub active: bool,
    url: reqwest::Url,
    secret: Option<Secret>,
}

/// What an attempt's request came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The receiver answered (any status), maybe asking to wait (`Retry-After`, seconds).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The SSRF guard refused the address: nothing was sent.
    Refused(String),
    /// No answer: DNS, connection, TLS or timeout (a transient failure).
    Failed(String),
}

/// Sends webhook messages; shared by every delivery of the process.
pub struct Sender {
    http: reqwest::Client,
    allow: Arc<AllowList>,
    pub retry: RetryPolicy,
    endpoints: Mutex<HashMap<i64, (Instant, Arc<Endpoint>)>>,
    /// Attempt outcomes, for metrics.
    pub outcomes: Outcomes,
}

impl Sender {
    pub fn new(config: &Config) -> Result<Self> {
        let allow = Arc::new(
            AllowList::parse(&config.webhook_allow_hosts)
                .map_err(anyhow::Error::msg)
                .context(ALLOW_SETTING)?,
        );
        let pinned = parse_pins(&config.webhook_resolve).context("TALIS_WEBHOOK_RESOLVE")?;
        let timeout = Duration::from_secs(config.webhook_timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
                pinned,
            }))
            // A redirect would leave the checked host (and the spec counts 3xx as a failure).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf to addresses the guard never saw.
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("Talis-Webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Self {
            http,
            allow,
            retry: RetryPolicy {
                initial: Duration::from_millis(config.webhook_retry_initial_ms.max(1)),
                max: Duration::from_secs(config.webhook_retry_max_secs.max(1)),
                retry_for: Duration::from_secs(config.webhook_retry_for_secs),
            },
            endpoints: Mutex::default(),
            outcomes: Outcomes::default(),
        })
    }

    /// The webhook's URL and key, from the API (`webhook.endpoint`), reused for a second.
    pub async fn endpoint(
        &self,
        rpc: &Internal,
        webhook: RowId,
    ) -> Result<Arc<Endpoint>, RpcError> {
        if let Some((at, e)) = self.endpoints.lock().expect("lock").get(&webhook.get())
            && at.elapsed() < ENDPOINT_TTL
        {
            return Ok(e.clone());
        }
        let got = rpc
            .call::<m::WebhookEndpointGet>(&WebhookEndpointGet {
                webhook_id: webhook,
            })
            .await?;
        let url = reqwest::Url::parse(&got.url);
        let endpoint = Arc::new(match (got.active, url, Secret::parse(&got.secret)) {
            (true, Ok(url), Ok(secret)) => Endpoint {
                active: true,
                url,
                secret: Some(secret),
            },
            _ => Endpoint {
                active: false,
                url: reqwest::Url::parse("http://deleted.invalid/").expect("a valid URL"),
                secret: None,
            },
        });
        self.endpoints
            .lock()
            .expect("lock")
            .insert(webhook.get(), (Instant::now(), endpoint.clone()));
        Ok(endpoint)
    }

    /// POSTs one signed message (Standard Webhooks headers) and reports what came of it.
    pub async fn send(&self, endpoint: &Endpoint, message_id: &str, body: &str) -> Sent {
        let Some(secret) = &endpoint.secret else {
            return Sent::Failed("the webhook was deleted".into());
        };
        // The resolver checks names; a literal address never reaches it.
        if let Some(egress::Host::Ip(ip)) = egress::url_host(&endpoint.url)
            && let Err(r) = egress::check_ip(&ip.to_string(), ip, false, &self.allow)
        {
            return Sent::Refused(r.message(ALLOW_SETTING));
        }
        let timestamp = chrono_now_secs();
        let signature = secret.sign(message_id, timestamp, body.as_bytes());
        let sent = self
            .http
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                let retry_after = answer
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let mut read = 0;
                while read < MAX_ANSWER_BYTES {
                    match answer.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                Sent::Answered {
                    status,
                    retry_after,
                }
            }
            Err(e) => match refusal(&e) {
                Some(r) => Sent::Refused(r.message(ALLOW_SETTING)),
                None => Sent::Failed(describe(&e)),
            },
        }
    }
}

fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The guard's refusal inside a request error, if that is what stopped it.
fn refusal(e: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        source = s.source();
    }
    None
}

/// A request error in words, without the URL (it may carry a token) and with its causes.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    causes.dedup();
    if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// `host=address,host=address`: fixed addresses per name (a name may repeat).
fn parse_pins(s: &str) -> Result<HashMap<String, Vec<IpAddr>>> {
    let mut pins: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, addr)) = entry.split_once('=') else {
            bail!("'{entry}' is not host=address");
        };
        let ip: IpAddr = addr
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("'{entry}': not an address"))?;
        pins.entry(host.trim().to_ascii_lowercase())
            .or_default()
            .push(ip);
    }
    Ok(pins)
}

/// DNS for webhooks: the name is checked, then every address it resolves to (or is pinned
/// to); one refused address refuses the name. The connection then goes to a checked address.
struct GuardedResolver {
    allow: Arc<AllowList>,
    pinned: HashMap<String, Vec<IpAddr>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let allow = self.allow.clone();
        let pinned = self.pinned.get(&host).cloned();
        Box::pin(async move {
            let check = egress::check_name(&host, &allow)?;
            let addrs: Vec<IpAddr> = match pinned {
                Some(a) => a,
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect(),
            };
            if check == NameCheck::CheckAddresses {
                for ip in &addrs {
                    egress::check_ip(&host, *ip, true, &allow)?;
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn sender(env: &[(&str, &str)]) -> Sender {
        let mut args = vec![
            "talis-workflows".to_owned(),
            "--internal-secret=x".into(),
            "--do-token=t".into(),
        ];
        args.extend(env.iter().map(|(k, v)| format!("--{k}={v}")));
        Sender::new(&Config::parse_from(args)).unwrap()
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            active: true,
            url: reqwest::Url::parse(url).unwrap(),
            secret: Some(Secret::from_bytes([1; 32])),
        }
    }

    /// Refusals happen before any connection: these addresses are never contacted (and would
    /// answer nothing here anyway).
    #[tokio::test]
    async fn refused_addresses_are_never_contacted() {
        let s = sender(&[
            ("webhook-allow-hosts", "127.0.0.1"),
            (
                "webhook-resolve",
                "hook.test=127.0.0.2,meta.test=169.254.169.254",
            ),
        ]);
        for (url, says) in [
            (
                "http://hook.test:9/",
                "resolves to 127.0.0.2, a loopback address",
            ),
            ("http://meta.test/", "a cloud metadata endpoint"),
            ("http://127.0.0.2:9/", "127.0.0.2 is a loopback address"),
            ("http://[::ffff:10.0.0.1]:9/", "a private address"),
            (
                "http://metadata.google.internal/",
                "a cloud metadata endpoint",
            ),
        ] {
            match s.send(&endpoint(url), "msg_1", "{}").await {
                Sent::Refused(m) => assert!(m.contains(says), "{url}: {m}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn pins_are_host_equals_address() {
        let p = parse_pins(" A.test=127.0.0.2, a.test=[::1] ,b.test=10.0.0.1").unwrap();
        assert_eq!(
            p["a.test"],
            vec![IpAddr::from([127, 0, 0, 2]), "::1".parse().unwrap()]
        );
        assert!(parse_pins("a.test").is_err());
        assert!(parse_pins("a.test=nope").is_err());
    }
}

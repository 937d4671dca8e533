//! `talis events`: the event log, one page, or followed with the API's long-poll (`wait_ms`):
//! each call answers as soon as an event newer than the last one seen exists.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use talis_client::Client;
use talis_client::wire::events::MAX_WAIT_MS;
use talis_client::wire::*;

use crate::cli::{EventsArgs, Format};
use crate::output::{self, when};

/// Events asked for per call while following (catching up goes page by page).
const FOLLOW_PAGE: u32 = 1_000;
/// Consecutive failed calls tolerated while following (e.g. the API restarting).
const MAX_ERRORS: u32 = 5;
/// Pause after a failed call while following.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The longest long-poll that fits in the client's request timeout (with room for the answer).
pub fn long_poll_wait(request_timeout: Duration) -> Duration {
    request_timeout
        .saturating_sub(Duration::from_secs(5))
        .clamp(
            Duration::from_secs(1),
            Duration::from_millis(MAX_WAIT_MS.into()),
        )
}

/// One event as one line: when, id, kind, where, what.
pub fn line(e: &Event) -> String {
    let mut at = Vec::new();
    if let Some(p) = &e.project {
        at.push(format!("project {p}"));
    }
    if let Some(t) = e.task_id {
        at.push(format!("task {t}"));
    }
    if let Some(i) = e.instance_id {
        at.push(format!("instance {i}"));
    }
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" [{}]", at.join(" "))
    };
    format!(
        "{} #{} {}{place}: {}",
        when(&e.at),
        e.id,
        e.body.kind(),
        what(&e.body)
    )
}

/// What an event says, in a few words.
pub fn what(body: &EventBody) -> String {
    let from = |f: Option<String>| f.map(|f| format!("{f} → ")).unwrap_or_default();
    match body {
        EventBody::InstanceStatus(d) => {
            let mut s = format!(
                "{}{} ({})",
                from(d.from.map(|f| f.to_string())),
                d.to,
                d.step
            );
            if let Some(ip) = &d.public_ip {
                s.push_str(&format!(" ip {ip}"));
            }
            if let Some(m) = &d.provider_ref {
                s.push_str(&format!(" machine {m}"));
            }
            if let Some(err) = &d.error {
                s.push_str(&format!(": {err}"));
            }
            s
        }
        EventBody::TaskStatus(d) => {
            let mut s = format!("{}{}", from(d.from.map(|f| f.to_string())), d.to);
            if let Some(err) = &d.error {
                s.push_str(&format!(": {err}"));
            }
            s
        }
        EventBody::ApiCall(d) => format!(
            "{} by owner {} with key {}… (request {}) {}",
            d.method, d.owner_id, d.key_prefix, d.request_id, d.target
        ),
        EventBody::ProviderStep(d) => format!("{} {} {}", d.step, d.status, d.detail)
            .trim_end()
            .to_owned(),
        EventBody::Reconcile(d) => format!("destroyed {}", d.names.join(", ")),
    }
}

fn params(args: &EventsArgs, owner: Option<OwnerId>) -> Result<EventList> {
    let kinds = args
        .kinds
        .iter()
        .map(|k| {
            k.parse::<EventKind>()
                .map_err(|e| anyhow::anyhow!("--kind: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EventList {
        project: args.project.clone(),
        task_id: args.task,
        instance_id: args.instance,
        kinds: Some(kinds).filter(|k| !k.is_empty()),
        after: args.after.clone(),
        limit: args.limit,
        wait_ms: None,
        owner_id: owner,
    })
}

/// `talis events`: one page, or `--follow`.
pub async fn run(
    client: &Client,
    format: Format,
    owner: Option<OwnerId>,
    request_timeout: Duration,
    args: EventsArgs,
) -> Result<ExitCode> {
    let mut p = params(&args, owner)?;
    if !args.follow {
        output::print(format, &client.event_list(&p).await?)?;
        return Ok(ExitCode::SUCCESS);
    }
    p.limit = Some(args.limit.unwrap_or(FOLLOW_PAGE));
    p.wait_ms = Some(long_poll_wait(request_timeout).as_millis() as u32);
    let following = follow(client, format, p);
    tokio::select! {
        r = following => r,
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}

/// Prints every event after `p.after`, then each new one as it is written. With a task filter,
/// ends once the task has finished.
async fn follow(client: &Client, format: Format, mut p: EventList) -> Result<ExitCode> {
    let mut errors = 0;
    loop {
        let page = match client.event_list(&p).await {
            Ok(page) => {
                errors = 0;
                page
            }
            Err(e) => {
                errors += 1;
                if errors >= MAX_ERRORS {
                    bail!("following events: {e}");
                }
                eprintln!("! {e}; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let mut out = std::io::stdout().lock();
        let mut finished = false;
        for e in &page.rows {
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(e)?)?,
                Format::Table => writeln!(out, "{}", line(e))?,
            }
            finished |= p.task_id.is_some()
                && matches!(&e.body, EventBody::TaskStatus(d) if d.to.is_terminal());
        }
        out.flush()?;
        if let Some(last) = page.rows.last() {
            p.after = Some(last.id.to_string());
        }
        if finished && page.pagination.next_cursor.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_where_and_what() {
        let e: Event = serde_json::from_value(serde_json::json!({
            "id": 12, "at": "2026-01-02T03:04:05.678Z", "project": "p", "task_id": 3,
            "instance_id": 9, "kind": "instance.status",
            "data": {"from": "provisioning", "to": "ready", "step": "phone-home", "public_ip": "10.0.0.1"}
        }))
        .unwrap();
        assert_eq!(
            line(&e),
            "2026-01-02 03:04:05 #12 instance.status [project p task 3 instance 9]: provisioning → ready (phone-home) ip 10.0.0.1"
        );
        assert_eq!(
            long_poll_wait(Duration::from_secs(30)),
            Duration::from_secs(25)
        );
        assert_eq!(
            long_poll_wait(Duration::from_secs(120)),
            Duration::from_millis(MAX_WAIT_MS.into())
        );
        assert_eq!(
            long_poll_wait(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}

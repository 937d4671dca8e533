//! Printing results: JSON (stable, for scripts) or aligned tables (for people).

use std::io::{IsTerminal, Write};

use serde::Serialize;
use talis_client::wire::*;

use crate::cli::Format;

/// `--output`, else a table on a terminal and JSON when piped.
pub fn choose(flag: Option<Format>) -> Format {
    flag.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        }
    })
}

/// Rows under a header, columns padded to the widest cell.
#[derive(Debug, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// A line under the table (e.g. "page 1 of 3 · 120 total").
    pub footer: Option<String>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            ..Self::default()
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A two-column key/value table for one object.
    pub fn fields(pairs: Vec<(&'static str, String)>) -> Self {
        let mut t = Table::new(&["FIELD", "VALUE"]);
        for (k, v) in pairs {
            t.row(vec![k.to_string(), v]);
        }
        t
    }

    pub fn render(&self) -> String {
        if self.headers.is_empty() {
            return self.footer.clone().map(|f| f + "\n").unwrap_or_default();
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  ", w = widths[i]));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(self.headers.clone());
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        if let Some(f) = &self.footer {
            out.push_str(f);
            out.push('\n');
        }
        out
    }
}

/// Something printable as a table.
pub trait Render {
    fn table(&self) -> Table;
}

/// Prints `value` in the chosen format on stdout.
pub fn print<T: Serialize + Render>(format: Format, value: &T) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Table => value.table().render(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// "2026-11-25T20:13:02.123Z" → "2026-11-25 20:13:02".
pub fn when(ts: &str) -> String {
    ts.get(..19).unwrap_or(ts).replace('T', " ")
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

impl<T: Render + Empty> Render for Page<T> {
    fn table(&self) -> Table {
        let mut t = match self.rows.first() {
            Some(_) => {
                let mut merged = Table::default();
                for r in &self.rows {
                    let one = r.table();
                    merged.headers = one.headers;
                    merged.rows.extend(one.rows);
                }
                merged
            }
            None => T::empty(),
        };
        let p = &self.pagination;
        let mut footer = format!("{} of {} shown", self.rows.len(), p.total);
        if p.next_cursor.is_some() {
            footer.push_str(" · more with --cursor ");
            footer.push_str(p.next_cursor.as_deref().unwrap_or_default());
        }
        t.footer = Some(footer);
        t
    }
}

/// A row type's headers with no rows (for empty lists).
pub trait Empty {
    fn empty() -> Table;
}

impl<T: Row> Empty for T {
    fn empty() -> Table {
        Table::new(T::HEADERS)
    }
}

/// A type listed one row per value.
pub trait Row {
    const HEADERS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

impl<T: Row> Render for T {
    fn table(&self) -> Table {
        let mut t = Table::new(T::HEADERS);
        t.row(self.cells());
        t
    }
}

impl<T: Row> Render for Vec<T> {
    fn table(&self) -> Table {
        let mut t = Table::new(T::HEADERS);
        for r in self {
            t.row(r.cells());
        }
        t
    }
}

impl Row for Project {
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "STATUS", "DESCRIPTION", "CREATED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.status.to_string(),
            or_dash(&self.description),
            when(&self.created_at),
        ]
    }
}

impl Row for Instance {
    const HEADERS: &'static [&'static str] = &[
        "ID",
        "NAME",
        "STATUS",
        "PUBLIC IP",
        "REGION",
        "SIZE",
        "ERROR",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.status.to_string(),
            or_dash(&self.public_ip),
            self.region.clone(),
            self.size.clone(),
            or_dash(&self.error),
        ]
    }
}

impl Row for Task {
    const HEADERS: &'static [&'static str] =
        &["ID", "ACTION", "STATUS", "INSTANCES", "CREATED", "ERROR"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.action.to_string(),
            self.status.to_string(),
            self.instance_count.to_string(),
            when(&self.created_at),
            or_dash(&self.error),
        ]
    }
}

impl Row for User {
    const HEADERS: &'static [&'static str] = &["ID", "USERNAME", "EMAIL", "ROLE", "CREATED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.username.clone(),
            or_dash(&self.email),
            if self.role == 1 { "admin" } else { "user" }.into(),
            when(&self.created_at),
        ]
    }
}

impl Row for SshKey {
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "KEY", "CREATED"];
    fn cells(&self) -> Vec<String> {
        let key: String = self.public_key.chars().take(40).collect();
        let key = if self.public_key.chars().count() > 40 {
            key + "…"
        } else {
            key
        };
        vec![
            self.id.to_string(),
            self.name.clone(),
            key,
            when(&self.created_at),
        ]
    }
}

impl Row for ApiKey {
    const HEADERS: &'static [&'static str] = &["ID", "NAME", "PREFIX", "CREATED", "REVOKED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            or_dash(&self.name),
            format!("{}…", self.prefix),
            when(&self.created_at),
            self.revoked_at
                .as_deref()
                .map(when)
                .unwrap_or_else(|| "-".into()),
        ]
    }
}

impl Row for Event {
    const HEADERS: &'static [&'static str] =
        &["ID", "AT", "KIND", "PROJECT", "TASK", "INSTANCE", "WHAT"];
    fn cells(&self) -> Vec<String> {
        let id = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        vec![
            self.id.to_string(),
            when(&self.at),
            self.body.kind().to_string(),
            id(self.project.clone()),
            id(self.task_id.map(|t| t.to_string())),
            id(self.instance_id.map(|i| i.to_string())),
            crate::events::what(&self.body),
        ]
    }
}

impl Render for QuotaUsage {
    fn table(&self) -> Table {
        let mut t = Table::new(&["QUOTA", "USED", "LIMIT"]);
        let (l, u) = (&self.limits, &self.used);
        for (name, used, limit) in [
            ("instances", u.max_instances, l.max_instances),
            ("projects", u.max_projects, l.max_projects),
            ("api keys", u.max_api_keys, l.max_api_keys),
            ("ssh keys", u.max_ssh_keys, l.max_ssh_keys),
        ] {
            t.row(vec![name.into(), used.to_string(), limit.to_string()]);
        }
        t.footer = Some(format!("owner {}", self.owner_id));
        t
    }
}

impl Row for PublicIp {
    const HEADERS: &'static [&'static str] = &["ID", "PUBLIC IP"];
    fn cells(&self) -> Vec<String> {
        vec![self.id.to_string(), or_dash(&self.public_ip)]
    }
}

impl Render for PublicIps {
    fn table(&self) -> Table {
        let mut t = self.public_ips.table();
        t.footer = Some(format!(
            "{} of {} shown",
            self.public_ips.len(),
            self.pagination.total
        ));
        t
    }
}

impl Render for ProjectCreated {
    fn table(&self) -> Table {
        let mut t = self.project.table();
        t.footer = Some(match self.task_id {
            Some(id) => format!(
                "{} instances queued by task {id} · follow with `talis task watch {id}`",
                self.instance_ids.len()
            ),
            None => "no instances requested".into(),
        });
        t
    }
}

impl Render for InstancesCreated {
    fn table(&self) -> Table {
        let mut t = self.instances.table();
        let ids: Vec<String> = self.task_ids.iter().map(TaskId::to_string).collect();
        t.footer = Some(format!("queued by task {}", ids.join(", ")));
        t
    }
}

impl Render for TaskQueued {
    fn table(&self) -> Table {
        Table::fields(vec![
            (
                "task",
                self.task_id
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "- (nothing to do)".into()),
            ),
            ("instances", self.instance_ids.len().to_string()),
        ])
    }
}

impl Render for UserCreated {
    fn table(&self) -> Table {
        let mut t = Table::fields(vec![
            ("id", self.id.to_string()),
            ("api_key", self.api_key.clone()),
        ]);
        t.footer = Some("the API key is shown only once: store it now".into());
        t
    }
}

impl Render for UserGetResult {
    fn table(&self) -> Table {
        match (&self.user, &self.users) {
            (Some(u), _) => u.table(),
            (None, Some(us)) => us.table(),
            (None, None) => User::empty(),
        }
    }
}

impl Render for ApiKeyCreated {
    fn table(&self) -> Table {
        let mut t = Table::fields(vec![
            ("id", self.key.id.to_string()),
            ("name", or_dash(&self.key.name)),
            ("api_key", self.api_key.clone()),
        ]);
        t.footer = Some("the API key is shown only once: store it now".into());
        t
    }
}

impl Row for webhooks::Webhook {
    const HEADERS: &'static [&'static str] = &["ID", "URL", "EVENTS", "PROJECT", "CREATED"];
    fn cells(&self) -> Vec<String> {
        let events: Vec<&str> = self.events.iter().map(|e| e.as_str()).collect();
        vec![
            self.id.to_string(),
            self.url.clone(),
            events.join(","),
            self.project.clone().unwrap_or_else(|| "-".into()),
            when(&self.created_at),
        ]
    }
}

impl Render for webhooks::WebhookCreated {
    fn table(&self) -> Table {
        let mut t = self.webhook.table();
        t.footer = Some(format!(
            "secret {} · shown only once: store it now (receivers verify signatures with it)",
            self.secret
        ));
        t
    }
}

impl Row for webhooks::WebhookDelivery {
    const HEADERS: &'static [&'static str] = &[
        "ID", "TYPE", "STATUS", "ATTEMPTS", "HTTP", "CREATED", "NEXT", "ERROR",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.kind.clone(),
            self.status.to_string(),
            self.attempts.to_string(),
            self.last_status
                .map_or_else(|| "-".into(), |s| s.to_string()),
            when(&self.created_at),
            self.next_attempt_at
                .as_deref()
                .map_or_else(|| "-".into(), when),
            or_dash(self.last_error.as_deref().unwrap_or_default()),
        ]
    }
}

/// An empty answer (deletes): a one-line confirmation.
pub struct Done(pub String);

impl Serialize for Done {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({ "ok": true, "message": self.0 }).serialize(s)
    }
}

impl Render for Done {
    fn table(&self) -> Table {
        Table {
            headers: vec![],
            rows: vec![],
            footer: Some(self.0.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "alpha".into()]);
        t.row(vec!["100".into(), "b".into()]);
        assert_eq!(t.render(), "ID   NAME\n1    alpha\n100  b\n");
        assert_eq!(Table::new(&["ID"]).render(), "ID\n(none)\n");
    }

    #[test]
    fn timestamps_are_shortened() {
        assert_eq!(when("2026-11-25T20:13:02.123Z"), "2026-11-25 20:13:02");
        assert_eq!(when(""), "");
    }
}

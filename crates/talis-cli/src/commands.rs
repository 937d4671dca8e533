//! Runs one parsed command: build the client, call, print, and pick the exit status.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use serde_json::{Value, json};
use talis_client::wire::methods::public as m;
use talis_client::wire::webhooks::{WebhookCreate, WebhookDeliveries, WebhookRef};
use talis_client::wire::*;
use talis_client::{Client, Route};

use crate::cli::*;
use crate::config::{self, FileConfig};
use crate::events;
use crate::input::{self, RequestFile};
use crate::output::{self, Done, Render, Table};
use crate::watch;

/// Exit status when a waited-for task or one of its instances failed.
pub const EXIT_FLEET_FAILED: u8 = 3;

struct Ctx {
    client: Client,
    format: Format,
    owner_id: Option<OwnerId>,
    /// The per-request timeout (`--timeout`): long-polls stay within it.
    timeout: Duration,
}

impl Ctx {
    fn print<T: serde::Serialize + Render>(&self, v: &T) -> Result<ExitCode> {
        output::print(self.format, v)?;
        Ok(ExitCode::SUCCESS)
    }

    fn owner_list(&self, p: &PageArgs) -> OwnerList {
        paged(
            OwnerList {
                owner_id: self.owner_id,
                ..Default::default()
            },
            p,
        )
    }

    /// Adds `--owner-id` to raw params from a file (a flag beats the file).
    fn with_owner(&self, mut params: Value) -> Value {
        if let (Some(o), Value::Object(m)) = (self.owner_id, &mut params) {
            m.insert("owner_id".into(), json!(o));
        }
        params
    }

    /// Prints what a call queued, then follows its task when asked to.
    async fn queued(
        &self,
        task_id: Option<TaskId>,
        project: Option<String>,
        wait: WaitArgs,
        printed: impl FnOnce() -> Result<()>,
    ) -> Result<ExitCode> {
        match (wait.wait, task_id) {
            (true, Some(id)) => self.follow(id, project, wait.wait_timeout, false).await,
            _ => {
                printed()?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    /// Follows a task, prints it and its failures; exit 3 if anything failed.
    /// `stopping`: the task was asked to terminate, so ending `terminated` is success.
    async fn follow(
        &self,
        task_id: TaskId,
        project: Option<String>,
        timeout: Option<u64>,
        stopping: bool,
    ) -> Result<ExitCode> {
        let watching = watch::watch(
            &self.client,
            task_id,
            project,
            timeout.map(Duration::from_secs),
            events::long_poll_wait(self.timeout),
        );
        let outcome = tokio::select! {
            r = watching => r?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nstopped watching; task {task_id} continues (`talis task watch {task_id}`)");
                return Ok(ExitCode::from(130));
            }
        };
        match self.format {
            Format::Json => {
                let failed: Vec<Value> = outcome
                    .failed
                    .iter()
                    .map(|i| json!({"ID": i.id, "name": i.name, "error": i.error}))
                    .collect();
                let mut v = serde_json::to_value(&outcome.task)?;
                v["failed_instances"] = Value::Array(failed);
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Format::Table => {
                print!("{}", outcome.task.table().render());
                if !outcome.failed.is_empty() {
                    println!("\n{} instance(s) failed:", outcome.failed.len());
                    for i in &outcome.failed {
                        println!("{}", watch::failure_line(i));
                    }
                }
            }
        }
        // Stopping a task succeeds when it ended, whether terminated or finished first.
        let ok = if stopping {
            matches!(
                outcome.task.status,
                TaskStatus::Terminated | TaskStatus::Completed
            )
        } else {
            outcome.success()
        };
        if ok {
            Ok(ExitCode::SUCCESS)
        } else {
            if !outcome.task.error.is_empty() {
                eprintln!(
                    "task {task_id} {}: {}",
                    outcome.task.status, outcome.task.error
                );
            } else {
                eprintln!(
                    "task {task_id} {} with {} failed instance(s)",
                    outcome.task.status,
                    outcome.failed.len()
                );
            }
            Ok(ExitCode::from(EXIT_FLEET_FAILED))
        }
    }
}

/// `params` asking for the page `--limit/--cursor/--page/--offset` name.
fn paged<T: WithPage>(params: T, p: &PageArgs) -> T {
    params.set_page(p.limit, p.cursor.clone(), p.page, p.offset)
}

/// The list params types, which all take a page.
trait WithPage {
    fn set_page(
        self,
        limit: Option<u32>,
        cursor: Option<String>,
        page: Option<u32>,
        offset: Option<u32>,
    ) -> Self;
}

macro_rules! with_page {
    ($($t:ty),*) => {$(
        impl WithPage for $t {
            fn set_page(self, limit: Option<u32>, cursor: Option<String>, page: Option<u32>, offset: Option<u32>) -> Self {
                self.with_page(limit, cursor, page, offset)
            }
        }
    )*};
}
with_page!(
    OwnerList,
    ProjectListInstances,
    TaskList,
    TaskListByInstance,
    UserGet,
    InstanceList,
    WebhookDeliveries
);

fn parse<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config_path = cli.config_file.clone().or_else(config::default_path);
    // Commands that need no server.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "talis", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Config(c) => return config_cmd(c, &cli, config_path.as_deref()),
        _ => {}
    }
    let file = match &config_path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let settings = config::resolve(cli.api_url.clone(), cli.api_key.clone(), &file);
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let mut builder = Client::builder(&settings.api_url)
        .timeout(timeout)
        .route(match cli.route {
            RouteArg::Envelope => Route::Envelope,
            RouteArg::Typed => Route::Typed,
        });
    if let Some(k) = &settings.api_key {
        builder = builder.api_key(k);
    }
    let ctx = Ctx {
        client: builder.build()?,
        format: output::choose(cli.output),
        owner_id: cli.owner_id,
        timeout,
    };
    match cli.command {
        Command::Project(c) => project(&ctx, c).await,
        Command::Task(c) => task(&ctx, c).await,
        Command::Instance(c) => instance(&ctx, c).await,
        Command::User(c) => user(&ctx, c).await,
        Command::Sshkey(c) => sshkey(&ctx, c).await,
        Command::Apikey(c) => apikey(&ctx, c).await,
        Command::Infra(c) => infra(&ctx, c).await,
        Command::Webhook(c) => webhook(&ctx, c).await,
        Command::Events(a) => {
            events::run(&ctx.client, ctx.format, ctx.owner_id, ctx.timeout, a).await
        }
        Command::Quota(c) => quota(&ctx, c).await,
        Command::Completions { .. } | Command::Config(_) => unreachable!("handled above"),
    }
}

async fn project(ctx: &Ctx, c: ProjectCmd) -> Result<ExitCode> {
    let owner = ctx.owner_id;
    match c {
        ProjectCmd::Create {
            file,
            name,
            description,
            config,
            idempotency_key,
            wait,
        } => {
            let mut params = match &file {
                Some(f) => RequestFile::read(f)?.project_create()?,
                None => serde_json::Map::new(),
            };
            for (k, v) in [
                ("name", name),
                ("description", description),
                ("config", config),
                ("idempotency_key", idempotency_key),
            ] {
                if let Some(v) = v {
                    params.insert(k.into(), json!(v));
                }
            }
            if !params.contains_key("name") {
                bail!("a project name is required: --name NAME or \"name\" in the file");
            }
            let params = ctx.with_owner(Value::Object(params));
            let created = ctx.client.call_raw::<m::ProjectCreate>(&params).await?;
            let project = created.project.name.clone();
            ctx.queued(created.task_id, Some(project), wait, || {
                output::print(ctx.format, &created)
            })
            .await
        }
        ProjectCmd::Get { name } => ctx.print(
            &ctx.client
                .project_get(&ProjectRef {
                    name,
                    owner_id: owner,
                })
                .await?,
        ),
        ProjectCmd::List(p) => ctx.print(&ctx.client.project_list(&ctx.owner_list(&p)).await?),
        ProjectCmd::Delete { name, wait } => {
            let q = ctx
                .client
                .project_delete(&ProjectRef {
                    name: name.clone(),
                    owner_id: owner,
                })
                .await?;
            ctx.queued(q.task_id, Some(name), wait, || {
                output::print(ctx.format, &q)
            })
            .await
        }
        ProjectCmd::Instances { name, status, page } => {
            let status = status.map(|s| parse("--status", &s)).transpose()?;
            let params = paged(
                ProjectListInstances {
                    name,
                    owner_id: owner,
                    status,
                    ..Default::default()
                },
                &page,
            );
            ctx.print(&ctx.client.project_list_instances(&params).await?)
        }
    }
}

async fn task(ctx: &Ctx, c: TaskCmd) -> Result<ExitCode> {
    let owner = ctx.owner_id;
    let task_ref = |id: TaskId| TaskRef {
        task_id: id,
        owner_id: owner,
    };
    match c {
        TaskCmd::Get { id, logs } => {
            let task = ctx.client.task_get(&task_ref(id)).await?;
            match (ctx.format, logs) {
                (Format::Table, true) => println!("{}", task.logs),
                (Format::Table, false) => print!("{}", watch::summary(&ctx.client, &task).await?),
                (Format::Json, _) => output::print(Format::Json, &task)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCmd::List { project, page } => {
            let params = paged(
                TaskList {
                    project_name: project,
                    owner_id: owner,
                    ..Default::default()
                },
                &page,
            );
            ctx.print(&ctx.client.task_list(&params).await?)
        }
        TaskCmd::Terminate { id, wait } => {
            let t = ctx.client.task_terminate(&task_ref(id)).await?;
            if wait.wait {
                ctx.follow(t.id, None, wait.wait_timeout, true).await
            } else {
                ctx.print(&t)
            }
        }
        TaskCmd::Watch { id, wait_timeout } => ctx.follow(id, None, wait_timeout, false).await,
        TaskCmd::ListByInstance {
            instance_id,
            action,
            page,
        } => {
            let action = action.map(|a| parse("--action", &a)).transpose()?;
            let params = TaskListByInstance {
                instance_id,
                action,
                owner_id: owner,
                limit: page.limit,
                cursor: page.cursor,
                page: page.page,
                offset: page.offset,
            };
            ctx.print(&ctx.client.task_list_by_instance(&params).await?)
        }
        TaskCmd::UpdateStatus { id, status } => {
            let params = TaskUpdateStatus {
                task_id: id,
                status: parse("STATUS", &status)?,
                owner_id: owner,
            };
            ctx.print(&ctx.client.task_update_status(&params).await?)
        }
    }
}

async fn instance(ctx: &Ctx, c: InstanceCmd) -> Result<ExitCode> {
    let owner = ctx.owner_id;
    match c {
        InstanceCmd::List {
            project,
            status,
            all,
            page,
        } => {
            let status = status.map(|s| parse("--status", &s)).transpose()?;
            let params = paged(
                InstanceList {
                    owner_id: owner,
                    project_name: project,
                    status,
                    include_deleted: all,
                    ..Default::default()
                },
                &page,
            );
            ctx.print(&ctx.client.instance_list(&params).await?)
        }
        InstanceCmd::Get { id } => ctx.print(&ctx.client.instance_get(&InstanceGet { id }).await?),
        InstanceCmd::Create { file, wait } => create_instances(ctx, &file, wait, false).await,
        InstanceCmd::Terminate { project, ids, wait } => {
            let params = InstanceTerminate {
                owner_id: owner,
                project_name: project.clone(),
                instance_ids: ids,
            };
            let q = ctx.client.instance_terminate(&params).await?;
            ctx.queued(q.task_id, Some(project), wait, || {
                output::print(ctx.format, &q)
            })
            .await
        }
        InstanceCmd::PublicIps { project, page } => {
            let params = paged(
                InstanceList {
                    owner_id: owner,
                    project_name: project,
                    ..Default::default()
                },
                &page,
            );
            ctx.print(&ctx.client.instance_public_ips(&params).await?)
        }
    }
}

/// `instance create` and `infra create`: the latter also writes the original's delete file.
async fn create_instances(
    ctx: &Ctx,
    file: &Path,
    wait: WaitArgs,
    write_delete_file: bool,
) -> Result<ExitCode> {
    let request = RequestFile::read(file)?.instance_create()?;
    let created = ctx.client.call_raw::<m::InstanceCreate>(&request).await?;
    if write_delete_file {
        let names: std::collections::BTreeMap<ProjectId, String> = ctx
            .client
            .project_list_all()
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let by_project: Vec<(String, InstanceId)> = created
            .instances
            .iter()
            .map(|i| (names.get(&i.project_id).cloned().unwrap_or_default(), i.id))
            .collect();
        for path in input::write_delete_files(file, &request, &by_project)? {
            eprintln!(
                "wrote {} (tear down with `talis infra delete -f {}`)",
                path.display(),
                path.display()
            );
        }
    }
    if !wait.wait {
        output::print(ctx.format, &created)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut worst = ExitCode::SUCCESS;
    for id in &created.task_ids {
        let code = ctx.follow(*id, None, wait.wait_timeout, false).await?;
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    Ok(worst)
}

async fn user(ctx: &Ctx, c: UserCmd) -> Result<ExitCode> {
    match c {
        UserCmd::Create {
            username,
            email,
            role,
            public_ssh_key_file,
        } => {
            let public_ssh_key = match public_ssh_key_file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim()
                    .to_string(),
                None => String::new(),
            };
            let params = UserCreate {
                username,
                email: email.unwrap_or_default(),
                role: if role == Role::Admin {
                    ROLE_ADMIN
                } else {
                    ROLE_USER
                },
                public_ssh_key,
            };
            ctx.print(&ctx.client.user_create(&params).await?)
        }
        UserCmd::Get {
            username: Some(u), ..
        } => ctx.print(
            &ctx.client
                .user_get(&UserGet {
                    username: Some(u),
                    ..Default::default()
                })
                .await?,
        ),
        UserCmd::Get { id: Some(id), .. } => {
            ctx.print(&ctx.client.user_get_id(&IdRef { id }).await?)
        }
        UserCmd::Get { .. } => bail!("give a USERNAME or --id ID"),
        UserCmd::List(p) => ctx.print(&ctx.client.user_get(&paged(UserGet::default(), &p)).await?),
        UserCmd::Delete { id } => {
            ctx.client.user_delete(&IdRef { id }).await?;
            ctx.print(&Done(format!("deleted user {id}")))
        }
    }
}

async fn sshkey(ctx: &Ctx, c: SshkeyCmd) -> Result<ExitCode> {
    let owner = ctx.owner_id;
    match c {
        SshkeyCmd::Add {
            name,
            public_key,
            public_key_file,
        } => {
            let public_key = match (public_key, public_key_file) {
                (Some(k), _) => k,
                (None, Some(p)) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .trim()
                    .to_string(),
                (None, None) => bail!("give --public-key KEY or --public-key-file FILE"),
            };
            ctx.print(
                &ctx.client
                    .sshkey_create(&SshKeyCreate {
                        name,
                        public_key,
                        owner_id: owner,
                    })
                    .await?,
            )
        }
        SshkeyCmd::List(p) => ctx.print(&ctx.client.sshkey_list(&ctx.owner_list(&p)).await?),
        SshkeyCmd::Delete { name } => {
            ctx.client
                .sshkey_delete(&SshKeyDelete {
                    name: name.clone(),
                    owner_id: owner,
                })
                .await?;
            ctx.print(&Done(format!("deleted SSH key {name}")))
        }
    }
}

async fn apikey(ctx: &Ctx, c: ApikeyCmd) -> Result<ExitCode> {
    match c {
        ApikeyCmd::Create { name } => ctx.print(
            &ctx.client
                .apikey_create(&ApiKeyCreate {
                    owner_id: ctx.owner_id,
                    name,
                })
                .await?,
        ),
        ApikeyCmd::List(p) => ctx.print(&ctx.client.apikey_list(&ctx.owner_list(&p)).await?),
        ApikeyCmd::Revoke { id } => {
            ctx.client.apikey_revoke(&IdRef { id }).await?;
            ctx.print(&Done(format!("revoked API key {id}")))
        }
    }
}

async fn webhook(ctx: &Ctx, c: WebhookCmd) -> Result<ExitCode> {
    let owner = ctx.owner_id;
    match c {
        WebhookCmd::Create {
            url,
            events,
            project,
        } => {
            let events = events
                .iter()
                .map(|e| parse("--event", e.trim()))
                .collect::<Result<Vec<_>>>()?;
            let params = WebhookCreate {
                url,
                events,
                project,
                owner_id: owner,
            };
            ctx.print(&ctx.client.webhook_create(&params).await?)
        }
        WebhookCmd::List(p) => ctx.print(&ctx.client.webhook_list(&ctx.owner_list(&p)).await?),
        WebhookCmd::Delete { id } => {
            ctx.client
                .webhook_delete(&WebhookRef {
                    id,
                    owner_id: owner,
                })
                .await?;
            ctx.print(&Done(format!("deleted webhook {id}")))
        }
        WebhookCmd::Test { id } => ctx.print(
            &ctx.client
                .webhook_test(&WebhookRef {
                    id,
                    owner_id: owner,
                })
                .await?,
        ),
        WebhookCmd::Deliveries { id, status, page } => {
            let status = status.map(|s| parse("--status", &s)).transpose()?;
            let params = paged(
                WebhookDeliveries {
                    webhook_id: id,
                    status,
                    owner_id: owner,
                    limit: None,
                    cursor: None,
                    page: None,
                    offset: None,
                },
                &page,
            );
            ctx.print(&ctx.client.webhook_deliveries(&params).await?)
        }
    }
}

async fn quota(ctx: &Ctx, c: QuotaCmd) -> Result<ExitCode> {
    match c {
        QuotaCmd::Get => ctx.print(
            &ctx.client
                .quota_get(&QuotaGet {
                    owner_id: ctx.owner_id,
                })
                .await?,
        ),
        QuotaCmd::Set {
            owner,
            max_instances,
            max_projects,
            max_api_keys,
            max_ssh_keys,
            max_webhooks,
        } => ctx.print(
            &ctx.client
                .quota_set(&QuotaSet {
                    owner_id: owner,
                    max_instances,
                    max_projects,
                    max_api_keys,
                    max_ssh_keys,
                    max_webhooks,
                })
                .await?,
        ),
    }
}

async fn infra(ctx: &Ctx, c: InfraCmd) -> Result<ExitCode> {
    match c {
        InfraCmd::Create { file, wait } => create_instances(ctx, &file, wait, true).await,
        InfraCmd::Delete { file, wait } => {
            let params = ctx.with_owner(RequestFile::read(&file)?.instance_terminate()?);
            let project = params
                .get("project_name")
                .and_then(Value::as_str)
                .map(String::from);
            let q = ctx.client.call_raw::<m::InstanceTerminate>(&params).await?;
            ctx.queued(q.task_id, project, wait, || output::print(ctx.format, &q))
                .await
        }
    }
}

fn config_cmd(c: &ConfigCmd, cli: &Cli, path: Option<&Path>) -> Result<ExitCode> {
    let path = path.context("no config file location: set TALIS_CONFIG or HOME")?;
    let mut file = FileConfig::load(path)?;
    match c {
        ConfigCmd::Show => {
            let r = config::resolve(cli.api_url.clone(), cli.api_key.clone(), &file);
            let masked = r
                .api_key
                .as_deref()
                .map(|k| format!("{}…", k.chars().take(6).collect::<String>()));
            let rows = vec![
                ("config_file", path.display().to_string()),
                ("api_url", r.api_url),
                ("api_key", masked.unwrap_or_else(|| "(none)".into())),
            ];
            match output::choose(cli.output) {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::Map::from_iter(
                        rows.into_iter().map(|(k, v)| (k.to_string(), json!(v)))
                    ))?
                ),
                Format::Table => print!("{}", Table::fields(rows).render()),
            }
        }
        ConfigCmd::Set { url, key } => {
            if url.is_none() && key.is_none() {
                bail!("nothing to set: give --url and/or --key");
            }
            if let Some(u) = url {
                file.api_url = Some(u.clone());
            }
            if let Some(k) = key {
                file.api_key = Some(k.clone());
            }
            file.save(path)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

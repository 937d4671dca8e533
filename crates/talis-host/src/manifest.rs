//! Spin application manifest (`spin.toml`, `spin_manifest_version = 2`): parsing and the
//! checks Spin makes before it serves. Unknown fields are errors, as in Spin's own schema,
//! so a typo fails at start-up with the line and field instead of being silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid manifest {path}, line {line}: {field}: {message}")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: Spanned<toml::Value>,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<RawTrigger>>,
    #[serde(default)]
    component: BTreeMap<Spanned<String>, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    #[allow(dead_code)]
    authors: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    targets: Vec<toml::Value>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    tool: toml::Table,
}

/// An application variable (`[variables]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariable {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Part of Spin's schema; secrets are never logged by this host anyway.
    #[serde(default)]
    #[allow(dead_code)]
    pub secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default)]
    id: String,
    component: Option<Spanned<ComponentRef>>,
    route: Option<Spanned<RawRoute>>,
    #[serde(default)]
    executor: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    components: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ComponentRef {
    Id(String),
    Inline(Box<RawComponent>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: Spanned<RawSource>,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<Spanned<RawFiles>>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    /// Spin 1 name of the same permission; still accepted by Spin 3 with a warning.
    #[serde(default)]
    allowed_http_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<Spanned<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    targets: Option<Vec<toml::Value>>,
    /// Build settings are for `spin build`; the host ignores them.
    #[serde(default)]
    #[allow(dead_code)]
    build: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    tool: toml::Table,
    #[serde(default)]
    #[allow(dead_code)]
    dependencies_inherit_configuration: bool,
    #[serde(default)]
    dependencies: Option<Spanned<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSource {
    Path(String),
    Remote(#[allow(dead_code)] toml::Table),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFiles {
    Pattern(String),
    Mount { source: String, destination: String },
}

/// A validated application.
#[derive(Debug)]
pub struct Manifest {
    /// Directory of the manifest: relative paths in it are relative to this.
    pub dir: PathBuf,
    pub name: String,
    /// `[application] version`, if given.
    pub version: Option<String>,
    pub variables: BTreeMap<String, RawVariable>,
    pub components: BTreeMap<String, Component>,
    pub routes: Vec<Route>,
}

#[derive(Debug)]
pub struct Component {
    pub id: String,
    /// Absolute path of the `.wasm` file.
    pub source: PathBuf,
    /// Component variable name → template over application variables.
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub files: Vec<FileMount>,
    pub exclude_files: Vec<String>,
    /// Entries as written (templates not yet resolved), with their line for errors.
    pub allowed_outbound_hosts: Vec<(String, usize)>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum FileMount {
    /// A glob (or plain path) relative to the manifest directory, mounted at the same
    /// relative path under `/`.
    Pattern(String),
    /// A directory or file mounted at `destination` (absolute, normalised: no `.` or `..`).
    Mount {
        source: PathBuf,
        destination: String,
    },
}

/// One `[[trigger.http]]` entry.
#[derive(Debug)]
pub struct Route {
    /// `None` for `route = { private = true }` (reachable only by service chaining).
    pub route: Option<String>,
    pub component: String,
}

/// Byte offset → 1-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let err = |span: std::ops::Range<usize>, field: &str, message: String| ManifestError::Field {
        path: path.to_path_buf(),
        line: line_of(text, span.start),
        field: field.to_string(),
        message,
    };

    match raw.spin_manifest_version.get_ref() {
        toml::Value::Integer(2) => {}
        toml::Value::String(s) if s == "1" => {
            return Err(err(
                raw.spin_manifest_version.span(),
                "spin_manifest_version",
                "manifest version 1 is not supported; convert it with `spin doctor` to version 2"
                    .into(),
            ));
        }
        other => {
            return Err(err(
                raw.spin_manifest_version.span(),
                "spin_manifest_version",
                format!("expected 2, found {other}"),
            ));
        }
    }

    if let Some(http) = raw.application.trigger.get("http") {
        for key in http.keys() {
            if key != "base" {
                return Err(ManifestError::Parse {
                    path: path.to_path_buf(),
                    message: format!("application.trigger.http: unknown field `{key}`"),
                });
            }
        }
        if let Some(base) = http.get("base").and_then(|b| b.as_str())
            && base != "/"
        {
            tracing::warn!(
                "application.trigger.http.base = {base:?} is ignored, as in Spin 3 (the base path is always \"/\")"
            );
        }
    }

    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);

    let mut variables = BTreeMap::new();
    for (name, var) in raw.variables {
        let span = name.span();
        let name = name.into_inner();
        crate::variables::validate_name(&name)
            .map_err(|m| err(span.clone(), &format!("variables.{name}"), m))?;
        if var.required && var.default.is_some() {
            return Err(err(
                span,
                &format!("variables.{name}"),
                "a variable cannot be both `required` and have a `default`".into(),
            ));
        }
        if !var.required && var.default.is_none() {
            return Err(err(
                span,
                &format!("variables.{name}"),
                "a variable needs either `required = true` or a `default`".into(),
            ));
        }
        variables.insert(name, var);
    }

    let mut components = BTreeMap::new();
    for (id, raw_component) in raw.component {
        let span = id.span();
        let id = id.into_inner();
        validate_component_id(&id).map_err(|m| err(span, &format!("component.{id}"), m))?;
        let c = component(&id, raw_component, &dir, &variables, text, path)?;
        components.insert(id, c);
    }

    let mut routes = Vec::new();
    for (kind, triggers) in raw.trigger {
        if kind != "http" {
            return Err(ManifestError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "trigger type `{kind}` is not supported by this host (only `http`)"
                ),
            });
        }
        for (i, t) in triggers.into_iter().enumerate() {
            let field = format!("trigger.http[{i}]");
            if let Some(exec) = &t.executor {
                let ty = exec.get("type").and_then(|v| v.as_str()).unwrap_or("");
                if ty != "spin" {
                    return Err(ManifestError::Parse {
                        path: path.to_path_buf(),
                        message: format!(
                            "{field}.executor: executor type {ty:?} is not supported (only \"spin\")"
                        ),
                    });
                }
            }
            let Some(component_ref) = t.component else {
                return Err(ManifestError::Parse {
                    path: path.to_path_buf(),
                    message: format!("{field}: missing field `component`"),
                });
            };
            let line = line_of(text, component_ref.span().start);
            let component_id = match component_ref.into_inner() {
                ComponentRef::Id(id) => {
                    if !components.contains_key(&id) {
                        return Err(ManifestError::Field {
                            path: path.to_path_buf(),
                            line,
                            field: format!("{field}.component"),
                            message: format!("no component named {id:?} in [component]"),
                        });
                    }
                    id
                }
                ComponentRef::Inline(raw_component) => {
                    // Spin names inline components after the trigger id, or its position.
                    let id = if t.id.is_empty() {
                        format!("inline-component-http-{i}")
                    } else {
                        t.id.clone()
                    };
                    let c = component(&id, *raw_component, &dir, &variables, text, path)?;
                    components.insert(id.clone(), c);
                    id
                }
            };
            let Some(route) = t.route else {
                return Err(ManifestError::Field {
                    path: path.to_path_buf(),
                    line,
                    field: format!("{field}.route"),
                    message: "missing field `route`".into(),
                });
            };
            let route_line = line_of(text, route.span().start);
            let route = match route.into_inner() {
                RawRoute::Path(r) => {
                    crate::routes::validate(&r).map_err(|m| ManifestError::Field {
                        path: path.to_path_buf(),
                        line: route_line,
                        field: format!("{field}.route"),
                        message: m,
                    })?;
                    Some(r)
                }
                RawRoute::Private { private: true } => None,
                RawRoute::Private { private: false } => {
                    return Err(ManifestError::Field {
                        path: path.to_path_buf(),
                        line: route_line,
                        field: format!("{field}.route"),
                        message: "route must be a string pattern or `{ private = true }`".into(),
                    });
                }
            };
            routes.push(Route {
                route,
                component: component_id,
            });
        }
    }

    Ok(Manifest {
        dir,
        name: raw.application.name,
        version: Some(raw.application.version).filter(|v| !v.is_empty()),
        variables,
        components,
        routes,
    })
}

/// Spin component ids are kebab-case: lowercase letters, digits and single dashes.
fn validate_component_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("component ids must be kebab-case (lowercase letters, digits and single dashes, starting with a letter)".into())
    }
}

fn component(
    id: &str,
    raw: RawComponent,
    dir: &Path,
    app_vars: &BTreeMap<String, RawVariable>,
    text: &str,
    path: &Path,
) -> Result<Component, ManifestError> {
    let err = |span: std::ops::Range<usize>, field: &str, message: String| ManifestError::Field {
        path: path.to_path_buf(),
        line: line_of(text, span.start),
        field: format!("component.{id}.{field}"),
        message,
    };
    let source_span = raw.source.span();
    let source = match raw.source.into_inner() {
        RawSource::Path(p) => dir.join(p),
        RawSource::Remote(_) => {
            return Err(err(
                source_span,
                "source",
                "remote sources (url/registry) are not supported by this host; build the component and give a local path".into(),
            ));
        }
    };
    if let Some(deps) = &raw.dependencies
        && !deps.get_ref().is_empty()
    {
        return Err(err(
            deps.span(),
            "dependencies",
            "component dependencies (composition) are not supported by this host".into(),
        ));
    }
    if let Some(model) = raw.ai_models.first() {
        return Err(err(
            model.span(),
            "ai_models",
            "Serverless AI is not supported by this host".into(),
        ));
    }

    let mut variables = BTreeMap::new();
    for (name, template) in raw.variables {
        let span = name.span();
        let name = name.into_inner();
        crate::variables::validate_name(&name)
            .map_err(|m| err(span, &format!("variables.{name}"), m))?;
        let tspan = template.span();
        let template = template.into_inner();
        crate::variables::check_template(&template, app_vars)
            .map_err(|m| err(tspan, &format!("variables.{name}"), m))?;
        variables.insert(name, template);
    }

    let mut hosts = Vec::new();
    for h in raw.allowed_http_hosts {
        tracing::warn!(
            "component {id}: `allowed_http_hosts` is deprecated in Spin; use `allowed_outbound_hosts`"
        );
        let line = line_of(text, h.span().start);
        let h = h.into_inner();
        // Spin 1 entries are bare hosts meaning http and https.
        if h.contains("://") || h == "insecure:allow-all" {
            hosts.push((h, line));
        } else {
            hosts.push((format!("http://{h}"), line));
            hosts.push((format!("https://{h}"), line));
        }
    }
    for h in raw.allowed_outbound_hosts {
        let span = h.span();
        let h = h.into_inner();
        if h.contains("{{") {
            crate::variables::check_template(&h, app_vars)
                .map_err(|m| err(span.clone(), "allowed_outbound_hosts", m))?;
        } else {
            crate::outbound::AllowedHost::parse(&h)
                .map_err(|m| err(span.clone(), "allowed_outbound_hosts", m))?;
        }
        hosts.push((h, line_of(text, span.start)));
    }

    let mut files = Vec::new();
    for f in raw.files {
        let span = f.span();
        match f.into_inner() {
            RawFiles::Pattern(p) => {
                if Path::new(&p).is_absolute() || p.split('/').any(|s| s == "..") {
                    return Err(err(
                        span,
                        "files",
                        format!("{p:?} must be relative to the manifest and stay inside it"),
                    ));
                }
                files.push(FileMount::Pattern(p));
            }
            RawFiles::Mount {
                source,
                destination,
            } => {
                if !destination.starts_with('/') {
                    return Err(err(
                        span,
                        "files",
                        format!("destination {destination:?} must be an absolute path"),
                    ));
                }
                // A single file is copied to `<staging>/<destination>` on the host: a
                // destination above `/` would write outside the staging directory.
                let Some(normalised) = normalise_destination(&destination) else {
                    return Err(err(
                        span,
                        "files",
                        format!(
                            "destination {destination:?} leaves the component's root directory (`..` above `/`)"
                        ),
                    ));
                };
                files.push(FileMount::Mount {
                    source: dir.join(source),
                    destination: normalised,
                });
            }
        }
    }

    Ok(Component {
        id: id.to_string(),
        source,
        variables,
        environment: raw.environment,
        files,
        exclude_files: raw.exclude_files,
        allowed_outbound_hosts: hosts,
        key_value_stores: raw.key_value_stores,
        sqlite_databases: raw.sqlite_databases,
    })
}

/// `/a/./b/../c` → `/a/c`; `None` when `..` would climb above `/`.
fn normalise_destination(destination: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in destination.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "demo"
version = "0.1.0"

[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "web"

[[trigger.http]]
route = { private = true }
component = "web"

[component.web]
source = "target/web.wasm"
allowed_outbound_hosts = ["http://127.0.0.1:8080", "{{ greeting }}"]
sqlite_databases = ["default"]
environment = { A = "b" }
files = ["static/**", { source = "assets", destination = "/assets" }]
[component.web.variables]
message = "{{ greeting }}, world"
[component.web.build]
command = "cargo build"
"#;

    #[test]
    fn parses_a_full_manifest() {
        let m = parse(Path::new("/app/spin.toml"), GOOD).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(m.routes.len(), 2);
        assert_eq!(m.routes[0].route.as_deref(), Some("/..."));
        assert_eq!(m.routes[1].route, None);
        let web = &m.components["web"];
        assert!(web.source.ends_with("target/web.wasm"));
        assert_eq!(web.variables["message"], "{{ greeting }}, world");
        assert_eq!(web.environment["A"], "b");
        assert_eq!(web.files.len(), 2);
        assert_eq!(web.allowed_outbound_hosts.len(), 2);
        assert_eq!(web.allowed_outbound_hosts[0].1, 22);
    }

    fn error_of(text: &str) -> String {
        parse(Path::new("spin.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_is_reported_with_its_line() {
        let bad = GOOD.replace("sqlite_databases", "sqlite_databasez");
        let e = error_of(&bad);
        assert!(e.contains("sqlite_databasez"), "{e}");
        assert!(e.contains("line 23"), "{e}");
    }

    #[test]
    fn missing_component_is_named() {
        let bad = GOOD.replace(
            "component = \"web\"\n\n[[trigger",
            "component = \"nope\"\n\n[[trigger",
        );
        let e = error_of(&bad);
        assert!(e.contains("trigger.http[0].component"), "{e}");
        assert!(e.contains("line 14"), "{e}");
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn bad_route_and_host_and_template_are_named() {
        let e = error_of(&GOOD.replace("route = \"/...\"", "route = \"/a/.../b\""));
        assert!(
            e.contains("trigger.http[0].route") && e.contains("line 13"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(
            e.contains("component.web.allowed_outbound_hosts") && e.contains("scheme"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("{{ greeting }}, world", "{{ nope }}"));
        assert!(
            e.contains("component.web.variables.message") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn mount_destinations_stay_inside_the_root() {
        for (dest, normalised) in [
            ("/assets", Some("/assets")),
            ("/a/./b/../c/", Some("/a/c")),
            ("/", Some("/")),
            ("/a/..", Some("/")),
            ("/../../x", None),
            ("/a/../../x", None),
        ] {
            assert_eq!(normalise_destination(dest).as_deref(), normalised, "{dest}");
        }
        let e = error_of(&GOOD.replace("destination = \"/assets\"", "destination = \"/../../x\""));
        assert!(
            e.contains("line 25") && e.contains("component.web.files") && e.contains("/../../x"),
            "{e}"
        );
    }

    #[test]
    fn version_and_variables_are_checked() {
        let e = error_of(&GOOD.replace("spin_manifest_version = 2", "spin_manifest_version = 3"));
        assert!(e.contains("spin_manifest_version"), "{e}");
        let e = error_of(&GOOD.replace("{ default = \"hello\" }", "{ }"));
        assert!(e.contains("variables.greeting"), "{e}");
        let e = error_of(&GOOD.replace("[variables]\ngreeting", "[variables]\nGreeting"));
        assert!(e.contains("variables.Greeting"), "{e}");
    }
}

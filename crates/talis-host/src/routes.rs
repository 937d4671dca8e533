//! Spin HTTP routing: exact routes, `:name` segments and a trailing `/...` wildcard. When
//! several routes match, the most specific wins, segment by segment from the left: an exact
//! segment beats a `:name` segment beats the wildcard, and a longer route beats a shorter one
//! (Spin's precedence: "exact routes first, then wildcards with the longest matching prefix").
//! A route listed twice is served by the later entry, with a warning, as in Spin.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Exact(String),
    Param(String),
}

#[derive(Clone, Debug)]
struct Entry {
    /// The route as written in the manifest (`spin-raw-component-route`).
    raw: String,
    segs: Vec<Seg>,
    wildcard: bool,
    component: String,
}

/// What a request path matched.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'r> {
    pub component: &'r str,
    /// The route with the base path (always `/` in Spin 3), e.g. `/api/...`.
    pub based_route: String,
    /// The route as written in the manifest.
    pub raw_route: &'r str,
    /// The route without its trailing `/...`.
    pub raw_route_or_prefix: &'r str,
    /// The part of the path matched by the trailing wildcard (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures.
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

/// Checks a route's syntax (for manifest errors).
pub fn validate(route: &str) -> Result<(), String> {
    parse(route).map(|_| ())
}

fn parse(route: &str) -> Result<(Vec<Seg>, bool), String> {
    let (body, wildcard) = match route
        .strip_suffix("/...")
        .or_else(|| route.strip_suffix("/*"))
    {
        Some(b) => (b, true),
        None if route == "..." => ("", true),
        None => (route, false),
    };
    let mut segs = Vec::new();
    for s in body.split('/').filter(|s| !s.is_empty()) {
        if s == "..." || s == "*" {
            return Err(format!(
                "{route:?}: a wildcard (`...`) is allowed only at the end of a route"
            ));
        }
        if let Some(name) = s.strip_prefix(':') {
            if name.is_empty() {
                return Err(format!("{route:?}: a `:` segment needs a name"));
            }
            segs.push(Seg::Param(name.to_string()));
        } else {
            segs.push(Seg::Exact(s.to_string()));
        }
    }
    Ok((segs, wildcard))
}

/// Ordering key for specificity: per segment 2 = exact, 1 = param; the wildcard is 0 and
/// sorts below any segment; then longer wins.
fn specificity(e: &Entry) -> Vec<u8> {
    let mut key: Vec<u8> = e
        .segs
        .iter()
        .map(|s| match s {
            Seg::Exact(_) => 2,
            Seg::Param(_) => 1,
        })
        .collect();
    if !e.wildcard {
        // An exact route ends here; terminating with a value above the wildcard's 0 makes
        // `/a` beat `/a/...` for the path `/a`.
        key.push(1);
    }
    key
}

impl Router {
    /// Builds the router from `(route, component)` pairs in manifest order.
    pub fn build<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (raw, component) in routes {
            let (segs, wildcard) = parse(raw)?;
            let entry = Entry {
                raw: raw.to_string(),
                segs,
                wildcard,
                component: component.to_string(),
            };
            if let Some(old) = entries.iter_mut().find(|e| e.raw == raw) {
                tracing::warn!(
                    "route {raw:?} is listed for both {:?} and {:?}; {:?} serves it",
                    old.component,
                    component,
                    component
                );
                *old = entry;
            } else {
                entries.push(entry);
            }
        }
        // Most specific first, so the first match is the best one.
        entries.sort_by_key(|e| std::cmp::Reverse(specificity(e)));
        Ok(Self { entries })
    }

    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.raw.as_str(), e.component.as_str()))
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let path_segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.entries
            .iter()
            .find_map(|e| Self::try_match(e, path, &path_segs))
    }

    fn try_match<'r>(e: &'r Entry, path: &str, path_segs: &[&str]) -> Option<RouteMatch<'r>> {
        if path_segs.len() < e.segs.len() || (!e.wildcard && path_segs.len() != e.segs.len()) {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, got) in e.segs.iter().zip(path_segs) {
            match seg {
                Seg::Exact(s) if s == got => {}
                Seg::Exact(_) => return None,
                Seg::Param(name) => {
                    params.insert(name.clone(), (*got).to_string());
                }
            }
        }
        let path_info = if e.wildcard {
            let rest = path_segs[e.segs.len()..].join("/");
            // Spin keeps a trailing slash in the path info.
            match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".into(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        let raw_route_or_prefix = e.raw.strip_suffix("/...").unwrap_or(&e.raw);
        // Spin joins the base ("/", sanitised to "") with the route without its trailing
        // slash, so the root route `/` becomes "".
        let based_route = if e.raw.starts_with('/') {
            e.raw.strip_suffix('/').unwrap_or(&e.raw).to_string()
        } else {
            format!("/{}", e.raw.strip_suffix('/').unwrap_or(&e.raw))
        };
        Some(RouteMatch {
            component: &e.component,
            based_route,
            raw_route: &e.raw,
            raw_route_or_prefix,
            path_info,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::build([
            ("/...", "catchall"),
            ("/api/...", "api"),
            ("/api/users/:id", "user"),
            ("/api/users/me", "me"),
            ("/api/:kind/:id/...", "kinds"),
            ("/exact", "exact"),
            ("/exact/...", "exact-wild"),
        ])
        .unwrap()
    }

    fn who(path: &str) -> String {
        router().route(path).unwrap().component.to_string()
    }

    #[test]
    fn precedence() {
        assert_eq!(who("/api/users/me"), "me");
        assert_eq!(who("/api/users/42"), "user");
        assert_eq!(who("/api/users/42/posts"), "kinds");
        assert_eq!(who("/api/things"), "api");
        assert_eq!(who("/api"), "api");
        assert_eq!(who("/exact"), "exact");
        assert_eq!(who("/exact/"), "exact");
        assert_eq!(who("/exact/more"), "exact-wild");
        assert_eq!(who("/"), "catchall");
        assert_eq!(who("/other/x"), "catchall");
    }

    #[test]
    fn match_details() {
        let r = router();
        let m = r.route("/api/users/42").unwrap();
        assert_eq!(m.params["id"], "42");
        assert_eq!(m.path_info, "");
        assert_eq!(m.raw_route, "/api/users/:id");
        let m = r.route("/api/a/b/c/d/").unwrap();
        assert_eq!(m.component, "kinds");
        assert_eq!(m.params["kind"], "a");
        assert_eq!(m.path_info, "/c/d/");
        assert_eq!(m.raw_route_or_prefix, "/api/:kind/:id");
        assert_eq!(m.based_route, "/api/:kind/:id/...");
        let m = r.route("/api").unwrap();
        assert_eq!(m.path_info, "");
    }

    #[test]
    fn no_match_and_duplicates() {
        let r = Router::build([("/a", "x"), ("/a", "y")]).unwrap();
        assert_eq!(r.route("/a").unwrap().component, "y");
        assert!(r.route("/b").is_none());
        assert!(r.route("/a/b").is_none());
        assert!(validate("/a/.../b").is_err());
        assert!(validate("/a/:").is_err());
    }
}

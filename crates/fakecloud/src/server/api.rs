//! The DigitalOcean operations: a routed request (route, query, JSON body) answered by the
//! cloud under the state lock. With `validate_requests`, the body is first checked against the
//! operation's request schema in the vendored spec. New droplets' phone-homes are queued in
//! the same critical section.

use serde_json::Value;

use super::routes::Route;
use crate::catalog;
use crate::cloud::{Page, paginate};
use crate::error::ApiError;
use crate::fake::{Fake, Inner};

/// DigitalOcean's default page size.
const DEFAULT_PER_PAGE: usize = 20;

/// A routed API request.
pub struct ApiRequest {
    pub route: Route,
    /// `http://host` as the client addressed the fake (for links).
    pub host: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
}

/// An answer's body: JSON to serialize, or text already serialized (droplets, see
/// `cloud::droplet_json`). `None`: no body.
pub enum Body {
    Json(Option<Value>),
    Text(String),
}

impl ApiRequest {
    fn query(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    /// The page asked for; its links keep the other query parameters.
    fn page(&self) -> Page {
        let keep: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let path = self.route.list_path();
        Page {
            page: self.query("page").and_then(|p| p.parse().ok()).unwrap_or(1),
            per_page: self
                .query("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(DEFAULT_PER_PAGE),
            base: if keep.is_empty() {
                format!("{}{path}", self.host)
            } else {
                format!("{}{path}?{}", self.host, keep.join("&"))
            },
        }
    }
}

/// Answers `req` at time `now`.
pub fn answer(inner: &mut Inner, req: &ApiRequest, now: u64) -> Result<(u16, Body), ApiError> {
    let Inner {
        cloud, config, rng, ..
    } = inner;
    let body = &req.body;
    let host = req.host.as_str();
    let json = |r: Result<(u16, Option<Value>), ApiError>| r.map(|(s, v)| (s, Body::Json(v)));
    let listed = |v: Value| Ok((200, Body::Json(Some(v))));
    match &req.route {
        Route::Account => listed(cloud.account(config)),
        Route::Regions => listed(paginate(
            "regions",
            catalog::REGIONS,
            &req.page(),
            catalog::region_json,
        )),
        Route::Sizes => listed(paginate(
            "sizes",
            catalog::SIZES,
            &req.page(),
            catalog::size_json,
        )),
        Route::Images => listed(paginate(
            "images",
            catalog::IMAGES,
            &req.page(),
            catalog::image_json,
        )),
        Route::DropletsCreate => {
            let (v, ids) = cloud.create_droplets(body, config, rng, now, host)?;
            crate::phone_home::schedule(inner, &ids);
            Ok((202, Body::Json(Some(v))))
        }
        Route::DropletsList => Ok((
            200,
            Body::Text(cloud.list_droplets(
                req.query("tag_name"),
                req.query("name"),
                &req.page(),
                now,
            )),
        )),
        Route::DropletsDeleteByTag => match req.query("tag_name") {
            Some(t) => json(cloud.delete_droplets_by_tag(t)),
            None => Err(ApiError::bad_request("tag_name is required")),
        },
        Route::Droplet(id) => Ok((200, Body::Text(cloud.get_droplet(*id, now)?))),
        Route::DropletDelete(id) => json(cloud.delete_droplet(*id)),
        Route::DropletActions(id) => json(cloud.droplet_action(*id, body, now, host)),
        Route::Action(id) => json(cloud.get_action(*id, now, host)),
        Route::VolumesCreate => json(cloud.create_volume(body, config, now)),
        Route::VolumesList => {
            listed(cloud.list_volumes(req.query("name"), req.query("region"), &req.page()))
        }
        Route::Volume(id) => json(cloud.get_volume(id)),
        Route::VolumeDelete(id) => json(cloud.delete_volume(id)),
        Route::VolumeActions(id) => json(cloud.volume_action(id, body, now, host)),
        Route::KeysCreate => json(cloud.create_ssh_key(body)),
        Route::KeysList => listed(cloud.list_ssh_keys(&req.page())),
        Route::Key(k) => json(cloud.get_ssh_key(k)),
        Route::KeyDelete(k) => json(cloud.delete_ssh_key(k)),
        Route::TagsCreate => json(cloud.create_tag(body)),
        Route::TagsList => listed(cloud.list_tags(&req.page())),
        Route::Tag(t) => json(cloud.get_tag(t)),
        Route::TagDelete(t) => json(cloud.delete_tag(t)),
        Route::TagAssign(t) => json(cloud.tag_resources(t, body, true)),
        Route::TagUnassign(t) => json(cloud.tag_resources(t, body, false)),
    }
}

impl Fake {
    /// With `validate_requests`, refuses a body that violates the operation's request schema.
    pub(super) fn check_request(&self, route: &Route, body: &Value) -> Result<(), ApiError> {
        if !self.lock().config.validate_requests {
            return Ok(());
        }
        let Some(op_file) = route.request_spec() else {
            return Ok(());
        };
        let mut guard = self.spec.lock().unwrap_or_else(|p| p.into_inner());
        let spec = guard.get_or_insert_with(crate::contract::Spec::vendored);
        let errors = spec
            .operation(op_file)
            .and_then(|op| spec.request_schema(&op))
            .map(|schema| spec.validate(&schema, body))
            .unwrap_or_else(|e| vec![e]);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "request violates the API spec: {}",
                errors.join("; ")
            )))
        }
    }
}

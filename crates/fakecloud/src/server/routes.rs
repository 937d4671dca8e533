//! Routing: an HTTP method and path to one of the DigitalOcean operations the fake serves,
//! named by DigitalOcean's operationId (the key of stats and fault rules) and tied to its
//! vendored spec file.

use http::Method;

/// The API routes, each named by DigitalOcean's operationId (used in stats and fault rules).
#[derive(Debug, Clone)]
pub enum Route {
    Account,
    Regions,
    Sizes,
    Images,
    DropletsCreate,
    DropletsList,
    DropletsDeleteByTag,
    Droplet(u64),
    DropletDelete(u64),
    DropletActions(u64),
    Action(u64),
    VolumesCreate,
    VolumesList,
    Volume(String),
    VolumeDelete(String),
    VolumeActions(String),
    KeysCreate,
    KeysList,
    Key(String),
    KeyDelete(String),
    TagsCreate,
    TagsList,
    Tag(String),
    TagDelete(String),
    TagAssign(String),
    TagUnassign(String),
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let m = method.clone();
        use Method as M;
        Some(match (m, segs.as_slice()) {
            (M::GET, ["v2", "account"]) => Route::Account,
            (M::GET, ["v2", "regions"]) => Route::Regions,
            (M::GET, ["v2", "sizes"]) => Route::Sizes,
            (M::GET, ["v2", "images"]) => Route::Images,
            (M::POST, ["v2", "droplets"]) => Route::DropletsCreate,
            (M::GET, ["v2", "droplets"]) => Route::DropletsList,
            (M::DELETE, ["v2", "droplets"]) => Route::DropletsDeleteByTag,
            (M::GET, ["v2", "droplets", id]) => Route::Droplet(id.parse().ok()?),
            (M::DELETE, ["v2", "droplets", id]) => Route::DropletDelete(id.parse().ok()?),
            (M::POST, ["v2", "droplets", id, "actions"]) => Route::DropletActions(id.parse().ok()?),
            (M::GET, ["v2", "actions", id]) => Route::Action(id.parse().ok()?),
            (M::POST, ["v2", "volumes"]) => Route::VolumesCreate,
            (M::GET, ["v2", "volumes"]) => Route::VolumesList,
            (M::GET, ["v2", "volumes", id]) => Route::Volume(id.to_string()),
            (M::DELETE, ["v2", "volumes", id]) => Route::VolumeDelete(id.to_string()),
            (M::POST, ["v2", "volumes", id, "actions"]) => Route::VolumeActions(id.to_string()),
            (M::POST, ["v2", "account", "keys"]) => Route::KeysCreate,
            (M::GET, ["v2", "account", "keys"]) => Route::KeysList,
            (M::GET, ["v2", "account", "keys", k]) => Route::Key(k.to_string()),
            (M::DELETE, ["v2", "account", "keys", k]) => Route::KeyDelete(k.to_string()),
            (M::POST, ["v2", "tags"]) => Route::TagsCreate,
            (M::GET, ["v2", "tags"]) => Route::TagsList,
            (M::GET, ["v2", "tags", t]) => Route::Tag(t.to_string()),
            (M::DELETE, ["v2", "tags", t]) => Route::TagDelete(t.to_string()),
            (M::POST, ["v2", "tags", t, "resources"]) => Route::TagAssign(t.to_string()),
            (M::DELETE, ["v2", "tags", t, "resources"]) => Route::TagUnassign(t.to_string()),
            _ => return None,
        })
    }

    /// DigitalOcean's operationId.
    pub fn op(&self) -> &'static str {
        match self {
            Route::Account => "account_get",
            Route::Regions => "regions_list",
            Route::Sizes => "sizes_list",
            Route::Images => "images_list",
            Route::DropletsCreate => "droplets_create",
            Route::DropletsList => "droplets_list",
            Route::DropletsDeleteByTag => "droplets_destroy_byTag",
            Route::Droplet(_) => "droplets_get",
            Route::DropletDelete(_) => "droplets_destroy",
            Route::DropletActions(_) => "dropletActions_post",
            Route::Action(_) => "actions_get",
            Route::VolumesCreate => "volumes_create",
            Route::VolumesList => "volumes_list",
            Route::Volume(_) => "volumes_get",
            Route::VolumeDelete(_) => "volumes_delete",
            Route::VolumeActions(_) => "volumeActions_post_byId",
            Route::KeysCreate => "sshKeys_create",
            Route::KeysList => "sshKeys_list",
            Route::Key(_) => "sshKeys_get",
            Route::KeyDelete(_) => "sshKeys_delete",
            Route::TagsCreate => "tags_create",
            Route::TagsList => "tags_list",
            Route::Tag(_) => "tags_get",
            Route::TagDelete(_) => "tags_delete",
            Route::TagAssign(_) => "tags_assign_resources",
            Route::TagUnassign(_) => "tags_unassign_resources",
        }
    }

    /// The spec file of operations that take a JSON request body.
    pub fn request_spec(&self) -> Option<&'static str> {
        Some(match self {
            Route::DropletsCreate => "droplets/droplets_create.yml",
            Route::DropletActions(_) => "droplets/dropletActions_post.yml",
            Route::VolumesCreate => "volumes/volumes_create.yml",
            Route::VolumeActions(_) => "volumes/volumeActions_post_byId.yml",
            Route::KeysCreate => "ssh_keys/sshKeys_create.yml",
            Route::TagsCreate => "tags/tags_create.yml",
            Route::TagAssign(_) => "tags/tags_assign_resources.yml",
            Route::TagUnassign(_) => "tags/tags_unassign_resources.yml",
            _ => return None,
        })
    }

    /// The path of a list route, which its `links.pages` point at (empty for the others).
    pub fn list_path(&self) -> &'static str {
        match self {
            Route::DropletsList => "/v2/droplets",
            Route::VolumesList => "/v2/volumes",
            Route::KeysList => "/v2/account/keys",
            Route::TagsList => "/v2/tags",
            Route::Regions => "/v2/regions",
            Route::Sizes => "/v2/sizes",
            Route::Images => "/v2/images",
            _ => "",
        }
    }
}

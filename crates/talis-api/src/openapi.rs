//! The OpenAPI 3 document, generated from the Rust types (served at `GET /api/v1/openapi.json`).

use schemars::Schema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::internal::{
    ClaimedTask, EventRecorded, InstanceTransition, InstanceTransitionBatch, PhoneHomeBody,
    TaskClaim, TaskEventRecord, TaskFinish, TransitionsApplied,
};
use crate::*;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One RPC method: name, summary, params and result (`data`) schemas; `()` means no `data`.
pub struct MethodDoc {
    pub name: &'static str,
    pub summary: &'static str,
    params: SchemaFn,
    result: SchemaFn,
}

macro_rules! docs {
    ($($name:literal => $p:ty, $r:ty, $summary:literal;)+) => {
        &[$(MethodDoc { name: $name, summary: $summary, params: |g| g.subschema_for::<$p>(), result: |g| g.subschema_for::<$r>() }),+]
    };
}

/// Every public method.
pub const PUBLIC: &[MethodDoc] = docs! {
    "project.create" => ProjectCreate, ProjectCreated, "Create a project, optionally with instances (one transaction, one create_instances task).";
    "project.get" => ProjectRef, Project, "A project by name.";
    "project.list" => OwnerList, Page<Project>, "The caller's projects.";
    "project.delete" => ProjectRef, TaskQueued, "Delete a project; live instances are destroyed first by a delete_project task.";
    "project.listInstances" => ProjectListInstances, Page<Instance>, "Instances of a project (all statuses unless filtered).";
    "task.get" => TaskRef, Task, "A task by id.";
    "task.list" => TaskList, Page<Task>, "Tasks of a project.";
    "task.terminate" => TaskRef, Task, "Stop a pending or running task.";
    "task.updateStatus" => TaskUpdateStatus, Task, "Admin only: apply a legal task status transition.";
    "task.listByInstance" => TaskListByInstance, Page<Task>, "Tasks acting on one instance.";
    "user.create" => UserCreate, UserCreated, "Admin only: create a user (owner) and its first API key.";
    "user.get" => UserGet, UserGetResult, "A user by username, or the list of users.";
    "user.get.id" => IdRef, User, "A user by id.";
    "user.delete" => IdRef, (), "Admin only: delete a user and revoke its keys.";
    "sshkey.create" => SshKeyCreate, SshKey, "Store an SSH public key for instances.";
    "sshkey.list" => OwnerList, Page<SshKey>, "The caller's SSH keys.";
    "sshkey.delete" => SshKeyDelete, (), "Delete an SSH key by name.";
    "apikey.create" => ApiKeyCreate, ApiKeyCreated, "Create an API key (the key is shown only in this answer).";
    "apikey.list" => OwnerList, Page<ApiKey>, "The caller's API keys (without the keys).";
    "apikey.revoke" => IdRef, (), "Revoke an API key.";
    "instance.create" => InstanceCreate, InstancesCreated, "Create instances in existing projects (one task per project).";
    "instance.list" => InstanceList, Page<Instance>, "Instances (terminated ones only with include_deleted).";
    "instance.get" => InstanceGet, Instance, "An instance by id.";
    "instance.terminate" => InstanceTerminate, TaskQueued, "Terminate instances of a project (one terminate_instances task).";
    "instance.publicIps" => InstanceList, PublicIps, "Public IPs of instances.";
    "instance.metadata" => InstanceList, Page<Instance>, "Same as instance.list (the original's all-metadata).";
};

/// Every internal method (workflows only).
pub const INTERNAL: &[MethodDoc] = docs! {
    "task.claim" => TaskClaim, ClaimedTask, "pending → running for this invocation; the task, project, each distinct instance request once and the instances (referring to their request by index).";
    "instance.transition" => InstanceTransition, Instance, "Apply a legal instance transition (same status: no-op; illegal: 409).";
    "instance.transitionBatch" => InstanceTransitionBatch, TransitionsApplied, "Many transitions of one task in one transaction, each with its step event; refused ones reported per item.";
    "task.event" => TaskEventRecord, EventRecorded, "Append a step event (a repeated event_key is a no-op).";
    "task.finish" => TaskFinish, Task, "Terminal task transition with a result summary.";
};

fn envelope(data: Option<Schema>) -> Value {
    let mut props = Map::new();
    if let Some(d) = data {
        props.insert("data".into(), d.to_value());
    }
    json!({ "allOf": [
        { "$ref": "#/components/schemas/RpcResponse" },
        { "type": "object", "properties": props }
    ]})
}

fn responses(ok: Value, ok_code: &str) -> Value {
    let err = json!({ "description": "Error: the status equals error.code", "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/RpcResponse" } } } });
    json!({
        ok_code: { "description": "Success", "content": { "application/json": { "schema": ok } } },
        "400": err, "401": err, "403": err, "404": err, "409": err, "413": err
    })
}

fn rest(summary: &str, query: &[(&str, &str)], ok: Schema, code: &str) -> Value {
    let params: Vec<Value> = query
        .iter()
        .map(|(name, ty)| {
            let (where_, schema) = if *name == "id" { ("path", "integer") } else { ("query", *ty) };
            json!({ "name": name, "in": where_, "required": where_ == "path", "schema": { "type": schema } })
        })
        .collect();
    json!({ "summary": summary, "parameters": params, "responses": responses(ok.to_value(), code) })
}

/// The whole document.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    for m in PUBLIC {
        let params = (m.params)(&mut g);
        let result = Some((m.result)(&mut g));
        paths.insert(
            format!("/v1/{}", m.name),
            json!({ "post": {
                "operationId": m.name, "summary": m.summary, "tags": ["rpc"],
                "requestBody": { "required": true, "content": { "application/json": { "schema": params.to_value() } } },
                "responses": responses(envelope(result), "200"),
            }}),
        );
    }
    for m in INTERNAL {
        let params = (m.params)(&mut g);
        let result = Some((m.result)(&mut g));
        paths.insert(
            format!("/internal/v1/{}", m.name),
            json!({ "post": {
                "operationId": format!("internal.{}", m.name), "summary": m.summary, "tags": ["internal"],
                "security": [{ "internalSecret": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": params.to_value() } } },
                "responses": responses(envelope(result), "200"),
            }}),
        );
    }
    let envelope_req = g.subschema_for::<RpcRequest>();
    g.subschema_for::<RpcResponse>();
    let names: Vec<&str> = PUBLIC.iter().map(|m| m.name).collect();
    let rpc = json!({ "post": {
        "operationId": "rpc", "tags": ["rpc"],
        "summary": format!("Talis envelope {{method, params, id}}; method is one of: {}", names.join(", ")),
        "requestBody": { "required": true, "content": { "application/json": { "schema": envelope_req.to_value() } } },
        "responses": responses(json!({ "$ref": "#/components/schemas/RpcResponse" }), "200"),
    }});
    paths.insert("/api/v1/".into(), rpc.clone());
    paths.insert("/api/v1".into(), rpc);

    let list_q: &[(&str, &str)] = &[
        ("limit", "integer"),
        ("cursor", "string"),
        ("offset", "integer"),
        ("include_deleted", "boolean"),
        ("status", "string"),
    ];
    let page_inst = g.subschema_for::<Page<Instance>>();
    let ips = g.subschema_for::<PublicIps>();
    let inst = g.subschema_for::<Instance>();
    let slug = g.subschema_for::<Slug>();
    let reqs = g.subschema_for::<Vec<InstanceRequest>>();
    let term = g.subschema_for::<InstanceTerminate>();
    let health = g.subschema_for::<Health>();
    let phone = g.subschema_for::<PhoneHomeBody>();
    let list = rest(
        "Instances of the caller (admin: all owners)",
        list_q,
        page_inst.clone(),
        "200",
    );
    paths.insert("/api/v1/instances".into(), json!({
        "get": list,
        "post": { "summary": "Create instances (body: array of InstanceRequest)", "requestBody": { "required": true,
            "content": { "application/json": { "schema": reqs.to_value() } } }, "responses": responses(slug.clone().to_value(), "201") },
        "delete": { "summary": "Terminate instances", "requestBody": { "required": true,
            "content": { "application/json": { "schema": term.to_value() } } }, "responses": responses(slug.clone().to_value(), "200") },
    }));
    for p in [
        "/api/v1/admin/instances",
        "/api/v1/instances/all-metadata",
        "/api/v1/admin/instances/all-metadata",
    ] {
        paths.insert(p.into(), json!({ "get": rest("Instances (same as GET /api/v1/instances)", list_q, page_inst.clone(), "200") }));
    }
    paths.insert(
        "/api/v1/instances/public-ips".into(),
        json!({ "get": rest("Public IPs", list_q, ips, "200") }),
    );
    paths.insert(
        "/api/v1/instances/{id}".into(),
        json!({ "get": rest("One instance", &[("id", "integer")], inst, "200") }),
    );
    paths.insert(
        "/api/v1/instances/{id}/tasks".into(),
        json!({ "get": rest("Tasks of one instance (slug envelope, data: Page<Task>)",
            &[("id", "integer"), ("action", "string"), ("limit", "integer"), ("offset", "integer"), ("cursor", "string")], slug.clone(), "200") }),
    );
    paths.insert("/health".into(), json!({ "get": { "summary": "Liveness", "security": [],
        "responses": { "200": { "description": "ok", "content": { "application/json": { "schema": health.to_value() } } } } } }));
    paths.insert(
        "/api/v1/openapi.json".into(),
        json!({ "get": { "summary": "This document", "security": [],
        "responses": { "200": { "description": "OpenAPI 3 document" } } } }),
    );
    paths.insert("/v1/phone-home/{id}".into(), json!({ "post": {
        "summary": "A machine reports it is up; forwarded to its create workflow", "security": [],
        "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } },
                       { "name": "token", "in": "query", "required": true, "schema": { "type": "string" } }],
        "requestBody": { "content": { "application/json": { "schema": phone.to_value() } } },
        "responses": { "202": { "description": "forwarded" }, "401": { "description": "bad token" }, "404": { "description": "no such instance" } } } }));

    json!({
        "openapi": "3.0.3",
        "info": { "title": "Talis API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Deploy and track fleets of cloud machines. Every call is one database transaction; \
                                  the answer is sent after commit. Lists use `limit` + opaque `cursor`." },
        "security": [{ "apiKey": [] }],
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "A per-owner API key (also accepted in the `apikey` or `X-API-Key` header)" },
                "internalSecret": { "type": "http", "scheme": "bearer", "description": "The internal secret shared with the workflows" }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_documented() {
        let doc = document();
        for (m, _) in crate::METHODS {
            assert!(
                doc["paths"].get(format!("/v1/{m}")).is_some(),
                "{m} missing"
            );
        }
        for m in crate::internal::METHODS {
            assert!(
                doc["paths"].get(format!("/internal/v1/{m}")).is_some(),
                "{m} missing"
            );
        }
        assert_eq!(PUBLIC.len(), crate::METHODS.len());
        // Every $ref resolves.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling ref {name}"
            );
        }
        let pc = &doc["components"]["schemas"]["ProjectCreate"]["properties"];
        assert!(pc.get("instances").is_some() && pc.get("idempotency_key").is_some());
    }
}

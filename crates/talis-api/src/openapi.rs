//! The OpenAPI 3 document served at `GET /api/v1/openapi.json`, generated from the method table
//! and the types: every route, its params and results, every status it answers with and every
//! error body exactly as it is sent. `cargo xtask fuzz-api` holds the server to it.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::envelope::{Health, Readiness, RouteError, RpcRequest, RpcResponse, Slug};
use crate::internal::PhoneHomeBody;
use crate::methods::{self, MethodInfo};
use crate::model::Instance;
use crate::params::{
    InstanceCreate, InstanceList, InstanceTerminate, Page, PublicIps, TaskListByInstance,
};

/// Statuses every RPC operation may answer with besides 200, each with the envelope.
const RPC_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid params or body (error.data names the field)"),
    ("401", "No API key, or an unknown or revoked one"),
    ("403", "Not allowed for this key, or over a quota"),
    ("404", "Not found (or not the caller's)"),
    ("409", "Conflict with the current state"),
    ("413", "Body larger than the limit"),
    ("500", "Storage failure"),
];
const REST_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid input"),
    ("401", "No API key, or an unknown or revoked one"),
    ("403", "Not allowed for this key"),
    ("404", "Not found (or not the caller's)"),
    ("409", "Conflict with the current state"),
    ("413", "Body larger than the limit"),
    ("500", "Storage failure"),
];

fn to_value(s: Schema) -> Value {
    s.to_value()
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// Responses of an operation: `ok` under `ok_code`, and `errors` each with `err_schema`.
fn responses(ok_code: &str, ok: Value, errors: &[(&str, &str)], err_schema: &Value) -> Value {
    let mut r = Map::new();
    r.insert(
        ok_code.into(),
        json!({ "description": "Success", "content": json_content(ok) }),
    );
    for (code, what) in errors {
        r.insert(
            (*code).into(),
            json!({ "description": what, "content": json_content(err_schema.clone()) }),
        );
    }
    Value::Object(r)
}

/// The success envelope of a method: `RpcResponse` whose `data` is the result (absent for `()`).
fn ok_envelope(g: &mut SchemaGenerator, m: &MethodInfo) -> Value {
    let result = to_value((m.result)(g));
    let mut props = Map::new();
    if result.get("type") != Some(&json!("null")) {
        props.insert("data".into(), result);
    }
    props.insert(
        "success".into(),
        json!({ "type": "boolean", "enum": [true] }),
    );
    props.insert("id".into(), to_value(crate::envelope::request_id_schema(g)));
    json!({ "type": "object", "required": ["success"], "properties": props })
}

fn rpc_operation(
    g: &mut SchemaGenerator,
    m: &MethodInfo,
    id: String,
    tag: &str,
    err: &Value,
) -> Value {
    let params = to_value((m.params)(g));
    json!({
        "operationId": id,
        "summary": m.summary(),
        "description": m.doc.trim(),
        "tags": [tag],
        "requestBody": { "required": true, "content": json_content(params) },
        "responses": responses("200", ok_envelope(g, m), RPC_ERRORS, err),
    })
}

/// The envelope route's body: one alternative per public method, so each method's params are
/// checked against its own schema.
fn envelope_request(g: &mut SchemaGenerator) -> Value {
    let id = to_value(crate::envelope::request_id_schema(g));
    let alternatives: Vec<Value> = methods::public::METHODS
        .iter()
        .map(|m| {
            json!({
                "type": "object",
                // `params` may be left out (or null): the method is called with `{}`.
                "required": ["method"],
                "properties": {
                    "method": { "type": "string", "enum": [m.name] },
                    "params": { "allOf": [to_value((m.params)(g))], "nullable": true },
                    "id": id,
                }
            })
        })
        .collect();
    json!({ "oneOf": alternatives, "description": "`{method, params, id}`; `params` as the method's `POST /v1/<method>` body" })
}

/// Query parameters of a REST read, one per property of its params type (the RPC method the
/// route calls), so both stay the same fact.
fn query_params<T: JsonSchema>(g: &mut SchemaGenerator, skip: &[&str]) -> Vec<Value> {
    let schema = to_value(g.root_schema_for::<T>());
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .map(|(name, s)| {
            let mut s = s.clone();
            if let Some(o) = s.as_object_mut() {
                o.remove("description");
            }
            json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": s })
        })
        .collect()
}

fn id_path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "integer", "format": "int64", "minimum": 1 } })
}

/// The whole document.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let rpc_err = to_value(g.subschema_for::<RpcResponse>());
    let slug = to_value(g.subschema_for::<Slug>());
    // Unknown paths (404) and other methods on a known path (405) answer a `RouteError`.
    g.subschema_for::<RouteError>();
    let mut paths = Map::new();

    for m in methods::public::METHODS {
        let op = rpc_operation(&mut g, m, m.name.to_string(), "rpc", &rpc_err);
        paths.insert(format!("/v1/{}", m.name), json!({ "post": op }));
    }
    for m in methods::internal::METHODS {
        let mut op = rpc_operation(
            &mut g,
            m,
            format!("internal.{}", m.name),
            "internal",
            &rpc_err,
        );
        op["security"] = json!([{ "internalSecret": [] }]);
        paths.insert(format!("/internal/v1/{}", m.name), json!({ "post": op }));
    }
    let names: Vec<&str> = methods::public::METHODS.iter().map(|m| m.name).collect();
    let envelope = json!({ "post": {
        "operationId": "rpc",
        "tags": ["rpc"],
        "summary": "The Talis envelope {method, params, id}",
        "description": format!("`method` is one of: {}. Answers the same envelope as `POST /v1/<method>`.", names.join(", ")),
        "requestBody": { "required": true, "content": json_content(envelope_request(&mut g)) },
        "responses": responses("200", rpc_err.clone(), RPC_ERRORS, &rpc_err),
    }});
    paths.insert("/api/v1/".into(), envelope);
    let _ = g.subschema_for::<RpcRequest>();

    // The original REST routes: bare results on success, the slug envelope on error.
    let list_query = query_params::<InstanceList>(&mut g, &[]);
    let page_inst = to_value(g.subschema_for::<Page<Instance>>());
    let list = |summary: &str, ok: &Value| {
        json!({ "summary": summary, "tags": ["rest"], "parameters": list_query,
                "responses": responses("200", ok.clone(), REST_ERRORS, &slug) })
    };
    // The bare array is `instance.create`'s `instances`, with the same bounds.
    g.subschema_for::<InstanceCreate>();
    let create_body = g.definitions()["InstanceCreate"]["properties"]["instances"].clone();
    let terminate_body = to_value(g.subschema_for::<InstanceTerminate>());
    paths.insert(
        "/api/v1/instances".into(),
        json!({
            "get": list("Instances of the caller (admin: of every owner)", &page_inst),
            "post": { "summary": "Create instances (body: the array of `instance.create`)", "tags": ["rest"],
                      "requestBody": { "required": true, "content": json_content(create_body) },
                      "responses": responses("201", slug.clone(), REST_ERRORS, &slug) },
            "delete": { "summary": "Terminate instances (body: `instance.terminate` params)", "tags": ["rest"],
                        "requestBody": { "required": true, "content": json_content(terminate_body) },
                        "responses": responses("200", slug.clone(), REST_ERRORS, &slug) },
        }),
    );
    for p in [
        "/api/v1/admin/instances",
        "/api/v1/instances/all-metadata",
        "/api/v1/admin/instances/all-metadata",
    ] {
        paths.insert(
            p.into(),
            json!({ "get": list("Instances (same as GET /api/v1/instances)", &page_inst) }),
        );
    }
    let ips = to_value(g.subschema_for::<PublicIps>());
    paths.insert(
        "/api/v1/instances/public-ips".into(),
        json!({ "get": list("Public IPs", &ips) }),
    );
    let inst = to_value(g.subschema_for::<Instance>());
    paths.insert(
        "/api/v1/instances/{id}".into(),
        json!({ "get": { "summary": "One instance", "tags": ["rest"], "parameters": [id_path_param("id")],
                         "responses": responses("200", inst, REST_ERRORS, &slug) } }),
    );
    let mut task_query = query_params::<TaskListByInstance>(&mut g, &["instance_id"]);
    task_query.insert(0, id_path_param("id"));
    paths.insert(
        "/api/v1/instances/{id}/tasks".into(),
        json!({ "get": { "summary": "Tasks of one instance (slug envelope; data: Page<Task>)", "tags": ["rest"],
                         "parameters": task_query, "responses": responses("200", slug.clone(), REST_ERRORS, &slug) } }),
    );

    let events_query = query_params::<crate::events::EventList>(&mut g, &[]);
    let page_events = to_value(g.subschema_for::<Page<crate::events::Event>>());
    paths.insert(
        "/api/v1/events".into(),
        json!({ "get": { "summary": "The caller's events (`event.list`; `kinds` repeated or comma-separated)",
                         "tags": ["rest"], "parameters": events_query,
                         "responses": responses("200", page_events, REST_ERRORS, &slug) } }),
    );

    let health = to_value(g.subschema_for::<Health>());
    paths.insert(
        "/health".into(),
        json!({ "get": { "summary": "Liveness", "security": [], "tags": ["ops"],
        "responses": { "200": { "description": "ok", "content": json_content(health) } } } }),
    );
    let ready = to_value(g.subschema_for::<Readiness>());
    paths.insert(
        "/ready".into(),
        json!({ "get": { "summary": "Readiness: the database answers and its schema is current (a fresh database is migrated first)",
        "security": [], "tags": ["ops"],
        "responses": { "200": { "description": "ready", "content": json_content(ready.clone()) },
                       "503": { "description": "not ready, with the reason", "content": json_content(ready) } } } }),
    );
    let prometheus = json!({ "text/plain; version=0.0.4": { "schema": { "type": "string" } } });
    paths.insert(
        "/api/v1/metrics".into(),
        json!({ "get": { "summary": "Fleet gauges in the Prometheus text format (admin keys only)",
        "description": "`talis_fleet_instances{status,provider}` and `talis_fleet_tasks{status}`: every owner's rows, counted when scraped.",
        "tags": ["ops"],
        "responses": {
            "200": { "description": "Prometheus text format 0.0.4", "content": prometheus },
            "401": { "description": "No API key, or an unknown or revoked one", "content": json_content(rpc_err.clone()) },
            "403": { "description": "Not an admin key", "content": json_content(rpc_err.clone()) },
            "500": { "description": "Storage failure", "content": json_content(rpc_err.clone()) },
        } } }),
    );
    paths.insert("/api/v1/openapi.json".into(), json!({ "get": { "summary": "This document", "security": [], "tags": ["ops"],
        "responses": { "200": { "description": "OpenAPI 3 document", "content": json_content(json!({ "type": "object" })) } } } }));
    let phone = to_value(g.subschema_for::<PhoneHomeBody>());
    paths.insert("/v1/phone-home/{id}".into(), json!({ "post": {
        "summary": "A machine reports it is up; forwarded to its create workflow", "security": [], "tags": ["machines"],
        "parameters": [id_path_param("id"),
                       { "name": "task", "in": "query", "required": true, "schema": { "type": "integer", "format": "int64", "minimum": 1 } },
                       { "name": "exp", "in": "query", "required": true, "schema": { "type": "integer", "format": "int64" } },
                       { "name": "token", "in": "query", "required": true, "schema": { "type": "string" } }],
        "requestBody": { "required": true, "content": json_content(phone) },
        "responses": {
            "202": { "description": "Applied (or a repeat of one applied before)", "content": json_content(slug.clone()) },
            "400": { "description": "Invalid body", "content": json_content(rpc_err.clone()) },
            "401": { "description": "Bad token", "content": json_content(rpc_err.clone()) },
            "403": { "description": "Expired token (past the provision timeout)", "content": json_content(rpc_err.clone()) },
            "404": { "description": "No such task, or the machine is none of the task's", "content": json_content(rpc_err.clone()) },
            "409": { "description": "The instance is no longer wanted, or its task is finished", "content": json_content(rpc_err.clone()) },
            "413": { "description": "Body larger than the limit", "content": json_content(rpc_err.clone()) },
            "503": { "description": "The machine is not recorded yet: retry after `Retry-After` seconds", "content": json_content(rpc_err.clone()) },
        } } }));

    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "Talis API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Deploy and track fleets of cloud machines. Every call is one database transaction; \
                                  the answer is sent after commit. Lists use `limit` + opaque `cursor`. \
                                  Unknown paths answer 404 and known paths called with another method 405 (with `Allow`), \
                                  both with a `RouteError` body." },
        "security": [{ "apiKey": [] }],
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "A per-owner API key (also accepted in the `apikey` or `X-API-Key` header)" },
                "internalSecret": { "type": "http", "scheme": "bearer", "description": "The internal secret shared with the workflows" }
            }
        }
    });
    bound_unsigned_formats(&mut doc);
    doc
}

/// schemars marks unsigned integers with formats OpenAPI does not define (`uint32` …), which
/// generators and validators ignore; state the range they stand for as `maximum`.
fn bound_unsigned_formats(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let max = match o.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") | Some("uint") => Some(u64::from(u32::MAX)),
                Some("uint64") => Some(i64::MAX as u64),
                _ => None,
            };
            if let Some(max) = max {
                o.entry("maximum").or_insert(json!(max));
                o.entry("minimum").or_insert(json!(0));
            }
            o.values_mut().for_each(bound_unsigned_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_unsigned_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_documented_and_every_ref_resolves() {
        let doc = document();
        for m in methods::public::METHODS {
            assert!(
                doc["paths"].get(format!("/v1/{}", m.name)).is_some(),
                "{} missing",
                m.name
            );
        }
        for m in methods::internal::METHODS {
            assert!(
                doc["paths"]
                    .get(format!("/internal/v1/{}", m.name))
                    .is_some(),
                "{} missing",
                m.name
            );
        }
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling ref {name}"
            );
        }
    }

    #[test]
    fn constraints_reach_the_schemas() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        let pc = &s["ProjectCreate"];
        assert_eq!(pc["required"], json!(["name"]));
        assert_eq!(
            pc["properties"]["name"]["maxLength"],
            json!(crate::rules::MAX_NAME)
        );
        assert_eq!(
            pc["properties"]["name"]["pattern"],
            json!(crate::rules::NAME.pattern)
        );
        let req = &s["InstanceRequest"]["properties"];
        assert_eq!(
            req["number_of_instances"]["maximum"],
            json!(crate::rules::MAX_INSTANCES_PER_CALL)
        );
        assert_eq!(req["tags"]["maxItems"], json!(crate::rules::MAX_TAGS));
        assert_eq!(
            req["provider"]["$ref"],
            json!("#/components/schemas/Provider")
        );
        let term = &s["InstanceTerminate"]["properties"]["instance_ids"];
        assert_eq!(term["minItems"], json!(1));
        let limit = doc["paths"]["/api/v1/instances"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["maximum"], json!(crate::rules::MAX_LIMIT));
    }
}

//! The API's OpenAPI 3.1 document, served at `/api/v1/openapi.json`. The operator
//! configuration's schema in it is the one `fediversity schema operator` prints, generated from
//! the same types, so it cannot drift; the test suite checks that every path it lists is routed.

use axum::response::Json;
use serde_json::{Value, json};

use crate::fleet_release::{
    DEFAULT_BATCH, DEFAULT_CONCURRENCY, DEFAULT_EXPECTED_MINUTES, DEFAULT_MAX_FAILURE_RATE,
};

/// A response carrying JSON described by `schema`.
fn reply(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The error responses every operator route may give.
fn errors() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    json!({
        "401": reply("No valid bearer token.", error.clone()),
        "404": reply("No such operator or deployment, or not one this token may see.", error),
    })
}

fn with_errors(mut responses: Value) -> Value {
    if let (Some(map), Value::Object(errors)) = (responses.as_object_mut(), errors()) {
        map.extend(errors);
    }
    responses
}

fn operator_parameter() -> Value {
    json!({"name": "operator", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn deployment_parameter() -> Value {
    json!({"name": "deployment", "in": "path", "required": true, "schema": {"type": "integer"}})
}

fn release_parameter() -> Value {
    json!({"name": "release", "in": "path", "required": true, "schema": {"type": "integer"}})
}

/// The fleet routes, for the hosting provider's administrators (404 for operators' tokens).
fn fleet_paths() -> Value {
    let release = json!({"$ref": "#/components/schemas/Release"});
    let change = |summary: &str| {
        json!({
            "parameters": [release_parameter()],
            "post": {"summary": summary, "responses": with_errors(json!({"200": reply("The release.", release.clone())}))},
        })
    };
    let summary = json!({"$ref": "#/components/schemas/FleetSummary"});
    json!({
        "/api/v1/fleet/releases": {
            "get": {
                "summary": "Every release, newest first (administrators only).",
                "responses": with_errors(json!({"200": reply("The releases.", json!({"type": "array", "items": release.clone()}))})),
            },
            "post": {
                "summary": "Publish a release, as `fediversity fleet release` does: its fleet summary is computed against the release's infra.toml, then (unless `dry_run`) the release is stored and the workers roll it out in each operator's maintenance windows (administrators only).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReleaseRequest"}}}},
                "responses": with_errors(json!({
                    "201": reply("Published.", json!({"type": "object", "required": ["id", "url", "summary"], "properties": {"id": {"type": "integer"}, "url": {"type": "string"}, "summary": summary.clone()}})),
                    "200": reply("A dry run: the summary alone, nothing stored.", json!({"type": "object", "required": ["summary"], "properties": {"summary": summary}})),
                    "400": reply("The request is wrong (infra.toml that does not parse or validate, unknown canary, bad rollout numbers, deadline in the past, unknown field); the message says what.", json!({"$ref": "#/components/schemas/Error"})),
                })),
            },
        },
        "/api/v1/fleet/releases/{release}": {
            "parameters": [release_parameter()],
            "get": {
                "summary": "A release and every operator's wave, slot and status (administrators only).",
                "responses": with_errors(json!({"200": reply("The release with `items`.", release.clone())})),
            },
        },
        "/api/v1/fleet/releases/{release}/pause": change("Pause a rollout: running deployments finish, nobody new starts."),
        "/api/v1/fleet/releases/{release}/resume": change("Resume a paused or halted rollout."),
    })
}

/// The invitation route, for the hosting provider's administrators (404 for operators' tokens).
fn invitation_paths() -> Value {
    let created = json!({"type": "object", "required": ["id", "note", "link", "expires_at"], "properties": {
        "id": {"type": "integer"}, "note": {"type": "string"},
        "link": {"type": "string", "description": "The one-time sign-up link to send the customer; not shown again (only its token's hash is kept)."},
        "expires_at": {"type": "integer", "description": "milliseconds since the Unix epoch"},
    }});
    json!({
        "/api/v1/invitations": {
            "post": {
                "summary": "Make an invitation to sign up, for a panel run with `--sign-up invitation`: its link works once, for 7 days (administrators only).",
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {"note": {"type": "string", "description": "Whom it is for (e.g. the customer's name); at most 200 characters are kept."}}}}}},
                "responses": with_errors(json!({
                    "201": reply("The invitation and its link.", created),
                    "400": reply("The body is not an invitation request (not JSON, or an unknown field).", json!({"$ref": "#/components/schemas/Error"})),
                })),
            },
        },
    })
}

/// The release schema.
fn release_schema() -> Value {
    json!({"type": "object", "properties": {
        "id": {"type": "integer"}, "title": {"type": "string"},
        "severity": {"enum": ["routine", "security"]}, "deadline": {"type": ["integer", "null"]},
        "state": {"type": "string"}, "halt_reason": {"type": ["string", "null"]},
        "expected_minutes": {"type": "integer"}, "created_at": {"type": "integer"},
        "updated_at": {"type": "integer"}, "items": {"type": "array", "items": {"type": "object"}},
    }})
}

/// The body of a release request: `fediversity fleet release`'s flags, with its defaults.
fn release_request_schema() -> Value {
    json!({"type": "object", "required": ["infra", "title", "severity"], "additionalProperties": false, "properties": {
        "infra": {"type": "string", "description": "The release's infra.toml, as text: it is stored as given and deployed with."},
        "title": {"type": "string", "description": "What the release is, as operators are told."},
        "severity": {"enum": ["routine", "security"]},
        "deadline": {"type": ["string", "null"], "format": "date-time", "description": "RFC 3339, in the future: for a security release, applied by then, outside windows if need be."},
        "canaries": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Operators deployed first, in the canary wave."},
        "batch": {"type": "integer", "minimum": 1, "default": DEFAULT_BATCH, "description": "How many operators a wave after the canaries has."},
        "concurrency": {"type": "integer", "minimum": 1, "default": DEFAULT_CONCURRENCY, "description": "How many operators deploy at once, at most."},
        "max_failure_rate": {"type": "number", "minimum": 0, "maximum": 1, "default": DEFAULT_MAX_FAILURE_RATE, "description": "The share of a wave's operators that may fail before the rollout halts."},
        "expected_minutes": {"type": "integer", "minimum": 0, "default": DEFAULT_EXPECTED_MINUTES, "description": "How long one operator's deployment is expected to take."},
        "dry_run": {"type": "boolean", "default": false, "description": "Only compute the summary; store nothing."},
    }})
}

/// What a release changes across the fleet.
fn fleet_summary_schema() -> Value {
    json!({"type": "object", "properties": {
        "operators": {"type": "integer", "description": "How many operators have a configuration (the rollout covers them)."},
        "affected": {"type": "array", "items": {"type": "object", "properties": {
            "operator": {"type": "string"},
            "changes": {"type": "array", "items": {"type": "string"}, "description": "Every resource that changes, as `verb address`."},
            "restarts": {"type": "array", "items": {"type": "string"}, "description": "NixOS hosts updated in place: their services restart."},
            "replaces": {"type": "array", "items": {"type": "string"}, "description": "VMs made anew (data on volumes and buckets is kept)."},
            "problem": {"type": ["string", "null"], "description": "Why the operator cannot be planned for under the release: its deployment would fail."},
        }}},
    }})
}

/// The document.
pub async fn document() -> Json<Value> {
    let mut document = base();
    for extra in [fleet_paths(), invitation_paths()] {
        if let (Some(Value::Object(paths)), Value::Object(extra)) =
            (document.get_mut("paths"), extra)
        {
            paths.extend(extra);
        }
    }
    if let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") {
        schemas.insert("Release".to_owned(), release_schema());
        schemas.insert("ReleaseRequest".to_owned(), release_request_schema());
        schemas.insert("FleetSummary".to_owned(), fleet_summary_schema());
    }
    Json(document)
}

fn base() -> Value {
    let deployment = json!({"$ref": "#/components/schemas/Deployment"});
    let invalid = reply(
        "The configuration is refused; every problem is listed.",
        json!({"$ref": "#/components/schemas/Problems"}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Fediversity panel API",
            "version": "1",
            "description": "Configure, plan and deploy an operator's services. Authenticate with `Authorization: Bearer <token>`, a token made on the panel's dashboard.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/operators/{operator}/configurations": {
                "parameters": [operator_parameter()],
                "get": {
                    "summary": "Every configuration version, oldest first.",
                    "responses": with_errors(json!({"200": reply("The versions.", json!({"type": "array", "items": {"type": "object", "properties": {"version": {"type": "integer"}, "created_at": {"type": "integer", "description": "milliseconds since the Unix epoch"}, "config": {"$ref": "#/components/schemas/OperatorConfig"}}}}))})),
                },
                "post": {
                    "summary": "Save a configuration as the next version (nothing is saved when it is unchanged).",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OperatorConfig"}}}},
                    "responses": with_errors(json!({
                        "201": reply("Saved.", json!({"type": "object", "properties": {"version": {"type": "integer"}, "saved": {"const": true}}})),
                        "200": reply("Unchanged: the latest version is the same.", json!({"type": "object", "properties": {"version": {"type": "integer"}, "saved": {"const": false}}})),
                        "400": reply("The body is not JSON.", json!({"$ref": "#/components/schemas/Error"})),
                        "422": invalid,
                    })),
                },
            },
            "/api/v1/operators/{operator}/plan": {
                "parameters": [operator_parameter()],
                "get": {
                    "summary": "What deploying the latest configuration would do, against what is deployed. Nothing is changed.",
                    "responses": with_errors(json!({"200": reply("The plan, secrets masked.", json!({"type": "object", "properties": {"version": {"type": "integer"}, "interrupted_changes": {"type": "integer"}, "plan": {"type": "object"}}})), "409": reply("No configuration saved yet.", json!({"$ref": "#/components/schemas/Error"}))})),
                },
            },
            "/api/v1/operators/{operator}/deployments": {
                "parameters": [operator_parameter()],
                "get": {
                    "summary": "The operator's deployments, newest first.",
                    "responses": with_errors(json!({"200": reply("The deployments.", json!({"type": "array", "items": deployment}))})),
                },
                "post": {
                    "summary": "Queue a deployment of a configuration version.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer"}}}}}},
                    "responses": with_errors(json!({
                        "202": reply("Queued.", json!({"type": "object", "properties": {"id": {"type": "integer"}, "url": {"type": "string"}}})),
                        "400": reply("The body is not `{\"version\": N}`.", json!({"$ref": "#/components/schemas/Error"})),
                        "409": reply("Another deployment is under way.", json!({"$ref": "#/components/schemas/Error"})),
                    })),
                },
            },
            "/api/v1/operators/{operator}/deployments/{deployment}": {
                "parameters": [operator_parameter(), deployment_parameter()],
                "get": {
                    "summary": "One deployment: `queued`, `running`, `succeeded` or `failed`, with its report once it ended.",
                    "responses": with_errors(json!({"200": reply("The deployment.", deployment)})),
                },
            },
            "/api/v1/operators/{operator}/deployments/{deployment}/events": {
                "parameters": [operator_parameter(), deployment_parameter(), {"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}, "description": "Only events numbered after this one."}],
                "get": {
                    "summary": "The deployment's events in order: planned, started, progress, succeeded, failed, finished. Poll with `after` set to the last `seq` seen.",
                    "responses": with_errors(json!({"200": reply("The events.", json!({"type": "array", "items": {"type": "object", "properties": {"seq": {"type": "integer"}, "at": {"type": "integer"}, "event": {"type": "object"}}}}))})),
                },
            },
            "/api/v1/operators/{operator}/deployments/{deployment}/stream": {
                "parameters": [operator_parameter(), deployment_parameter(), {"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}, "description": "Only events numbered after this one (a `Last-Event-ID` header takes precedence)."}],
                "get": {
                    "summary": "The deployment's events as server-sent events, as they happen: an `event` message per event (data: `{seq, at, event}`, id: its `seq`), then one `done` message with the finished deployment, and the stream ends.",
                    "responses": with_errors(json!({"200": {"description": "The event stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}}})),
                },
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "OperatorConfig": fediversity_model::schema::operator_schema(),
                "Deployment": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "configuration_version": {"type": "integer"},
                    "status": {"enum": ["queued", "running", "succeeded", "failed"]},
                    "created_at": {"type": "integer"},
                    "started_at": {"type": ["integer", "null"]},
                    "finished_at": {"type": ["integer", "null"]},
                    "report": {"type": ["object", "null"]},
                }},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Problems": {"type": "object", "properties": {
                    "error": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
                }},
            },
        },
    })
}

//! `src/openapi.json` against the code, so the document cannot drift from what the service
//! does: route by route (every path the router mounts is documented and every documented
//! path is mounted; every documented method answers, every other method is a 405), and
//! schema by schema (the JSON the contract types read and write has exactly the documented
//! properties). schemathesis (`cargo xtask test`'s contract step) then checks live answers
//! against the same document.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use beacon_service::model::{
    Device, DeviceBatch, DeviceOutcome, ErrorBody, IngestBatch, IngestOutcome, MultiIngest,
    MultiIngestOutcome, NewReading, RegisterRequest, Registered, StoredReading, Value as Kind,
};
use beacon_service::store::DynStore;
use beacon_service::{AppState, Config, open_store, router};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt as _;

fn doc() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `.route("<path>", ...)` in the service's sources: the router's paths.
fn mounted_paths() -> BTreeSet<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = BTreeSet::new();
    let mut files = vec![src.clone()];
    while let Some(dir) = files.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                files.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, _) in text.match_indices(".route(") {
                let rest = text[i + 7..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    let end = lit.find('"').unwrap();
                    paths.insert(lit[..end].to_string());
                }
            }
        }
    }
    paths
}

#[test]
fn every_mounted_path_is_documented_and_every_documented_path_is_mounted() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let mounted = mounted_paths();
    assert!(mounted.len() >= 5, "found only {mounted:?} in src/");
    assert_eq!(
        mounted, documented,
        "src/openapi.json's paths differ from the router's `.route(...)` paths: document the \
         new route (or remove the stale one) in src/openapi.json"
    );
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

#[tokio::test]
async fn every_documented_method_answers_and_every_other_method_is_405() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_db(dir.path().join("t.db"));
    // Every documented path mounted, the opt-in diagnostics too.
    config.debug_endpoints = true;
    let store: Arc<dyn DynStore> = Arc::new(open_store(&config).await.unwrap());
    let state = AppState::new(config, store).await.unwrap();
    let app = router(Arc::clone(&state));
    let doc = doc();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "1");
        for method in METHODS {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let req = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            if documented {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but the router refuses the method"
                );
                if status == StatusCode::NOT_FOUND {
                    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    let text = String::from_utf8_lossy(&body);
                    assert!(
                        !text.contains("no such path"),
                        "{method} {path} is documented but not routed: {text}"
                    );
                }
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not in src/openapi.json but the router takes it"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "checked {checked} (path, method) pairs");
    drop(state);
}

/// The schema `name` (with `allOf` parts merged): its properties and required fields.
fn properties(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let schema = &doc["components"]["schemas"][name];
    let mut props = BTreeSet::new();
    let mut required = BTreeSet::new();
    let mut closed = false;
    let parts: Vec<&Value> = match schema.get("allOf") {
        Some(all) => all
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
                None => p,
            })
            .collect(),
        None => vec![schema],
    };
    for p in parts {
        assert!(p.is_object(), "no schema {name} in src/openapi.json");
        props.extend(p["properties"].as_object().unwrap().keys().cloned());
        if let Some(r) = p.get("required") {
            required.extend(
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
        }
        closed |= p.get("additionalProperties") == Some(&Value::Bool(false));
    }
    (props, required, closed)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn each_schema_has_exactly_the_fields_of_its_rust_type() {
    let doc = doc();
    let reading = NewReading {
        device_id: Some(1),
        boot: 2,
        seq: 3,
        uptime_ms: 4,
        sampled_at_ms: Some(5),
        values: vec![Kind::Counter { value: 1 }],
    };
    let device = Device {
        id: 1,
        name: Some("n".into()),
        registered_at_ms: 1,
    };
    let entry = DeviceBatch {
        device_id: 1,
        token: "t".into(),
        readings: vec![reading.clone()],
    };
    let outcome = DeviceOutcome {
        device_id: 1,
        status: 401,
        accepted: 0,
        duplicates: 0,
        error: Some("e".into()),
        field: Some("batches[0].token".into()),
    };
    // Every optional field filled, so the serialised keys are all the fields.
    let full: Vec<(&str, Value)> = vec![
        ("NewReading", serde_json::to_value(&reading).unwrap()),
        (
            "IngestBatch",
            serde_json::to_value(IngestBatch {
                readings: vec![reading.clone()],
            })
            .unwrap(),
        ),
        (
            "IngestOutcome",
            serde_json::to_value(IngestOutcome::default()).unwrap(),
        ),
        ("DeviceBatch", serde_json::to_value(entry.clone()).unwrap()),
        (
            "MultiIngest",
            serde_json::to_value(MultiIngest {
                batches: vec![entry],
            })
            .unwrap(),
        ),
        ("DeviceOutcome", serde_json::to_value(&outcome).unwrap()),
        (
            "MultiIngestOutcome",
            serde_json::to_value(MultiIngestOutcome {
                results: vec![outcome],
            })
            .unwrap(),
        ),
        (
            "StoredReading",
            serde_json::to_value(StoredReading {
                device_id: 1,
                boot: 2,
                seq: 3,
                uptime_ms: 4,
                sampled_at_ms: 5,
                received_at_ms: 6,
                values: vec![],
            })
            .unwrap(),
        ),
        (
            "RegisterRequest",
            serde_json::to_value(RegisterRequest {
                id: Some(1),
                token: Some("t".into()),
                name: Some("n".into()),
            })
            .unwrap(),
        ),
        ("Device", serde_json::to_value(&device).unwrap()),
        (
            "Registered",
            serde_json::to_value(Registered {
                device,
                token: Some("t".into()),
                created: true,
            })
            .unwrap(),
        ),
        (
            "Error",
            serde_json::to_value(ErrorBody {
                error: "e".into(),
                field: Some("f".into()),
                offset: Some(1),
            })
            .unwrap(),
        ),
    ];
    for (name, json) in &full {
        let (props, required, _) = properties(&doc, name);
        assert_eq!(
            &keys(json),
            &props,
            "schema {name} in src/openapi.json lists other properties than the Rust type has"
        );
        assert!(
            required.is_subset(&props),
            "schema {name}: required {required:?} not among its properties"
        );
    }
    // Request types refuse what the document calls additional properties.
    for (name, json) in &full {
        let (_, _, closed) = properties(&doc, name);
        let mut extra = json.clone();
        extra["not_a_field"] = json!(1);
        let refused = match *name {
            "NewReading" => serde_json::from_value::<NewReading>(extra).is_err(),
            "IngestBatch" => serde_json::from_value::<IngestBatch>(extra).is_err(),
            "DeviceBatch" => serde_json::from_value::<DeviceBatch>(extra).is_err(),
            "MultiIngest" => serde_json::from_value::<MultiIngest>(extra).is_err(),
            "RegisterRequest" => serde_json::from_value::<RegisterRequest>(extra).is_err(),
            _ => continue,
        };
        assert_eq!(
            closed, refused,
            "schema {name}: additionalProperties: false in the document iff the type refuses them"
        );
    }
}

#[test]
fn each_value_kind_is_one_documented_alternative() {
    let doc = doc();
    let alternatives = doc["components"]["schemas"]["Value"]["oneOf"]
        .as_array()
        .unwrap()
        .clone();
    let kinds = [
        Kind::TemperatureC { value: 1.5 },
        Kind::HumidityPct { value: 1.5 },
        Kind::Counter { value: 1 },
        Kind::Status { value: 1 },
        Kind::Boot {
            firmware: "1.2.3".into(),
            board: 1,
        },
        Kind::Unknown { code: 9, len: 2 },
    ];
    assert_eq!(alternatives.len(), kinds.len(), "one alternative per kind");
    for k in kinds {
        let json = serde_json::to_value(&k).unwrap();
        let kind = json["kind"].as_str().unwrap();
        let alt = alternatives
            .iter()
            .find(|a| a["properties"]["kind"]["const"] == kind)
            .unwrap_or_else(|| panic!("kind {kind} is not documented in Value.oneOf"));
        assert_eq!(keys(&json), keys(&alt["properties"]), "kind {kind}");
        let back: Kind = serde_json::from_value(json).unwrap();
        assert_eq!(back, k);
    }
}

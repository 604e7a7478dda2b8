//! The OpenAPI document must not change by accident.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p simbatch-api --test openapi_snapshot`.

#[test]
fn openapi_matches_snapshot() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
    let now = simbatch_api::openapi::spec_json();
    let doc: serde_json::Value = serde_json::from_str(&now).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, format!("{now}\n")).unwrap();
        return;
    }
    let saved = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        saved.trim_end() == now.trim_end(),
        "the OpenAPI document changed; if intended, run UPDATE_SNAPSHOTS=1 cargo test -p simbatch-api --test openapi_snapshot"
    );
}

#[test]
fn every_operation_documents_its_errors() {
    let doc: serde_json::Value = serde_json::from_str(&simbatch_api::openapi::spec_json()).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                assert!(responses.contains_key("500"), "{method} {path} lacks 500");
            }
        }
    }
}

//! `/docs`: the interactive reference of `/openapi.json`, rendered by
//! Swagger UI (swagger-ui-dist 5.35.0, Apache-2.0), vendored under
//! `crates/api/assets/swagger-ui/` and embedded in the binary: nothing is
//! fetched from the network at build or run time.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

const BUNDLE_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const LICENSE: &[u8] = include_bytes!("../assets/swagger-ui/LICENSE");

/// The page: our own markup; the vendored assets are loaded from `/docs/`.
const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>simbatch API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

/// Start Swagger UI on our spec, with the online validator off (it would call out).
const INIT_JS: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#ui",
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"##;

/// Content security policy of the page: only our own origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'";

/// The `/docs` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/docs", get(index))
        .route("/docs/", get(index))
        .route("/docs/{asset}", get(asset))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        INDEX,
    )
        .into_response()
}

/// The content type and bytes of a vendored asset.
fn lookup(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "swagger-ui-bundle.js" => ("text/javascript; charset=utf-8", BUNDLE_JS),
        "swagger-ui.css" => ("text/css; charset=utf-8", CSS),
        "init.js" => ("text/javascript; charset=utf-8", INIT_JS.as_bytes()),
        "LICENSE" => ("text/plain; charset=utf-8", LICENSE),
        _ => return None,
    })
}

async fn asset(Path(name): Path<String>) -> Response {
    match lookup(&name) {
        Some((ct, bytes)) => (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::not_found("asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_only_local_assets() {
        for src in INDEX.split(['"', '\'']).filter(|s| s.starts_with('/')) {
            let name = src.trim_start_matches("/docs/");
            assert!(lookup(name).is_some(), "{src} is not served");
        }
        assert!(!INDEX.contains("http"), "no external URL in the page");
        assert!(lookup("../Cargo.toml").is_none());
        assert!(BUNDLE_JS.len() > 100_000 && CSS.len() > 10_000);
    }
}

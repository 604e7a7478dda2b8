//! The web console, served at `/`.
//!
//! A handful of static files (HTML, CSS, vanilla JavaScript modules and an
//! SVG icon) embedded in the binary with `include_str!`: no CDN, no build
//! step, works offline. The pages need no authentication to load; every
//! datum comes from the `/v1` API, called by the browser with the token the
//! user signed in with (kept in `sessionStorage`, sent as `X-API-Key`).
//!
//! Every answer carries a strict Content-Security-Policy: scripts and styles
//! only from this origin, no inline code, no `eval`, no framing.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// The policy sent with every console file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// One embedded file.
struct Asset {
    /// Name under `/console/`.
    name: &'static str,
    /// Content type.
    mime: &'static str,
    /// Bytes.
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/console/`.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("batches.js", JS),
    asset!("batch.js", JS),
    asset!("new.js", JS),
    asset!("sims.js", JS),
    asset!("signin.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// The page shell.
const INDEX: &str = include_str!("assets/index.html");

/// Routes: `/` (the page) and `/console/{file}` (its assets).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(asset))
}

fn etag(body: &str) -> HeaderValue {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(body.as_bytes());
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(&d[..12])))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// A console file with its security headers; 304 when the client has it.
fn serve(mime: &'static str, body: &'static str, req: &HeaderMap) -> Response {
    let tag = etag(body);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, mime)], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, tag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// The console's single page (`/`).
async fn index(headers: HeaderMap) -> Response {
    serve("text/html; charset=utf-8", INDEX, &headers)
}

/// A console asset (`/console/{file}`); 404 problem+json for any other name.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a.mime, a.body, &headers),
        None => ApiError::not_found("console file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_asset_holds_inline_script_or_handler() {
        // The CSP forbids inline code; make sure none is shipped.
        let lower = INDEX.to_ascii_lowercase();
        for tag in lower.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or("");
            assert!(open.contains("src="), "index.html has an inline <script>");
        }
        for needle in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!INDEX.contains(needle), "index.html contains {needle}");
        }
        for a in ASSETS {
            assert!(!a.body.contains("eval("), "{} calls eval", a.name);
            assert!(!a.body.contains("innerHTML"), "{} sets innerHTML", a.name);
        }
    }

    #[test]
    fn every_module_imported_is_served() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for part in a.body.split("from './").skip(1) {
                let name = part.split('\'').next().unwrap_or("");
                assert!(
                    ASSETS.iter().any(|b| b.name == name),
                    "{} imports {name}, which is not served",
                    a.name
                );
            }
        }
    }
}

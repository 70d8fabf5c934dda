//! The control panel: its files (embedded at build time from `web/`, see `build.rs`) and the
//! page every panel address answers. The panel is a client of `/api/v1` like any other: it
//! has no endpoint of its own.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;
use crate::error::ApiError;

mod files {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

pub use files::VERSION;

/// The first segment of every panel address; each (and anything under it) answers the page,
/// so deep links and the back button work.
pub const SCREENS: &[&str] = &[
    "sign-in",
    "set-password",
    "streams",
    "jobs",
    "events",
    "entities",
    "alerts",
    "alert-rules",
    "alert-channels",
    "notifications",
    "event-log",
    "systems",
    "keys",
    "sources",
    "transformations",
    "lookup-tables",
    "destinations",
    "users",
    "tokens",
    "account",
    "audit-log",
    "retention",
];

/// Assets are cached for good: their address changes with every build that changes them.
const FOREVER: &str = "public, max-age=31536000, immutable";

/// The page, with this build's asset addresses.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    let html = file("index.html").unwrap_or_default();
    String::from_utf8_lossy(html).replace("{{version}}", VERSION)
});

fn file(path: &str) -> Option<&'static [u8]> {
    files::FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, bytes)| *bytes)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let Some(bytes) = file(&path).filter(|_| path != "index.html") else {
        return ApiError::NotFound("asset").into_response();
    };
    // An address of another build (a page loaded before an upgrade, or another node of a
    // different version) gets today's file, not to be kept.
    let caching = if version == VERSION {
        FOREVER
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(caching)),
        ],
        bytes,
    )
        .into_response()
}

/// The panel's routes, for the composition root to mount beside the API.
pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/", get(page))
        .route("/assets/{version}/{*path}", get(asset));
    for screen in SCREENS {
        router = router
            .route(&format!("/{screen}"), get(page))
            .route(&format!("/{screen}/{{*rest}}"), get(page));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_embedded() {
        assert!(PAGE.contains(&format!("/assets/{VERSION}/js/app.js")));
        assert!(!PAGE.contains("{{version}}"));
        for (name, _) in files::FILES {
            assert!(!name.contains(".."), "{name}");
        }
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
    }
}

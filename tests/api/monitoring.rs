//! Monitoring through the API: the error catalogue and the summary report.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_stores;
use crate::common::{fresh, Db};

async fn the_error_catalogue_says_what_each_code_means_and_what_to_do(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, body) = s.get("/error-codes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes = body.as_array().expect("an array of codes");
    let names: Vec<&str> = codes.iter().map(|c| c["code"].as_str().unwrap()).collect();
    for expected in [
        "TIMEOUT",
        "UNAUTHORIZED",
        "CONNECTION_ERROR",
        "NOT_FOUND",
        "DUPLICATE",
        "RATE_LIMITED",
        "INVALID_SCHEMA",
        "TEMPLATE_ERROR",
        "INVALID_API_RESPONSE",
        "UNKNOWN",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for c in codes {
        for field in ["title", "description", "action"] {
            assert!(
                c[field].as_str().is_some_and(|t| !t.is_empty()),
                "{field} of {c}"
            );
        }
        assert!(
            matches!(c["level"].as_str(), Some("success" | "warning" | "error")),
            "{c}"
        );
    }
    let timeout = codes.iter().find(|c| c["code"] == "TIMEOUT").unwrap();
    assert_eq!(timeout["level"], "warning");
    assert_eq!(timeout["title"], "Timed out");
    // The catalogue is for signed-in readers, like the rest of the API.
    let res = s
        .client
        .get(s.url("/api/v1/error-codes"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let _: Value = res.json().await.unwrap();
}

both_stores!(the_error_catalogue_says_what_each_code_means_and_what_to_do,);

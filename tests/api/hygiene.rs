//! HTTP hygiene: pagination, limits, problem documents, request ids, health, metrics, docs.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{fresh, send, Db, Env, Server};

async fn lists_page_with_cursors(db: Db) {
    let (_env, s) = fresh(db).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let k = s
            .create(
                "/keys",
                json!({"system": "http", "title": format!("k{i}"), "credentials": {}}),
            )
            .await;
        created.push(k["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/keys?limit=3".to_string(),
            Some(c) => format!("/keys?limit=3&cursor={c}"),
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every item once, in creation order");

    for bad in [
        "/keys?limit=0",
        "/keys?limit=501",
        "/keys?limit=abc",
        "/keys?cursor=nonsense",
    ] {
        let (status, p) = s.get(bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {p}");
    }
}

async fn oversized_bodies_are_413(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.http.body_limit_bytes = 4096;
    let s = Server::start(config).await;
    let big = "x".repeat(8192);
    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "http", "title": big, "credentials": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    let (_, page) = s.get("/keys").await;
    assert_eq!(page["items"], json!([]));
    s.stop().await;
}

async fn malformed_requests_get_problem_documents(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, p) = send(
        s.req(Method::POST, "/keys")
            .header("content-type", "application/json")
            .body("{\"system\":"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["title"], "Bad Request");
    assert!(p["type"].as_str().unwrap().starts_with("https://"));

    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "http", "title": "x", "credentials": {}, "colour": "red"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{p}"
    );

    let (status, _) = s.get("/keys/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get("/no-such-resource").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn health_metrics_and_request_ids(db: Db) {
    let (_env, s) = fresh(db).await;
    let res = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().contains_key("x-request-id"),
        "request ids are returned"
    );
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // A request id sent by the client is kept.
    let res = s
        .req(Method::GET, "/keys")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");

    let _ = s.get("/keys/01900000-0000-7000-8000-00000000ffff").await;
    let text = s.metrics().await;
    assert!(
        text.contains("# TYPE wharf_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"wharf_http_requests_total{method="GET",route="/api/v1/keys",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"wharf_http_requests_total{method="GET",route="/api/v1/keys/{id}",status="404"} 1"#
        ),
        "{text}"
    );
}

/// The served OpenAPI document.
async fn openapi(s: &Server) -> Value {
    s.client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn openapi_matches_the_routes(db: Db) {
    let (_env, s) = fresh(db).await;
    let doc = openapi(&s).await;
    assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    let paths = doc["paths"].as_object().unwrap();
    for resource in [
        "systems",
        "keys",
        "sources",
        "destinations",
        "transformations",
        "lookup-tables",
        "streams",
        "tokens",
    ] {
        assert!(
            paths.contains_key(&format!("/api/v1/{resource}")),
            "{resource} documented"
        );
    }
    // Every documented operation is routed: without a token it is 401, never 404 or 405;
    // signing in and setting a password with a link take no token, and refuse an empty body.
    let public = ["post /api/v1/session", "post /api/v1/password"];
    let id = "01900000-0000-7000-8000-00000000ffff";
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", id)
            .replace("{name}", "http")
            .replace("{key}", "k");
        for method in ops.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = s.client.request(m, s.url(&concrete)).send().await.unwrap();
            if public.contains(&format!("{method} {path}").as_str()) {
                assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{method} {path}");
                continue;
            }
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    let res = s.client.get(s.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("/docs/swagger-ui-bundle.js") && !page.contains("://"),
        "the docs page loads nothing from elsewhere"
    );
    let bundle = s
        .client
        .get(s.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}

/// The document can drive contract tools and client generators: every templated path declares
/// its parameters, error answers are documented as the problem+json they are served as (and
/// every operation names the errors its shared extractors give), page sizes carry their bounds,
/// and every operation has its own id.
async fn openapi_declares_path_parameters_problems_and_unique_ids(db: Db) {
    let (_env, s) = fresh(db).await;
    let doc = openapi(&s).await;
    let mut ids = std::collections::HashSet::new();
    let mut operations = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in ops.as_object().unwrap() {
            operations += 1;
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in &names {
                let p = params
                    .iter()
                    .find(|p| p["name"] == *name && p["in"] == "path")
                    .unwrap_or_else(|| panic!("{method} {path} does not declare `{name}`"));
                assert_eq!(p["required"], true, "{method} {path} {name}");
                if *name == "id" {
                    assert_eq!(p["schema"]["format"], "uuid", "{method} {path}");
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    if let Some(content) = response["content"].as_object() {
                        assert!(
                            content.contains_key("application/problem+json")
                                && !content.contains_key("application/json"),
                            "{method} {path} {status}: {content:?}"
                        );
                    }
                }
            }
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "403", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            if !names.is_empty() {
                assert!(responses.contains_key("404"), "{method} {path} lacks 404");
            }
            let takes_query = params.iter().any(|p| p["in"] == "query");
            if op.get("requestBody").is_some() || takes_query {
                assert!(responses.contains_key("422"), "{method} {path} lacks 422");
                assert!(responses.contains_key("400"), "{method} {path} lacks 400");
            }
            if let Some(limit) = params.iter().find(|p| p["name"] == "limit") {
                assert_eq!(limit["schema"]["minimum"], 1, "{method} {path}");
                let most = if path.ends_with("/event-log") {
                    1000
                } else {
                    500
                };
                assert_eq!(limit["schema"]["maximum"], most, "{method} {path}");
            }
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(
                ids.insert(id.clone()),
                "operationId `{id}` repeats ({method} {path})"
            );
        }
    }
    assert!(operations > 60, "{operations} operations");
}

/// The values of a string schema that takes one of a fixed list, following a `$ref`.
fn enum_of(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    let values = schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("not an enum: {schema}"));
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Fields that take a fixed list are enums in the document, with the values the server takes;
/// an upload's body is a JSON array of objects (or one object) or CSV text; the PATCHes that can
/// answer 409 say so, and uploads name 404.
async fn openapi_lists_fixed_values_upload_bodies_and_conflicts(db: Db) {
    let (_env, s) = fresh(db).await;
    let doc = openapi(&s).await;
    let schemas = &doc["components"]["schemas"];
    let field = |schema: &str, name: &str| enum_of(&doc, &schemas[schema]["properties"][name]);
    let query = |path: &str, name: &str| {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let p = params.iter().find(|p| p["name"] == name).unwrap();
        enum_of(&doc, &p["schema"])
    };
    let triggers = ["manual", "scheduled", "webhook"];
    for schema in ["SourceIn", "SourcePatch", "SourceOut"] {
        assert_eq!(field(schema, "trigger"), triggers, "{schema}");
    }
    assert_eq!(query("/api/v1/sources", "trigger"), triggers);
    let modes = ["realtime", "aggregate", "scheduled"];
    for schema in ["DestinationIn", "DestinationPatch", "DestinationOut"] {
        assert_eq!(field(schema, "mode"), modes, "{schema}");
    }
    assert_eq!(query("/api/v1/destinations", "mode"), modes);
    for schema in [
        "TransformationIn",
        "TransformationPatch",
        "TransformationOut",
    ] {
        assert_eq!(field(schema, "language"), ["javascript", "template"]);
        assert_eq!(field(schema, "format"), ["json", "csv", "xml", "text"]);
    }
    assert_eq!(
        field("TransformationOut", "visibility"),
        ["public", "private"]
    );
    assert_eq!(
        query("/api/v1/transformations", "visibility"),
        ["public", "private"]
    );
    let job_statuses = [
        "PENDING",
        "PROCESSING",
        "FINISHED",
        "FINISHED_WITH_ISSUES",
        "FAILED",
    ];
    assert_eq!(field("JobOut", "status"), job_statuses);
    assert_eq!(query("/api/v1/jobs", "status"), job_statuses);
    let job_triggers = ["manual", "scheduled", "webhook", "upload", "replicate"];
    assert_eq!(field("JobOut", "trigger"), job_triggers);
    assert_eq!(query("/api/v1/jobs", "trigger"), job_triggers);
    let event_statuses = ["NEW", "TRANSFORMED", "OK", "ERROR", "FAILED", "ABORTED"];
    assert_eq!(field("EventOut", "status"), event_statuses);
    assert_eq!(query("/api/v1/events", "status"), event_statuses);
    assert_eq!(query("/api/v1/entities", "status"), event_statuses);
    for path in ["/api/v1/jobs", "/api/v1/events", "/api/v1/entities"] {
        assert_eq!(query(path, "order"), ["desc", "asc"], "{path}");
    }

    // The server refuses what the document leaves out, with the field named.
    for bad in [
        "/jobs?status=DONE",
        "/events?status=DONE",
        "/jobs?order=newest",
        "/transformations?visibility=shared",
    ] {
        let (status, p) = s.get(bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {p}");
    }
    for (path, body) in [
        (
            "/sources",
            json!({"title": "S", "system": "http", "function": "http.webhook", "trigger": "hourly"}),
        ),
        (
            "/destinations",
            json!({"title": "D", "system": "http", "function": "http.send", "mode": "batch",
                   "params": {"url": "http://127.0.0.1:9/in"}}),
        ),
        (
            "/transformations",
            json!({"title": "T", "data_type": "x", "language": "lua", "format": "yaml", "code": ""}),
        ),
    ] {
        let (status, p) = s.post(path, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {p}");
    }

    let upload = &doc["paths"]["/api/v1/streams/{id}/uploads"]["post"];
    let content = &upload["requestBody"]["content"];
    assert_eq!(content["text/csv"]["schema"]["type"], "string");
    let json_body = &content["application/json"]["schema"];
    let shapes: Vec<&str> = json_body["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(shapes, ["array", "object"], "{json_body}");
    assert_eq!(json_body["oneOf"][0]["items"]["type"], "object");
    assert!(upload["responses"].get("404").is_some());
    for path in ["/api/v1/lookup-tables/{id}", "/api/v1/users/{id}"] {
        assert!(
            doc["paths"][path]["patch"]["responses"]
                .get("409")
                .is_some(),
            "PATCH {path} lacks 409"
        );
    }
}

both_stores!(
    lists_page_with_cursors,
    openapi_lists_fixed_values_upload_bodies_and_conflicts,
    openapi_declares_path_parameters_problems_and_unique_ids,
    oversized_bodies_are_413,
    malformed_requests_get_problem_documents,
    health_metrics_and_request_ids,
    openapi_matches_the_routes,
);

/// With Postgres gone, requests are 503 (never 2xx, never 500) and readiness fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_storage_down_is_503() {
    let (env, s) = fresh(Db::Postgres).await;
    let (status, _) = s.get("/keys").await;
    assert_eq!(status, StatusCode::OK);
    env.pg.as_ref().unwrap().drop_now().await;
    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "http", "title": "lost?", "credentials": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
}

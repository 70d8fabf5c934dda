//! What the generated OpenAPI document leaves out, added once over the whole document so that
//! no operation can forget it: the path parameters of every templated path, error answers
//! under the media type they are served as (`application/problem+json`), and an operation id
//! unique across the API (the handlers' names repeat from one resource to the next).

use std::collections::HashSet;

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::openapi::{OpenApi, RefOr, Required};

/// Completes `doc` in place.
pub fn complete(doc: &mut OpenApi) {
    let mut seen_ids = HashSet::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        let names = template_names(path);
        for (method, op) in [
            ("get", item.get.as_mut()),
            ("put", item.put.as_mut()),
            ("post", item.post.as_mut()),
            ("delete", item.delete.as_mut()),
            ("patch", item.patch.as_mut()),
        ] {
            let Some(op) = op else { continue };
            declare_path_parameters(op, &names);
            shared_errors(op, !names.is_empty());
            problems_as_problem_json(op);
            unique_operation_id(op, method, path, &mut seen_ids);
        }
    }
}

/// The `{name}` segments of a path template, in order.
fn template_names(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

fn declare_path_parameters(op: &mut Operation, names: &[String]) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    for name in names {
        let declared = params
            .iter()
            .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
        if !declared {
            params.push(path_parameter(name));
        }
    }
}

fn path_parameter(name: &str) -> Parameter {
    let (schema, description) = if name == "id" {
        (
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            "The object's id.",
        )
    } else {
        (
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
            "The name or key, as it is written.",
        )
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The errors an operation can answer because of what every handler shares, added where the
/// operation's own annotation does not already name them.
fn shared_errors(op: &mut Operation, has_path_id: bool) {
    let takes_input = op.request_body.is_some()
        || op
            .parameters
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| p.parameter_in == ParameterIn::Query));
    let mut errors = vec![
        ("401", "No valid API token was sent."),
        ("403", "The token's role does not allow this."),
        (
            "503",
            "Storage could not be reached, or the server is busy; retry after Retry-After.",
        ),
    ];
    if has_path_id {
        errors.push((
            "404",
            "Nothing with this id (or name) exists in your organisation.",
        ));
    }
    if takes_input {
        errors.push(("400", "The body or query could not be read."));
        // The query extractor answers 422 too: a page size out of range, an unknown cursor.
        errors.push((
            "422",
            "The request was read but a field is not valid; `errors` names each.",
        ));
    }
    for (status, description) in errors {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        let problem = ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        op.responses
            .responses
            .insert(status.to_string(), RefOr::T(problem));
    }
}

/// Error answers are problem details (RFC 9457); the derive documents them as plain JSON.
fn problems_as_problem_json(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        let RefOr::T(response) = response else {
            continue;
        };
        if !is_error {
            continue;
        }
        if let Some(content) = response.content.shift_remove("application/json") {
            response
                .content
                .insert("application/problem+json".to_string(), content);
        }
    }
}

/// `tag_handler` (e.g. `sources_list`), or with the method and path when that still repeats.
fn unique_operation_id(op: &mut Operation, method: &str, path: &str, seen: &mut HashSet<String>) {
    let handler = op
        .operation_id
        .clone()
        .unwrap_or_else(|| method.to_string());
    let tag = op
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .map(|t| t.replace('-', "_"))
        .unwrap_or_default();
    let mut id = if tag.is_empty() || handler.starts_with(&tag) {
        handler
    } else {
        format!("{tag}_{handler}")
    };
    if seen.contains(&id) {
        let tail: String = path
            .trim_start_matches("/api/v1/")
            .replace(['{', '}'], "")
            .replace(['/', '-'], "_");
        id = format!("{method}_{tail}");
    }
    seen.insert(id.clone());
    op.operation_id = Some(id);
}

/// Values of the fields that take one of a fixed list, as the document shows them. Each is
/// built from the list the server checks against, so the two cannot drift.
pub mod lists {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    use crate::connectors::Trigger;
    use crate::domain::{EventStatus, JobStatus};

    /// A destination's `mode`.
    pub const DESTINATION_MODES: [&str; 3] = ["realtime", "aggregate", "scheduled"];
    /// Where a transformation comes from.
    pub const VISIBILITIES: [&str; 2] = ["public", "private"];
    /// The `order` of a list (newest first by default).
    pub const SORT_ORDERS: [&str; 2] = ["desc", "asc"];
    /// What started a job: a source's trigger, or a user's upload or replica.
    pub const JOB_TRIGGERS: [&str; 5] = ["manual", "scheduled", "webhook", "upload", "replicate"];

    fn one_of(values: &[&str]) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .into()
    }

    /// How a source is started.
    pub fn source_trigger() -> RefOr<Schema> {
        Trigger::schema()
    }
    pub fn job_status() -> RefOr<Schema> {
        JobStatus::schema()
    }
    pub fn event_status() -> RefOr<Schema> {
        EventStatus::schema()
    }
    pub fn job_trigger() -> RefOr<Schema> {
        one_of(&JOB_TRIGGERS)
    }
    pub fn destination_mode() -> RefOr<Schema> {
        one_of(&DESTINATION_MODES)
    }
    pub fn visibility() -> RefOr<Schema> {
        one_of(&VISIBILITIES)
    }
    pub fn sort_order() -> RefOr<Schema> {
        one_of(&SORT_ORDERS)
    }
    pub fn language() -> RefOr<Schema> {
        one_of(&crate::api::transformations::LANGUAGES)
    }
    pub fn format() -> RefOr<Schema> {
        one_of(&crate::api::transformations::FORMATS)
    }

    /// The JSON body of an upload: an array of record objects, or one record object.
    pub struct UploadJson;

    impl PartialSchema for UploadJson {
        fn schema() -> RefOr<Schema> {
            let record = || ObjectBuilder::new().schema_type(Type::Object);
            OneOfBuilder::new()
                .item(ArrayBuilder::new().items(record()).min_items(Some(1)))
                .item(record())
                .description(Some(
                    "An array of records, or one record; each a JSON object.",
                ))
                .into()
        }
    }

    impl utoipa::ToSchema for UploadJson {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_sort_orders_are_the_accepted_ones() {
        for order in lists::SORT_ORDERS {
            assert!(crate::api::jobs::descending(Some(order)).is_ok(), "{order}");
        }
        assert!(crate::api::jobs::descending(Some("newest")).is_err());
    }

    #[test]
    fn template_names_are_read_in_order() {
        assert_eq!(
            template_names("/api/v1/lookup-tables/{id}/entries/{key}"),
            vec!["id", "key"]
        );
        assert!(template_names("/api/v1/keys").is_empty());
    }
}

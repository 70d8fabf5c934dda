//! What the file destinations (`ftp.upload`, later `sftp.upload`) share: their params, the
//! file's name from its template, the temporary name it is written under before the rename,
//! and the bytes of an output.

use serde_json::Value;

use super::naming::{Naming, NamingError};
use super::registry::Outgoing;

crate::params! {
    /// The params of a file upload.
    pub struct UploadParams {
        path: String = "/".into(), "The folder the file is written to, e.g. `/inbound/orders`; it must exist.";
        filename: String = DEFAULT_FILENAME.into(), "File name template: `{{ job.id }}`, `{{ event.id }}`, `{{ event.entity_id }}`, `{{ data_type }}`, `{{ extension }}` (csv, json, xml or txt from the transformation's format), `{{ now | format_date(\"%Y%m%d%H%M%S\") }}` (the time of the try: a retried file then gets a new name).";
    }
}

/// One file per event (or per job for an aggregate), the same name on every try, so a try
/// repeated after a lost answer replaces its file instead of adding a second one.
pub const DEFAULT_FILENAME: &str = "{{ data_type }}-{{ event.id or job.id }}.{{ extension }}";

/// The file's name and the hidden temporary name it is written under first, so a reader
/// polling the folder never picks up half a file (`.name.part` matches no `*.csv` pattern).
pub fn names(params: &UploadParams, out: &Outgoing<'_>) -> Result<(String, String), NamingError> {
    let extension = extension(out.content_type);
    let naming = Naming::of(out, &[("extension", Value::from(extension))]);
    let name = naming.file_name("filename", &params.filename)?;
    let temp = format!(".{name}.part");
    Ok((name, temp))
}

/// A folder and a name joined as a server path.
pub fn join(folder: &str, name: &str) -> String {
    let folder = folder.trim_end_matches('/');
    format!("{folder}/{name}")
}

/// The usual extension of an output's content type.
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "text/csv" => "csv",
        "application/xml" => "xml",
        "text/plain" => "txt",
        _ => "json",
    }
}

/// An output as the bytes of a file: text outputs as they are, JSON as JSON.
pub fn bytes(out: &Outgoing<'_>) -> Vec<u8> {
    match out.body {
        Value::String(text) if out.content_type != "application/json" => text.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::connectors::params::Params;

    #[test]
    fn a_file_is_named_by_its_template_and_written_hidden_first() {
        let event = Uuid::now_v7();
        let out = Outgoing {
            body: &json!("a,b\n"),
            content_type: "text/csv",
            timeout: Duration::from_secs(1),
            job_id: Uuid::nil(),
            stream_id: Uuid::nil(),
            event: Some((event, Some("1001"))),
            data_type: "order",
        };
        let p =
            UploadParams::parse(&json!({"filename": "o-{{ event.entity_id }}.{{ extension }}"}))
                .unwrap();
        assert_eq!(p.path, "/");
        assert_eq!(
            names(&p, &out).unwrap(),
            ("o-1001.csv".into(), ".o-1001.csv.part".into())
        );
        let p = UploadParams::parse(&json!({"path": "/in/"})).unwrap();
        let (name, _) = names(&p, &out).unwrap();
        assert_eq!(name, format!("order-{event}.csv"), "the same on every try");
        assert_eq!(join(&p.path, &name), format!("/in/{name}"));
        assert_eq!(bytes(&out), b"a,b\n");
    }
}

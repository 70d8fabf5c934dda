//! What the file systems (`ftp`, later `sftp`) share. Uploads: their params, the file's name
//! from its template, the temporary name it is written under before the rename, and the bytes
//! of an output. Reads: their params, which files a run takes (pattern, what earlier runs read),
//! and a downloaded file parsed into records (CSV, JSON, XML or text).

use std::io::{BufReader, Read, Seek};

use serde_json::{json, Map, Value};

use super::naming::{Naming, NamingError};
use super::params::Params;
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

/// One upload, ready to write: the destination's params, the file's name and temporary name,
/// and its bytes.
pub struct Prepared {
    pub params: UploadParams,
    pub name: String,
    pub temp: String,
    pub bytes: Vec<u8>,
}

/// Reads a file destination's params and names the file; a refusal is the try's result.
pub fn prepare(
    call: &super::registry::Call<'_>,
    out: &Outgoing<'_>,
) -> Result<Prepared, Box<super::registry::SendResult>> {
    use super::registry::SendResult;
    use crate::domain::error_code::ErrorCode;
    let refused = |code, message| Box::new(SendResult::refused(code, message));
    let params = UploadParams::parse(call.params)
        .map_err(|e| refused(ErrorCode::Unknown, format!("the destination has {e}")))?;
    let (name, temp) = names(&params, out).map_err(|e| refused(ErrorCode::TemplateError, e.0))?;
    Ok(Prepared {
        bytes: bytes(out),
        params,
        name,
        temp,
    })
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

crate::param_enum! {
    /// How a file is read into records.
    pub enum Format { Csv = "csv", Json = "json", Xml = "xml", Text = "text" }
}

crate::param_enum! {
    /// What happens to a file once its records are stored.
    pub enum AfterRead { Archive = "archive", Delete = "delete", Keep = "keep" }
}

crate::params! {
    /// The params of a file source.
    pub struct FilesParams {
        path: String, "The folder to read, e.g. `/outbound/stock`.";
        pattern: String = "*".into(), "Which files: a pattern where `*` is any run of characters and `?` one, e.g. `stock_*.csv` (case-sensitive).";
        format: Format = Format::Csv, "`csv` (a header row, then one record per row), `json` (a list, or the list at `records_path`; an object is one record), `xml` or `text` (the whole file is one record, a string).";
        records_path: String = String::new(), "For JSON: the dotted path of the record list in the file; the file itself when unset.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id (a CSV column's name).";
        csv_delimiter: String = ",".into(), "For CSV: the one-character delimiter, e.g. `;` or a tab.";
        after_read: AfterRead = AfterRead::Archive, "Once a file's records are stored: `archive` (move it to `archive_path`), `delete`, or `keep` (then a file already read — same name, size and modification time — is not read again).";
        archive_path: Option<String>, "Where `archive` moves files: `<path>/archive` when unset (made if missing).";
        max_files: u64 = DEFAULT_MAX_FILES as u64, "Most files one run reads, oldest first (1 to 10000); the rest wait for the next run.";
    }
}

/// Files one run reads when the source does not say.
pub const DEFAULT_MAX_FILES: usize = 100;
/// Most files one run may read.
pub const MAX_FILES: usize = 10_000;

impl FilesParams {
    /// Checks what the declaration cannot: the delimiter and the file count.
    pub fn checked(value: &Value) -> Result<FilesParams, String> {
        let params = FilesParams::parse(value)?;
        params.delimiter()?;
        params.file_limit()?;
        Ok(params)
    }

    pub fn delimiter(&self) -> Result<u8, String> {
        match self.csv_delimiter.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => Ok(*b),
            _ => Err(format!(
                "invalid params: `params.csv_delimiter` must be one character (not a quote or a line end), not {:?}",
                self.csv_delimiter
            )),
        }
    }

    pub fn file_limit(&self) -> Result<usize, String> {
        match usize::try_from(self.max_files) {
            Ok(n) if (1..=MAX_FILES).contains(&n) => Ok(n),
            _ => Err(format!(
                "invalid params: `params.max_files` must be from 1 to {MAX_FILES}, not {}",
                self.max_files
            )),
        }
    }

    /// Where `archive` moves files.
    pub fn archive_folder(&self) -> String {
        self.archive_path
            .clone()
            .unwrap_or_else(|| join(&self.path, "archive"))
    }
}

/// A file in a listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// Seconds since the Unix epoch (UTC), as the server tells it.
    pub modified: i64,
}

impl Listed {
    /// How the source's state remembers this file.
    fn seen(&self) -> Value {
        json!({"size": self.size, "modified": self.modified})
    }
}

/// The files a run takes from a listing: those matching the pattern and not read before
/// (the state: `{"read": {name: {size, modified}}}`), oldest first, at most `limit`.
pub fn to_read(
    listed: &[Listed],
    pattern: &str,
    state: Option<&Value>,
    limit: usize,
) -> Vec<Listed> {
    let mut take: Vec<Listed> = listed
        .iter()
        .filter(|f| glob_match(pattern, &f.name))
        .filter(|f| !already_read(state, f))
        .cloned()
        .collect();
    take.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    take.truncate(limit);
    take
}

/// Whether the state says this very file (same name, size and modification time) was read.
pub fn already_read(state: Option<&Value>, file: &Listed) -> bool {
    state
        .and_then(|s| s.get("read"))
        .and_then(|read| read.get(&file.name))
        .is_some_and(|seen| *seen == file.seen())
}

/// The state after a run: the files read before that are still in the folder (one gone,
/// archived or deleted, is forgotten, so the state stays as small as the folder), and those
/// read now.
pub fn next_state(listed: &[Listed], state: Option<&Value>, read_now: &[Listed]) -> Value {
    let mut read = Map::new();
    for file in listed {
        if already_read(state, file) {
            read.insert(file.name.clone(), file.seen());
        }
    }
    for file in read_now {
        read.insert(file.name.clone(), file.seen());
    }
    json!({"read": read})
}

/// Files the state says were read that are still in the folder: a run that stored their
/// records ended before it archived or deleted them.
pub fn read_but_left(listed: &[Listed], state: Option<&Value>) -> Vec<Listed> {
    listed
        .iter()
        .filter(|f| already_read(state, f))
        .cloned()
        .collect()
}

/// `*` matches any run of characters (none too), `?` any one; everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What one run took from a folder: the listing, the files read, their records, and a line
/// per file for the job.
#[derive(Default)]
pub struct FolderRead {
    pub listed: Vec<Listed>,
    pub taken: Vec<Listed>,
    pub records: Vec<Value>,
    /// Each record's file, as a path on the server.
    pub origins: Vec<String>,
    pub summary: Vec<Value>,
}

impl FolderRead {
    /// Adds the records of a file in `folder`, and its line for the job.
    pub fn add(&mut self, folder: &str, file: &Listed, records: Vec<Value>) {
        self.summary
            .push(json!({"name": file.name, "size": file.size,
            "modified": file.modified, "records": records.len()}));
        let path = join(folder, &file.name);
        self.origins
            .extend(std::iter::repeat_n(path, records.len()));
        self.records.extend(records);
    }
}

/// What to archive or delete once a run's records are stored.
#[derive(Debug, Clone)]
pub struct Leftovers {
    pub folder: String,
    pub archive: String,
    pub delete: bool,
    /// The files this run read, and those an earlier run stored but did not finish with.
    pub names: Vec<String>,
}

/// A run's reading: its records, the state for the next run, the job's summary and — unless
/// files are kept — what to archive or delete, as the protocol's after-commit step.
pub fn reading(
    params: &FilesParams,
    state: Option<&Value>,
    read: FolderRead,
    finish: impl FnOnce(Leftovers) -> Box<dyn super::registry::Settle>,
) -> super::registry::Reading {
    // Files an earlier run stored but did not archive or delete are done now, not read again.
    let mut names: Vec<String> = read_but_left(&read.listed, state)
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.extend(read.taken.iter().map(|f| f.name.clone()));
    let settle = match params.after_read {
        AfterRead::Keep => None,
        _ if names.is_empty() => None,
        mode => Some(finish(Leftovers {
            folder: params.path.clone(),
            archive: params.archive_folder(),
            delete: mode == AfterRead::Delete,
            names,
        })),
    };
    super::registry::Reading {
        state: Some(next_state(&read.listed, state, &read.taken)),
        summary: Some(json!({"folder": params.path, "files": read.summary})),
        records: read.records,
        origins: read.origins,
        settle,
    }
}

/// The bounds of a downloaded file of `total` bytes, with `room` records left in the run: the
/// ingest's column bounds, and for its records `ingest.max_decoded_ratio` times its size (at
/// least four times it, so a large file is not refused for the ingest's per-body cap).
pub fn limits(total: u64, decode: &crate::ingest::decode::DecodeLimits, room: usize) -> FileLimits {
    FileLimits {
        records: room,
        bytes: total
            .saturating_mul(decode.max_ratio)
            .min(decode.max_bytes.max(total.saturating_mul(4)))
            .max(64 * 1024),
        max_columns: decode.max_columns,
        max_header_bytes: decode.max_header_bytes,
    }
}

/// Parses a downloaded file off the async threads. The error is a message for the job, with
/// its code.
pub async fn parse_downloaded(
    local: std::fs::File,
    name: String,
    params: &FilesParams,
    limits: FileLimits,
) -> Result<Vec<Value>, String> {
    let params = params.clone();
    let code = crate::domain::error_code::ErrorCode::InvalidSchema.as_str();
    tokio::task::spawn_blocking(move || parse(local, &name, &params, limits))
        .await
        .map_err(|e| format!("{code}: reading a file stopped: {e}"))?
        .map_err(|m| format!("{code}: {m}"))
}

/// The message of a file larger than `outbound.max_file_bytes`.
pub fn too_large(name: &str, cap: u64) -> String {
    format!(
        "{}: {name} is larger than outbound.max_file_bytes ({cap}); it was not read",
        crate::domain::error_code::ErrorCode::InvalidApiResponse.as_str()
    )
}

/// Bounds on what one downloaded file may become.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// Most records still allowed in this run.
    pub records: usize,
    /// Most bytes the file's records may take (their JSON text and what each record costs).
    pub bytes: u64,
    pub max_columns: usize,
    pub max_header_bytes: usize,
}

/// The records of a downloaded file. The error is a message for the job.
pub fn parse(
    file: std::fs::File,
    name: &str,
    params: &FilesParams,
    limits: FileLimits,
) -> Result<Vec<Value>, String> {
    let mut file = file;
    file.rewind().map_err(|e| format!("{name}: {e}"))?;
    let reader = BufReader::new(file);
    let records = match params.format {
        Format::Csv => csv_file(reader, name, params.delimiter()?, limits)?,
        Format::Json => {
            let mut doc: Value =
                serde_json::from_reader(reader).map_err(|e| format!("{name} is not JSON: {e}"))?;
            match super::take_at_path(&mut doc, &params.records_path) {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None if !params.records_path.is_empty() => {
                    return Err(format!("{name} has no `{}`", params.records_path))
                }
                Some(other) => vec![other],
                None => Vec::new(),
            }
        }
        Format::Xml | Format::Text => {
            let mut text = String::new();
            BufReader::new(reader)
                .read_to_string(&mut text)
                .map_err(|e| format!("{name} is not UTF-8 text: {e}"))?;
            vec![Value::String(
                text.trim_start_matches('\u{feff}').to_string(),
            )]
        }
    };
    if records.len() > limits.records {
        return Err(format!(
            "{name} holds {} records, more than the {} this run may still read (outbound.max_records_per_run); split the file",
            records.len(),
            limits.records
        ));
    }
    Ok(records)
}

/// One record per row after the header row, keyed by column name; quotes, line ends inside
/// quotes and a UTF-8 byte order mark are read as CSV means them.
fn csv_file(
    reader: impl Read,
    name: &str,
    delimiter: u8,
    limits: FileLimits,
) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(reader);
    let names = reader
        .headers()
        .map_err(|e| format!("{name}: the header row cannot be read: {e}"))?
        .clone();
    if names.len() > limits.max_columns {
        return Err(format!(
            "{name} has {} columns; at most {} are read (ingest.csv_max_columns)",
            names.len(),
            limits.max_columns
        ));
    }
    if names.iter().any(|n| n.len() > limits.max_header_bytes) {
        return Err(format!(
            "{name} has a column name longer than {} bytes (ingest.csv_max_header_bytes)",
            limits.max_header_bytes
        ));
    }
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut out = Vec::new();
    let mut size = 0u64;
    let mut row = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(format!(
                    "{name}, line {line}: {e}; every row needs as many columns as the header"
                ));
            }
        }
        if out.len() >= limits.records {
            return Err(format!(
                "{name} holds more than the {} records this run may still read (outbound.max_records_per_run); split the file",
                limits.records
            ));
        }
        let (record, bytes) =
            crate::ingest::decode::csv_row(names.iter().map(String::as_str), &row);
        size += bytes;
        if size > limits.bytes {
            return Err(format!(
                "{name}'s records would take more than {} bytes stored (each row repeats every column name); split the file or drop columns",
                limits.bytes
            ));
        }
        out.push(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use uuid::Uuid;

    use super::*;

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

    fn parsed(text: &str, params: Value) -> Result<Vec<Value>, String> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let params = FilesParams::checked(&params).unwrap();
        let limits = FileLimits {
            records: 10,
            bytes: 1 << 20,
            max_columns: 5,
            max_header_bytes: 20,
        };
        parse(file, "f.csv", &params, limits)
    }

    #[test]
    fn csv_files_are_read_as_csv_means_them() {
        let text = "\u{feff}sku;name;qty\r\nA-1;\"Widget; large\";3\r\nB-2;\"two\nlines, \"\"quoted\"\"\";4\r\n";
        let records = parsed(text, json!({"path": "/", "csv_delimiter": ";"})).unwrap();
        assert_eq!(
            records,
            [
                json!({"sku": "A-1", "name": "Widget; large", "qty": "3"}),
                json!({"sku": "B-2", "name": "two\nlines, \"quoted\"", "qty": "4"})
            ]
        );
        let e = parsed("a,b\n1,2,3\n", json!({"path": "/"})).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let many = format!("a\n{}", "1\n".repeat(11));
        assert!(parsed(&many, json!({"path": "/"}))
            .unwrap_err()
            .contains("records"));
        let wide = "a,b,c,d,e,f\n1,2,3,4,5,6\n";
        assert!(parsed(wide, json!({"path": "/"}))
            .unwrap_err()
            .contains("columns"));
    }

    #[test]
    fn json_xml_and_text_files() {
        let doc = r#"{"data": {"items": [{"id": 1}, {"id": 2}]}}"#;
        let p = json!({"path": "/", "format": "json", "records_path": "data.items"});
        assert_eq!(
            parsed(doc, p).unwrap(),
            [json!({"id": 1}), json!({"id": 2})]
        );
        let p = json!({"path": "/", "format": "json"});
        assert_eq!(parsed(r#"{"id": 7}"#, p).unwrap(), [json!({"id": 7})]);
        let p = json!({"path": "/", "format": "xml"});
        assert_eq!(parsed("<a>1</a>", p).unwrap(), [json!("<a>1</a>")]);
        let p = json!({"path": "/", "format": "json", "records_path": "nope"});
        assert!(parsed(doc, p).unwrap_err().contains("no `nope`"));
        assert!(FilesParams::checked(&json!({"path": "/", "csv_delimiter": ";;"})).is_err());
        assert!(FilesParams::checked(&json!({"path": "/", "max_files": 0})).is_err());
    }

    #[test]
    fn a_run_takes_matching_files_not_read_before_oldest_first() {
        let f = |name: &str, size, modified| Listed {
            name: name.into(),
            size,
            modified,
        };
        let listed = vec![
            f("stock_2.csv", 10, 200),
            f("stock_1.csv", 10, 100),
            f("notes.txt", 5, 50),
            f("stock_3.csv", 10, 300),
        ];
        let names = |files: Vec<Listed>| files.into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(
            names(to_read(&listed, "stock_*.csv", None, 2)),
            ["stock_1.csv", "stock_2.csv"]
        );
        let state = next_state(&listed, None, &[f("stock_1.csv", 10, 100)]);
        assert_eq!(
            names(to_read(&listed, "stock_?.csv", Some(&state), 10)),
            ["stock_2.csv", "stock_3.csv"]
        );
        // A file changed since it was read is read again; one gone is forgotten.
        let changed = vec![f("stock_1.csv", 12, 400)];
        assert_eq!(
            names(to_read(&changed, "*", Some(&state), 10)),
            ["stock_1.csv"]
        );
        assert_eq!(next_state(&changed, Some(&state), &[]), json!({"read": {}}));
        assert_eq!(names(read_but_left(&listed, Some(&state))), ["stock_1.csv"]);
        assert!(glob_match("*", "") && glob_match("a*b?c", "aXXbYc") && !glob_match("a*c", "ab"));
        assert!(glob_match("*.CSV", "x.CSV") && !glob_match("*.csv", "x.CSV"));
    }
}

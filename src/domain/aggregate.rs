//! Combining the outputs of a job's events into one delivery for an aggregate destination.

use serde_json::Value;

/// One body from many outputs: a JSON array for JSON outputs; for CSV, the rows of every
/// output under the first output's header (each output's own header line is dropped); other
/// text outputs joined by newlines. Returns the body and its content type.
pub fn combine(outputs: &[Value], format: &str) -> (Value, &'static str) {
    match format {
        "csv" => {
            let mut text = String::new();
            for (i, out) in outputs.iter().enumerate() {
                let s = as_text(out);
                let mut lines = s.lines();
                let header = lines.next();
                if i == 0 {
                    if let Some(h) = header {
                        text.push_str(h);
                        text.push('\n');
                    }
                }
                for line in lines.filter(|l| !l.is_empty()) {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            (Value::String(text), "text/csv")
        }
        "xml" | "text" => {
            let parts: Vec<String> = outputs.iter().map(as_text).collect();
            let ct = if format == "xml" {
                "application/xml"
            } else {
                "text/plain"
            };
            (Value::String(parts.join("\n")), ct)
        }
        _ => (Value::Array(outputs.to_vec()), "application/json"),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_keeps_one_header() {
        let outs = [json!("id,sku\n1,A\n1,B\n"), json!("id,sku\n2,C\n")];
        let (body, ct) = combine(&outs, "csv");
        assert_eq!(ct, "text/csv");
        assert_eq!(body, json!("id,sku\n1,A\n1,B\n2,C\n"));
    }

    #[test]
    fn json_becomes_an_array() {
        let (body, ct) = combine(&[json!({"a": 1}), json!({"a": 2})], "json");
        assert_eq!(ct, "application/json");
        assert_eq!(body, json!([{"a": 1}, {"a": 2}]));
    }
}

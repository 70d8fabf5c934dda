//! The public transformation library, shipped in the binary and written to the store at
//! start-up with fixed ids, so streams can refer to them and copies can say where they came from.

use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::Transformation;

/// Id of the passthrough transformation.
pub const PASSTHROUGH_ID: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

/// Every public transformation.
pub fn public_transformations() -> Vec<Transformation> {
    let created = Timestamp::from_datetime(
        "2026-01-01T00:00:00Z"
            .parse()
            .expect("a valid constant timestamp"),
    );
    vec![Transformation {
        id: PASSTHROUGH_ID,
        org_id: None,
        visibility: "public".into(),
        title: "Passthrough".into(),
        description: "Sends each record on unchanged.".into(),
        data_type: "any".into(),
        language: "javascript".into(),
        format: "json".into(),
        code: "function transform(record, ctx) {\n  return record;\n}\n".into(),
        copied_from: None,
        created_at: created,
        updated_at: created,
    }]
}

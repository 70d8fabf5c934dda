//! A batch's rows as one array a column, for Postgres: `INSERT … SELECT * FROM unnest($1::uuid[],
//! $2::text[], …)` instead of `VALUES ($1, $2, …), ($3, $4, …), …`. The statement's text is the
//! same whatever the number of rows, so each connection parses and plans it once and keeps it
//! prepared; a `VALUES` list is a new statement for each row count, parsed, analysed and planned
//! again on every commit (in the bench that was about a sixth of Postgres's CPU). SQLite keeps
//! `VALUES` (it has no arrays; its statements are compiled in process, cheaply).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo};
use sqlx::types::Json;
use sqlx::{Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

use super::{JsonText, Val};

/// One column of a batch's rows, bound as a Postgres array.
#[derive(Debug, Clone)]
pub enum Column {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Bool(Vec<bool>),
    Int(Vec<Option<i64>>),
    Json(Vec<Option<Json<Value>>>),
    JsonText(Vec<Option<JsonText>>),
    Ts(Vec<Option<DateTime<Utc>>>),
    Bytes(Vec<Vec<u8>>),
}

impl Column {
    /// An empty column of `v`'s type.
    fn like(v: &Val) -> Option<Column> {
        Some(match v {
            Val::Uuid(_) => Column::Uuid(Vec::new()),
            Val::Text(_) => Column::Text(Vec::new()),
            Val::Bool(_) => Column::Bool(Vec::new()),
            Val::Int(_) => Column::Int(Vec::new()),
            Val::Json(_) => Column::Json(Vec::new()),
            Val::JsonText(_) => Column::JsonText(Vec::new()),
            Val::Ts(_) => Column::Ts(Vec::new()),
            Val::Bytes(_) => Column::Bytes(Vec::new()),
            Val::Column(_) => return None,
        })
    }

    /// Adds `v`; gives it back if it is not of the column's type.
    fn push(&mut self, v: Val) -> Result<(), Val> {
        match (self, v) {
            (Column::Uuid(c), Val::Uuid(x)) => c.push(x),
            (Column::Text(c), Val::Text(x)) => c.push(x),
            (Column::Bool(c), Val::Bool(x)) => c.push(x),
            (Column::Int(c), Val::Int(x)) => c.push(x),
            (Column::Json(c), Val::Json(x)) => c.push(x.map(Json)),
            (Column::JsonText(c), Val::JsonText(x)) => c.push(x),
            (Column::Ts(c), Val::Ts(x)) => c.push(x.map(|t| t.0)),
            (Column::Bytes(c), Val::Bytes(x)) => c.push(x),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// The array type, as written in the statement's cast.
    fn sql_type(&self) -> &'static str {
        match self {
            Column::Uuid(_) => "uuid[]",
            Column::Text(_) => "text[]",
            Column::Bool(_) => "bool[]",
            Column::Int(_) => "int8[]",
            Column::Json(_) => "jsonb[]",
            Column::JsonText(_) => "json[]",
            Column::Ts(_) => "timestamptz[]",
            Column::Bytes(_) => "bytea[]",
        }
    }
}

/// Most bytes of text and JSON a batch sends as arrays. Postgres reads a set-returning
/// function's rows into memory up to `work_mem` (4 MB by default) and writes the rest to a
/// temporary file: a batch of large payloads goes as rows of `VALUES` instead.
const ARRAY_BYTES: usize = 1 << 20;

/// `rows` (each a value per column) as one array a column; the rows back, unchanged, when a
/// row's values differ in type from the first row's, there is no row, or they hold more than
/// [`ARRAY_BYTES`].
pub(in crate::store) fn columns(rows: Vec<Vec<Val>>) -> Result<Vec<Column>, Vec<Vec<Val>>> {
    let kinds: Vec<_> = match rows.first() {
        Some(first) => first.iter().map(std::mem::discriminant).collect(),
        None => return Err(rows),
    };
    let bytes: usize = rows.iter().flatten().map(Val::text_len).sum();
    if bytes > ARRAY_BYTES {
        return Err(rows);
    }
    let agree = |row: &Vec<Val>| {
        row.len() == kinds.len()
            && row
                .iter()
                .zip(&kinds)
                .all(|(v, k)| std::mem::discriminant(v) == *k)
    };
    let Some(mut columns) = rows[0]
        .iter()
        .map(Column::like)
        .collect::<Option<Vec<Column>>>()
        .filter(|_| rows.iter().all(agree))
    else {
        return Err(rows);
    };
    for row in rows {
        for (column, v) in columns.iter_mut().zip(row) {
            // Types checked above: nothing is refused here.
            let _ = column.push(v);
        }
    }
    Ok(columns)
}

/// `unnest($k::type[], …)` over `columns`, numbering the parameters from `first`.
pub(in crate::store) fn unnest(columns: &[Column], first: usize) -> String {
    let args: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", first + i, c.sql_type()))
        .collect();
    format!("unnest({})", args.join(", "))
}

impl Val {
    /// The length of the text or JSON this value holds (0 for the others).
    fn text_len(&self) -> usize {
        match self {
            Val::Text(Some(t)) => t.len(),
            Val::JsonText(Some(t)) => t.as_str().len(),
            Val::Bytes(b) => b.len(),
            // Rare in batches (settings, small details): counted by a rough size.
            Val::Json(Some(_)) => 256,
            _ => 0,
        }
    }
}

impl PgHasArrayType for JsonText {
    fn array_type_info() -> PgTypeInfo {
        super::json_text::JSON_ARRAY
    }
}

impl Type<Postgres> for Column {
    /// Each column says its own array type (see `produces`); this one is not used.
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }

    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl Encode<'_, Postgres> for Column {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            Column::Uuid(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Text(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Bool(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Int(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Json(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::JsonText(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Ts(c) => Encode::<Postgres>::encode_by_ref(c, buf),
            Column::Bytes(c) => Encode::<Postgres>::encode_by_ref(c, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            Column::Uuid(_) => <Vec<Option<Uuid>> as Type<Postgres>>::type_info(),
            Column::Text(_) => <Vec<Option<String>> as Type<Postgres>>::type_info(),
            Column::Bool(_) => <Vec<bool> as Type<Postgres>>::type_info(),
            Column::Int(_) => <Vec<Option<i64>> as Type<Postgres>>::type_info(),
            Column::Json(_) => <Vec<Value> as Type<Postgres>>::type_info(),
            Column::JsonText(_) => super::json_text::JSON_ARRAY,
            Column::Ts(_) => <Vec<Option<DateTime<Utc>>> as Type<Postgres>>::type_info(),
            Column::Bytes(_) => <Vec<Vec<u8>> as Type<Postgres>>::type_info(),
        })
    }
}

impl Type<Sqlite> for Column {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

/// SQLite has no arrays: the store never builds columns for it (see `batch::rows_insert`), and
/// a statement that bound one would fail, not store something else.
impl<'q> Encode<'q, Sqlite> for Column {
    fn encode_by_ref(&self, _: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Err("array parameters are for Postgres".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    /// Every type the store binds on Postgres is known by its id: one given by name is looked
    /// up by each new connection, a round trip before its first statement.
    #[test]
    fn bound_types_need_no_lookup() {
        let columns = [
            Column::Uuid(vec![]),
            Column::Text(vec![]),
            Column::Bool(vec![]),
            Column::Int(vec![]),
            Column::Json(vec![]),
            Column::JsonText(vec![]),
            Column::Ts(vec![]),
            Column::Bytes(vec![]),
        ];
        for c in &columns {
            let ty = Encode::<Postgres>::produces(c).unwrap();
            assert!(
                ty.oid().is_some(),
                "{c:?} is bound as {ty:?}, looked up by name"
            );
        }
        assert!(<JsonText as Type<Postgres>>::type_info().oid().is_some());
        assert!(<JsonText as PgHasArrayType>::array_type_info()
            .oid()
            .is_some());
    }

    #[test]
    fn rows_become_one_array_a_column_when_their_types_agree() {
        let now = Timestamp::now();
        let rows = vec![
            vec![Val::from(Uuid::nil()), Val::Text(None), Val::Ts(Some(now))],
            vec![Val::from(Uuid::max()), Val::from("b"), Val::Ts(None)],
        ];
        let cols = columns(rows).unwrap();
        assert!(
            matches!(&cols[0], Column::Uuid(c) if c == &[Some(Uuid::nil()), Some(Uuid::max())])
        );
        assert!(matches!(&cols[1], Column::Text(c) if c == &[None, Some("b".to_string())]));
        assert!(matches!(&cols[2], Column::Ts(c) if c == &[Some(now.0), None]));
        assert_eq!(
            unnest(&cols, 3),
            "unnest($3::uuid[], $4::text[], $5::timestamptz[])"
        );
        let mixed = vec![vec![Val::from("a")], vec![Val::Int(Some(1))]];
        assert_eq!(columns(mixed).unwrap_err().len(), 2, "given back whole");
        assert!(columns(Vec::new()).is_err());
        assert!(columns(vec![vec![Val::from("a")], vec![]]).is_err());
        let big = "x".repeat(ARRAY_BYTES / 2 + 1);
        let large = vec![vec![Val::from(big.as_str())], vec![Val::from(big.as_str())]];
        assert!(columns(large).is_err(), "large batches go as VALUES");
    }
}

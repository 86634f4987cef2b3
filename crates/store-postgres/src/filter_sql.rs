//! A filter as SQL on the items' `record` (jsonb): it means exactly what
//! [`aimp_store::Filter::matches`] means, through the `aimp_walk` / `aimp_elements` /
//! `aimp_time` functions the schema defines (every value at a dotted path, looking into every
//! element of an array met on the way). The contract suite's oracle test holds the two to
//! the same answers.

use aimp_store::Filter;
use aimp_store::filter::{Bound, Condition, Key, Match, Range, Scalar, SystemField};
use postgres::types::ToSql;
use serde_json::Value;

/// A SQL condition and the parameters it names, numbered after those the query has already.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Box<dyn ToSql + Sync>>,
}

impl Sql {
    /// `filter` as a condition whose parameters are numbered from `first`.
    pub fn of(filter: &Filter, first: usize) -> Sql {
        let mut sql = Sql::default();
        let mut next = first;
        sql.text = sql.filter(filter, &mut next);
        sql
    }

    fn param(&mut self, value: Box<dyn ToSql + Sync>, next: &mut usize) -> String {
        self.params.push(value);
        let name = format!("${next}");
        *next += 1;
        name
    }

    fn filter(&mut self, f: &Filter, next: &mut usize) -> String {
        let mut parts: Vec<String> = f.must.iter().map(|c| self.condition(c, next)).collect();
        if !f.should.is_empty() {
            let any: Vec<String> = f.should.iter().map(|c| self.condition(c, next)).collect();
            parts.push(format!("({})", any.join(" OR ")));
        }
        parts.extend(
            f.must_not
                .iter()
                .map(|c| format!("NOT {}", self.condition(c, next))),
        );
        if parts.is_empty() {
            "TRUE".into()
        } else {
            format!("({})", parts.join(" AND "))
        }
    }

    fn condition(&mut self, c: &Condition, next: &mut usize) -> String {
        match c {
            Condition::Match { key, test } => {
                let elements = self.source("aimp_elements", key, next);
                let test = match test {
                    Match::Value(want) => {
                        let want = self.param(Box::new(scalar(want)), next);
                        format!("e = {want}::jsonb")
                    }
                    Match::Any(wants) => {
                        let wants = self.param(Box::new(scalars(wants)), next);
                        format!("e = ANY({wants}::jsonb[])")
                    }
                    Match::Except(refused) => {
                        let refused = self.param(Box::new(scalars(refused)), next);
                        format!("e <> 'null'::jsonb AND NOT (e = ANY({refused}::jsonb[]))")
                    }
                };
                format!("EXISTS (SELECT 1 FROM {elements} AS e WHERE {test})")
            }
            Condition::Range { key, range } => {
                let elements = self.source("aimp_elements", key, next);
                let test = self.range(range, next);
                format!("EXISTS (SELECT 1 FROM {elements} AS e WHERE {test})")
            }
            Condition::IsEmpty(key) => {
                let values = self.source("aimp_walk", key, next);
                format!(
                    "NOT EXISTS (SELECT 1 FROM {values} AS v \
                     WHERE v <> 'null'::jsonb AND v <> '[]'::jsonb)"
                )
            }
            Condition::IsNull(key) => {
                let values = self.source("aimp_walk", key, next);
                format!("EXISTS (SELECT 1 FROM {values} AS v WHERE v = 'null'::jsonb)")
            }
            Condition::HasId(ids) => {
                let ids = self.param(Box::new(ids.to_vec()), next);
                format!("id = ANY({ids}::text[])")
            }
            Condition::Nested(filter) => self.filter(filter, next),
        }
    }

    /// `function(document, path)`: the values (or elements) a key reads.
    ///
    /// The elements of a caller's top-level field (the usual filter) are read inline rather
    /// than through the recursive `aimp_elements`: the field's value, or each element when it
    /// is an array, and nothing when it is absent; what `aimp_elements` answers for a path of
    /// one name on an object, at a fraction of its cost per row.
    fn source(&mut self, function: &str, key: &Key, next: &mut usize) -> String {
        if let (Key::User(parts), "aimp_elements") = (key, function)
            && let [name] = parts.as_slice()
        {
            let name = self.param(Box::new(name.clone()), next);
            let value = format!("(record -> 'user' -> {name}::text)");
            return format!(
                "jsonb_array_elements(CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} \
                 WHEN (record -> 'user') ? {name}::text THEN jsonb_build_array({value}) END)"
            );
        }
        let (document, path) = match key {
            Key::User(parts) => ("record -> 'user'".to_string(), parts.clone()),
            Key::System(field) => (system(*field), Vec::new()),
        };
        let path = self.param(Box::new(path), next);
        format!("{function}({document}, {path}::text[])")
    }

    fn range(&mut self, range: &Range, next: &mut usize) -> String {
        let mut tests = Vec::new();
        for (bound, op) in [
            (&range.gt, ">"),
            (&range.gte, ">="),
            (&range.lt, "<"),
            (&range.lte, "<="),
        ] {
            match bound {
                None => {}
                Some(Bound::Num(x)) => {
                    let x = self.param(Box::new(*x), next);
                    tests.push(format!(
                        "jsonb_typeof(e) = 'number' AND (e)::float8 {op} {x}::float8"
                    ));
                }
                Some(Bound::Time(t)) => {
                    let t = self.param(Box::new(*t), next);
                    tests.push(format!("aimp_time(e) {op} {t}::timestamptz"));
                }
            }
        }
        if tests.is_empty() {
            "FALSE".into() // a range with no bound holds for nothing, as `Range::contains`
        } else {
            tests.join(" AND ")
        }
    }
}

/// The jsonb of a system field, as [`SystemField::value`] gives it.
fn system(field: SystemField) -> String {
    let recorded = |name: &str| format!("(record -> 'metadata' -> '{name}')");
    match field {
        SystemField::Filename => "(record -> 'filename')".into(),
        SystemField::MediaRef => "(record -> 'media_ref')".into(),
        // RFC 3339 as `to_rfc3339` writes it: `+00:00` where the record says `Z`.
        SystemField::CreatedAt => {
            "to_jsonb(regexp_replace(record ->> 'created_at', 'Z$', '+00:00'))".into()
        }
        SystemField::UpdatedAt => {
            "to_jsonb(regexp_replace(record ->> 'updated_at', 'Z$', '+00:00'))".into()
        }
        SystemField::Sha256 => recorded("sha256"),
        SystemField::Width => recorded("width"),
        SystemField::Height => recorded("height"),
        SystemField::ContentType => recorded("content_type"),
        SystemField::TakenAt => recorded("taken_at"),
        SystemField::CameraMake => recorded("camera_make"),
        SystemField::CameraModel => recorded("camera_model"),
        SystemField::Orientation => recorded("orientation"),
        SystemField::GpsLatitude => recorded("gps_latitude"),
        SystemField::GpsLongitude => recorded("gps_longitude"),
    }
}

fn scalar(s: &Scalar) -> Value {
    match s {
        Scalar::Str(s) => Value::String(s.clone()),
        Scalar::Num(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Scalar::Bool(b) => Value::Bool(*b),
    }
}

fn scalars(set: &[Scalar]) -> Vec<Value> {
    set.iter().map(scalar).collect()
}

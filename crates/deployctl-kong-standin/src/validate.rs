//! Checking a body against a schema of [`crate::schema`] and filling its defaults, with
//! Kong's error shapes; also the `/schemas/…` rendering of the same tables.

use serde_json::{Map, Value, json};

use crate::schema::{Def, Field, Ty};

/// An answer other than success, as Kong's Admin API gives it.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
}

impl Refusal {
    pub fn not_found() -> Self {
        Self {
            status: 404,
            body: json!({"message": "Not found"}),
        }
    }

    pub fn bad_request(message: &str) -> Self {
        Self {
            status: 400,
            body: json!({"message": message}),
        }
    }

    /// `schema violation` (code 2): `fields` names each offending field.
    pub fn schema(fields: Map<String, Value>) -> Self {
        let mut parts = Vec::new();
        flatten("", &Value::Object(fields.clone()), &mut parts);
        let message = if parts.len() == 1 {
            format!("schema violation ({})", parts[0])
        } else {
            format!("{} schema violations ({})", parts.len(), parts.join("; "))
        };
        Self {
            status: 400,
            body: json!({"code": 2, "name": "schema violation", "message": message, "fields": fields}),
        }
    }

    /// `unique constraint violation` (code 5, status 409).
    pub fn unique(field: &str, value: &Value) -> Self {
        let shown = match value {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        Self {
            status: 409,
            body: json!({
                "code": 5,
                "name": "unique constraint violation",
                "message": format!("UNIQUE violation detected on '{{{field}={shown}}}'"),
                "fields": {field: value},
            }),
        }
    }

    /// `primary key violation` (code 3, status 409).
    pub fn primary_key(id: &str) -> Self {
        Self {
            status: 409,
            body: json!({
                "code": 3,
                "name": "primary key violation",
                "message": format!("primary key violation on key '{{id=\"{id}\"}}'"),
                "fields": {"id": id},
            }),
        }
    }

    /// `foreign key violation` (code 4): a reference to nothing, or a delete refused
    /// because `referenced_by` entities point at it.
    pub fn foreign(field: &str, message: String, referenced_by: Option<&str>) -> Self {
        let fields = match referenced_by {
            Some(r) => json!({"@referenced_by": r}),
            None => json!({field: message}),
        };
        Self {
            status: 400,
            body: json!({"code": 4, "name": "foreign key violation", "message": message, "fields": fields}),
        }
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() || k == "@entity" {
                    if prefix.is_empty() {
                        k.clone()
                    } else {
                        prefix.to_owned()
                    }
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| flatten(prefix, v, out)),
        Value::String(s) if prefix == "@entity" => out.push(s.clone()),
        other => out.push(format!(
            "{prefix}: {}",
            other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned)
        )),
    }
}

/// Checks `input` against `fields`, filling defaults. `lenient`: the body was form-encoded,
/// so scalars arrive as strings and are converted as Kong does. Errors per field name.
pub fn check(
    fields: &[Field],
    input: &Map<String, Value>,
    lenient: bool,
) -> Result<Map<String, Value>, Map<String, Value>> {
    let mut errors = Map::new();
    for k in input.keys() {
        if !fields.iter().any(|f| f.name == k) {
            errors.insert(k.clone(), json!("unknown field"));
        }
    }
    let mut out = Map::new();
    for fl in fields {
        let given = input.get(fl.name).cloned().unwrap_or(Value::Null);
        let value = if given.is_null() { default(fl) } else { given };
        match value_of(fl, value, lenient) {
            Ok(v) => {
                if v.is_null() && fl.required {
                    errors.insert(fl.name.to_owned(), json!("required field missing"));
                }
                out.insert(fl.name.to_owned(), v);
            }
            Err(e) => {
                errors.insert(fl.name.to_owned(), e);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A field's default value.
pub fn default(fl: &Field) -> Value {
    match (fl.def, fl.ty) {
        (Def::Null, _) => Value::Null,
        (Def::Int(i), _) => json!(i),
        (Def::Bool(b), _) => json!(b),
        (Def::Str(s), _) => json!(s),
        (Def::Strs(v), _) => json!(v),
        (Def::Record, Ty::Record(inner)) => Value::Object(
            inner
                .iter()
                .map(|f| (f.name.to_owned(), default(f)))
                .collect(),
        ),
        (Def::Record, _) => json!({}),
    }
}

fn value_of(fl: &Field, v: Value, lenient: bool) -> Result<Value, Value> {
    if v.is_null() {
        return Ok(v);
    }
    let v = match fl.ty {
        Ty::Str => match v {
            Value::String(s) => {
                if s.is_empty() {
                    return Err(json!("length must be at least 1"));
                }
                if !fl.one_of.is_empty() && !fl.one_of.contains(&s.as_str()) {
                    return Err(json!(format!("expected one of: {}", fl.one_of.join(", "))));
                }
                // Kong's `utf8_name` of services, routes and plugin instances.
                if (fl.name == "name" || fl.name == "instance_name")
                    && !s
                        .chars()
                        .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || ".-_~".contains(c))
                {
                    return Err(json!(format!(
                        "invalid value '{s}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
                    )));
                }
                Value::String(s)
            }
            _ => return Err(json!("expected a string")),
        },
        Ty::Int => {
            let n = match &v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
                Value::String(s) if lenient => s.parse::<i64>().ok(),
                _ => None,
            };
            let Some(n) = n else {
                return Err(json!("expected an integer"));
            };
            if !fl.int_one_of.is_empty() && !fl.int_one_of.contains(&n) {
                let list: Vec<String> = fl.int_one_of.iter().map(i64::to_string).collect();
                return Err(json!(format!("expected one of: {}", list.join(", "))));
            }
            check_between(fl, n as f64)?;
            json!(n)
        }
        Ty::Num => {
            let n = match &v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) if lenient => s.parse::<f64>().ok(),
                _ => None,
            };
            let Some(n) = n else {
                return Err(json!("expected a number"));
            };
            check_between(fl, n)?;
            match &v {
                Value::Number(_) => v,
                _ if n.fract() == 0.0 => json!(n as i64),
                _ => json!(n),
            }
        }
        Ty::Bool => match v {
            Value::Bool(_) => v,
            Value::String(s) if lenient && (s == "true" || s == "false") => json!(s == "true"),
            _ => return Err(json!("expected a boolean")),
        },
        Ty::Strs => {
            let items = match v {
                Value::Array(a) => a,
                Value::String(s) if lenient => vec![Value::String(s)],
                // Kong's JSON encoder writes an empty array as `{}`.
                Value::Object(m) if m.is_empty() => Vec::new(),
                _ => return Err(json!("expected a set")),
            };
            for it in &items {
                let Some(s) = it.as_str() else {
                    return Err(json!("expected a string"));
                };
                if fl.name == "tags"
                    && (s.is_empty() || s.contains([',', '/']) || s.chars().any(char::is_control))
                {
                    return Err(json!(format!(
                        "invalid tag '{s}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
                    )));
                }
                if !fl.one_of.is_empty() && !fl.one_of.contains(&s) {
                    return Err(json!(format!("expected one of: {}", fl.one_of.join(", "))));
                }
            }
            Value::Array(items)
        }
        Ty::Map => match v {
            Value::Object(_) => v,
            _ => return Err(json!("expected a map")),
        },
        Ty::Foreign(_) => match v {
            Value::Object(m) => Value::Object(m),
            Value::String(s) if lenient => json!({"id": s}),
            _ => return Err(json!("expected a record")),
        },
        Ty::Record(inner) => match v {
            Value::Object(m) => {
                if inner.is_empty() {
                    // checked by its owner (a plugin's `config`)
                    Value::Object(m)
                } else {
                    Value::Object(check(inner, &m, lenient).map_err(Value::Object)?)
                }
            }
            _ => return Err(json!("expected a record")),
        },
    };
    Ok(v)
}

fn check_between(fl: &Field, n: f64) -> Result<(), Value> {
    if let Some((lo, hi)) = fl.between
        && (n < lo as f64 || n > hi as f64)
    {
        return Err(json!(format!("value should be between {lo} and {hi}")));
    }
    Ok(())
}

/// `fields` as Kong's `/schemas/…` endpoints list them: `[{"name": {"type": …}}, …]`.
pub fn render_fields(fields: &[Field]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|fl| {
                let mut d = Map::new();
                let ty = match fl.ty {
                    Ty::Str => "string",
                    Ty::Int => "integer",
                    Ty::Num => "number",
                    Ty::Bool => "boolean",
                    Ty::Strs => "set",
                    Ty::Map => "map",
                    Ty::Foreign(reference) => {
                        d.insert("reference".into(), json!(reference));
                        "foreign"
                    }
                    Ty::Record(inner) => {
                        d.insert("fields".into(), render_fields(inner));
                        "record"
                    }
                };
                d.insert("type".into(), json!(ty));
                if matches!(fl.ty, Ty::Strs) {
                    let mut el = json!({"type": "string"});
                    if !fl.one_of.is_empty() {
                        el["one_of"] = json!(fl.one_of);
                    }
                    d.insert("elements".into(), el);
                } else if !fl.one_of.is_empty() {
                    d.insert("one_of".into(), json!(fl.one_of));
                }
                if !fl.int_one_of.is_empty() {
                    d.insert("one_of".into(), json!(fl.int_one_of));
                }
                if let Some((lo, hi)) = fl.between {
                    d.insert("between".into(), json!([lo, hi]));
                }
                if fl.required {
                    d.insert("required".into(), json!(true));
                }
                let def = default(fl);
                if !def.is_null() && !matches!(fl.ty, Ty::Record(_)) {
                    d.insert("default".into(), def);
                }
                json!({fl.name: d})
            })
            .collect(),
    )
}

//! The configuration reference (`mptcp-user config reference`, CONFIG.md):
//! every table and field of the TOML format with its type, default and
//! meaning, generated from the config types' schema (their doc comments and
//! serde defaults), so the reference cannot drift from what `up` reads.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::Config;

/// The whole reference, in Markdown.
pub fn markdown() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON");
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut out = String::from(
        "# Configuration reference\n\n\
         The TOML file `mptcp-user up --config FILE` reads, for every role and mode (`mptcp-user config \
         check FILE` checks one without starting anything; `scripts/` has examples). Unknown fields are \
         errors. Generated from the config types by `mptcp-user config reference`; a test keeps this file \
         equal to its output.\n",
    );
    let mut tables = vec![(String::from("top level"), String::new(), schema.clone())];
    while !tables.is_empty() {
        let (title, prefix, table) = tables.remove(0);
        let found = section(&mut out, &title, &prefix, &table, &defs);
        // Nested tables follow in the order their fields appear.
        for (i, t) in found.into_iter().enumerate() {
            tables.insert(i, t);
        }
    }
    out
}

/// One table's section; returns the tables its fields hold, as (title,
/// key prefix, schema).
fn section(
    out: &mut String,
    title: &str,
    prefix: &str,
    table: &Value,
    defs: &Map<String, Value>,
) -> Vec<(String, String, Value)> {
    let _ = write!(out, "\n## {title}\n\n");
    if let Some(d) = table.get("description").and_then(Value::as_str).filter(|_| !prefix.is_empty()) {
        let _ = write!(out, "{}\n\n", one_line(d));
    }
    out.push_str("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    let required: Vec<&str> =
        table.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut nested = Vec::new();
    for (key, field) in table.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let (ty, sub, array) = describe(field, defs);
        let default = if required.contains(&key.as_str()) {
            "required".to_string()
        } else {
            match field.get("default") {
                Some(Value::Object(_)) => "see below".to_string(),
                Some(Value::Null) | None => "none".to_string(),
                Some(Value::Array(a)) if a.is_empty() => "none".to_string(),
                Some(v) => format!("`{v}`"),
            }
        };
        let mut meaning = field.get("description").and_then(Value::as_str).map(one_line).unwrap_or_default();
        if let Some(values) = variants(field, defs) {
            meaning += &values;
        }
        let _ = writeln!(out, "| `{key}` | {ty} | {default} | {} |", meaning.trim().replace('|', "\\|"));
        if let Some(sub) = sub {
            let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            let title = if array { format!("`[[{full}]]`") } else { format!("`[{full}]`") };
            nested.push((title, full, sub));
        }
    }
    nested
}

/// A field's type as a reader wants it, the table it holds (if any) and
/// whether that is an array of tables.
fn describe(field: &Value, defs: &Map<String, Value>) -> (String, Option<Value>, bool) {
    if let Some(def) = reference(field).and_then(|r| defs.get(r)) {
        let name = reference(field).unwrap_or_default();
        return match def.get("type").and_then(Value::as_str) {
            Some("object") => ("table".into(), Some(def.clone()), false),
            _ => (named_type(name, def), None, false),
        };
    }
    let types: Vec<&str> = match field.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("array") => {
            let items = field.get("items").cloned().unwrap_or(Value::Null);
            let (item, sub, _) = describe(&items, defs);
            match sub {
                Some(sub) => ("array of tables".into(), Some(sub), true),
                None => (format!("list of {item}"), None, false),
            }
        }
        Some("integer") => ("integer".into(), None, false),
        Some("number") => ("number".into(), None, false),
        Some("boolean") => ("boolean".into(), None, false),
        Some("string") => {
            let ty = match field.get("format").and_then(Value::as_str) {
                Some("ip") => "IP address",
                _ => "string",
            };
            (ty.into(), None, false)
        }
        _ => ("string".into(), None, false),
    }
}

/// The definition a field refers to, directly or as an optional one.
fn reference(field: &Value) -> Option<&str> {
    let direct = field.get("$ref").and_then(Value::as_str);
    let optional = || field.get("anyOf")?.as_array()?.iter().find_map(|v| v.get("$ref").and_then(Value::as_str));
    direct.or_else(optional).and_then(|r| r.strip_prefix("#/$defs/"))
}

fn named_type(name: &str, def: &Value) -> String {
    if let Some(values) = enum_values(def) {
        return values.iter().map(|(v, _)| format!("`\"{v}\"`")).collect::<Vec<_>>().join(" \\| ");
    }
    match name {
        "IpNet" => "IP prefix (`\"10.0.0.0/8\"`, `\"fd00::/32\"`)".into(),
        _ => "string".into(),
    }
}

/// An enum's values and what each means (if documented).
fn enum_values(def: &Value) -> Option<Vec<(String, Option<String>)>> {
    if let Some(e) = def.get("enum").and_then(Value::as_array) {
        return Some(e.iter().filter_map(Value::as_str).map(|v| (v.to_string(), None)).collect());
    }
    let one_of = def.get("oneOf")?.as_array()?;
    one_of
        .iter()
        .map(|v| {
            let c = v.get("const")?.as_str()?.to_string();
            Some((c, v.get("description").and_then(Value::as_str).map(one_line)))
        })
        .collect()
}

/// " `a`: what a means. `b`: …" for an enum whose values are documented.
fn variants(field: &Value, defs: &Map<String, Value>) -> Option<String> {
    let values = enum_values(defs.get(reference(field)?)?)?;
    if values.iter().all(|(_, d)| d.is_none()) {
        return None;
    }
    Some(values.iter().map(|(v, d)| format!(" `{v}`: {}", d.as_deref().unwrap_or(""))).collect())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_table_is_documented() {
        let md = markdown();
        for table in
            ["## top level", "## `[bond]`", "## `[probe]`", "## `[[path]]`", "## `[path.cap]`", "## `[[class]]`"]
        {
            assert!(md.contains(table), "{table} missing:\n{md}");
        }
        for table in ["## `[[class.match]]`", "## `[[client]]`"] {
            assert!(md.contains(table), "{table} missing:\n{md}");
        }
        for row in md.lines().filter(|l| l.starts_with("| `")) {
            let meaning = row.trim_end_matches('|').rsplit(" | ").next().unwrap_or("").trim();
            assert!(!meaning.is_empty(), "a field without a doc comment: {row}");
        }
        assert!(md.contains("| `budget_mb` | number | required |"), "{md}");
        assert!(md.contains("| `interval_ms` | integer | `200` |"), "{md}");
        assert!(md.contains("`\"backup\"` \\| `\"unused\"`"), "{md}");
    }
}

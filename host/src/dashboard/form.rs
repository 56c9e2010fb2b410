//! The enqueue form a template's JSON Schema gives: one field per property
//! of an object schema (text, a list for `enum`, number, checkbox, or JSON
//! for nested values), or one JSON box for any other schema; reading the
//! submitted fields back into a context by the schema's types; and placing
//! the API's schema violations next to the fields they are about. The form
//! sets no HTML constraints of its own (`novalidate`): the API's validation
//! is the only one, and its messages are what the user sees.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

use crate::schema::Violation;

/// The form-level slot for messages no field owns.
pub(crate) const WHOLE: &str = "";
/// The name of the whole-context JSON box.
const RAW: &str = "context";
/// Field names of context properties start with this.
const PREFIX: &str = "c.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    Json,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    required: bool,
    title: Option<String>,
    description: Option<String>,
    options: Vec<String>,
    default: Option<Value>,
    hints: Vec<String>,
}

/// The form of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// `None`: the schema is not a plain object; one JSON box for the context.
    fields: Option<Vec<Field>>,
    raw_default: String,
}

/// Field errors by field name (`WHOLE` for the form).
pub(crate) type Errors = BTreeMap<String, Vec<String>>;

/// The form for `schema`.
pub(crate) fn spec(schema: &Value) -> Spec {
    let simple = schema.get("type").and_then(Value::as_str) == Some("object")
        && ["$ref", "oneOf", "anyOf", "allOf", "if", "patternProperties"].iter().all(|k| schema.get(k).is_none());
    let properties = schema.get("properties").and_then(Value::as_object);
    let fields = match (simple, properties) {
        (true, Some(properties)) if !properties.is_empty() => {
            let required: Vec<&str> =
                schema.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            Some(properties.iter().map(|(name, p)| field(name, p, required.contains(&name.as_str()))).collect())
        }
        _ => None,
    };
    let raw_default = schema.get("default").map_or_else(|| "{}".to_string(), |d| serde_json::to_string_pretty(d).unwrap_or_default());
    Spec { fields, raw_default }
}

fn field(name: &str, p: &Value, required: bool) -> Field {
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(String::from);
    let options: Vec<String> =
        p.get("enum").and_then(Value::as_array).map(|e| e.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    let kind = match p.get("type").and_then(Value::as_str) {
        Some("string") => Kind::Text,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Boolean,
        _ => Kind::Json,
    };
    let mut hints = Vec::new();
    for (key, label) in [("minimum", "min"), ("maximum", "max"), ("minLength", "min length"), ("maxLength", "max length")] {
        if let Some(v) = p.get(key) {
            hints.push(format!("{label} {v}"));
        }
    }
    for key in ["pattern", "format"] {
        if let Some(v) = text(key) {
            hints.push(format!("{key} {v}"));
        }
    }
    Field { name: name.to_string(), kind, required, title: text("title"), description: text("description"), options, default: p.get("default").cloned(), hints }
}

/// The text a field shows for a JSON value.
fn shown(kind: Kind, value: &Value) -> String {
    match (kind, value) {
        (Kind::Text, Value::String(s)) => s.clone(),
        (Kind::Json, v) => serde_json::to_string(v).unwrap_or_default(),
        (_, v) => v.to_string(),
    }
}

fn errors_at(errors: &Errors, field: &str) -> Markup {
    html! {
        @for e in errors.get(field).into_iter().flatten() {
            span.error data-field=(field) { (e) }
        }
    }
}

/// The form's fields, filled from `submitted` (name → value) or the defaults,
/// with `errors` next to their fields.
pub(crate) fn render(spec: &Spec, submitted: Option<&[(String, String)]>, errors: &Errors) -> Markup {
    let value_of = |key: &str| submitted.and_then(|s| s.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()));
    html! {
        (errors_at(errors, WHOLE))
        @match &spec.fields {
            None => {
                div.field {
                    label for="context" { "Context (JSON)" }
                    textarea #context name=(RAW) rows="8" cols="60" { (value_of(RAW).unwrap_or_else(|| spec.raw_default.clone())) }
                    (errors_at(errors, RAW))
                }
            }
            Some(fields) => {
                @for f in fields {
                    @let key = format!("{PREFIX}{}", f.name);
                    @let value = value_of(&key).or_else(|| if submitted.is_none() { f.default.as_ref().map(|d| shown(f.kind, d)) } else { None });
                    div.field data-field=(f.name) {
                        label for=(key) {
                            (f.title.as_deref().unwrap_or(&f.name))
                            @if f.required { span.required title="required" { " *" } }
                        }
                        @match f.kind {
                            Kind::Boolean => {
                                input #(key) type="checkbox" name=(key) value="true" checked[value.as_deref() == Some("true")];
                            }
                            Kind::Text if !f.options.is_empty() => {
                                select #(key) name=(key) {
                                    @if !f.required { option value="" { "" } }
                                    @for o in &f.options { option value=(o) selected[value.as_deref() == Some(o.as_str())] { (o) } }
                                }
                            }
                            Kind::Json => {
                                textarea #(key) name=(key) rows="3" cols="50" placeholder="JSON" { (value.unwrap_or_default()) }
                            }
                            _ => {
                                input #(key) type="text" name=(key) value=[value] inputmode=[matches!(f.kind, Kind::Integer | Kind::Number).then_some("decimal")];
                            }
                        }
                        @if !f.hints.is_empty() || f.description.is_some() {
                            small.hint {
                                @if let Some(d) = &f.description { (d) " " }
                                @if !f.hints.is_empty() { "(" (f.hints.join(", ")) ")" }
                            }
                        }
                        (errors_at(errors, &f.name))
                    }
                }
            }
        }
    }
}

/// The context the submitted fields give, or the fields that cannot be read
/// as their type (nothing is enqueued then).
pub(crate) fn context(spec: &Spec, submitted: &[(String, String)]) -> Result<Value, Errors> {
    let value_of = |key: &str| submitted.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut errors = Errors::new();
    let Some(fields) = &spec.fields else {
        let text = value_of(RAW).unwrap_or("");
        return serde_json::from_str(text).map_err(|e| Errors::from([(RAW.to_string(), vec![format!("not JSON: {e}")])]));
    };
    let mut context = Map::new();
    for f in fields {
        let text = value_of(&format!("{PREFIX}{}", f.name)).unwrap_or("");
        let value = match f.kind {
            Kind::Boolean => Some(Value::Bool(text == "true")),
            _ if text.trim().is_empty() => None,
            Kind::Text => Some(Value::String(text.to_string())),
            Kind::Integer => match text.trim().parse::<i64>() {
                Ok(n) => Some(n.into()),
                Err(_) => {
                    errors.entry(f.name.clone()).or_default().push(format!("`{}` is not a whole number", text.trim()));
                    None
                }
            },
            Kind::Number => match text.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Some(Value::Number(n)),
                None => {
                    errors.entry(f.name.clone()).or_default().push(format!("`{}` is not a number", text.trim()));
                    None
                }
            },
            Kind::Json => match serde_json::from_str(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.entry(f.name.clone()).or_default().push(format!("not JSON: {e}"));
                    None
                }
            },
        };
        if let Some(v) = value {
            context.insert(f.name.clone(), v);
        }
    }
    if errors.is_empty() { Ok(Value::Object(context)) } else { Err(errors) }
}

/// The field a violation is about: the first property of its pointer, or
/// the property a `required` violation names; otherwise the whole form.
pub(crate) fn place(spec: &Spec, violations: &[Violation]) -> Errors {
    let names: Vec<&str> = spec.fields.iter().flatten().map(|f| f.name.as_str()).collect();
    let mut errors = Errors::new();
    for v in violations {
        let first = v.pointer.strip_prefix('/').and_then(|p| p.split('/').next()).map(|s| s.replace("~1", "/").replace("~0", "~"));
        let missing = v.message.strip_prefix('"').and_then(|m| m.strip_suffix("\" is a required property")).map(String::from);
        let field = match (spec.fields.is_some(), first.or(missing)) {
            (false, _) => RAW.to_string(),
            (true, Some(name)) if names.contains(&name.as_str()) => name,
            _ => WHOLE.to_string(),
        };
        errors.entry(field).or_default().push(v.message.clone());
    }
    errors
}

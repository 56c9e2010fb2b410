//! Context schemas: checking that a template's JSON Schema is valid and that a
//! job's context satisfies it, with every violation named by its JSON pointer.

use serde::Serialize;
use serde_json::Value;

/// One way a context breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer to the offending value in the context (`""` is the whole context).
    pub pointer: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "at {at}: {}", self.message)
    }
}

/// Why a schema or a context was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema is not a valid JSON Schema.
    #[error("the schema is not a valid JSON Schema: {}", list(.0))]
    InvalidSchema(Vec<Violation>),
    /// The context does not satisfy the schema.
    #[error("the context does not match the template's schema: {}", list(.0))]
    ContextRejected(Vec<Violation>),
    /// The text is not JSON at all.
    #[error("{what} is not valid JSON: {error}")]
    NotJson {
        /// What was being read ("the context", "the schema").
        what: &'static str,
        /// The parser's complaint, with line and column.
        error: String,
    },
}

impl SchemaError {
    /// The individual violations, when the error has them.
    pub fn violations(&self) -> &[Violation] {
        match self {
            SchemaError::InvalidSchema(v) | SchemaError::ContextRejected(v) => v,
            SchemaError::NotJson { .. } => &[],
        }
    }
}

fn list(violations: &[Violation]) -> String {
    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
}

/// A compiled JSON Schema for job contexts.
pub struct ContextSchema {
    source: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ContextSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextSchema").field("source", &self.source).finish()
    }
}

impl ContextSchema {
    /// Checks `schema` against the JSON Schema meta-schema and compiles it.
    /// Remote references are not fetched: a schema must be self-contained.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        if let Err(e) = jsonschema::meta::validate(schema) {
            return Err(SchemaError::InvalidSchema(vec![Violation {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            }]));
        }
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            SchemaError::InvalidSchema(vec![Violation { pointer: e.instance_path().to_string(), message: e.to_string() }])
        })?;
        Ok(ContextSchema { source: schema.clone(), validator })
    }

    /// Parses and compiles a schema given as JSON text.
    pub fn from_text(text: &str) -> Result<Self, SchemaError> {
        Self::compile(&parse_json("the schema", text)?)
    }

    /// The schema as given.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Checks a context, returning every violation (not just the first).
    pub fn validate(&self, context: &Value) -> Result<(), SchemaError> {
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(context)
            .map(|e| Violation { pointer: e.instance_path().to_string(), message: e.to_string() })
            .collect();
        if violations.is_empty() { Ok(()) } else { Err(SchemaError::ContextRejected(violations)) }
    }
}

/// Parses JSON text, naming `what` in the error.
pub fn parse_json(what: &'static str, text: &str) -> Result<Value, SchemaError> {
    serde_json::from_str(text).map_err(|e| SchemaError::NotJson { what, error: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ContextSchema {
        ContextSchema::compile(&json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "tags": {"type": "array", "items": {"type": "integer"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn every_violation_is_listed_with_its_pointer() {
        let err = schema().validate(&json!({"name": "", "tags": [1, "two", 3, "four"]})).unwrap_err();
        let mut pointers: Vec<&str> = err.violations().iter().map(|v| v.pointer.as_str()).collect();
        pointers.sort();
        assert_eq!(pointers, ["/name", "/tags/1", "/tags/3"]);
        assert!(err.to_string().starts_with("the context does not match the template's schema: at /"));
    }

    #[test]
    fn a_missing_property_points_at_the_object() {
        let err = schema().validate(&json!({})).unwrap_err();
        assert_eq!(err.violations().len(), 1);
        assert_eq!(err.violations()[0].pointer, "");
        assert!(err.violations()[0].message.contains("\"name\" is a required property"), "{err}");
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        let err = ContextSchema::compile(&json!({"type": "objekt"})).unwrap_err();
        assert!(matches!(err, SchemaError::InvalidSchema(_)), "{err}");
        assert!(err.to_string().contains("the schema is not a valid JSON Schema"), "{err}");
        let err = ContextSchema::from_text("{nope").unwrap_err();
        assert!(err.to_string().starts_with("the schema is not valid JSON"), "{err}");
    }
}

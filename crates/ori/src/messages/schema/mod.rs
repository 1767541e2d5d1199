//! Run-time validation of JSON values against the JSON Schema of a Rust
//! type, with errors that name the JSON Pointer of each violation.
//!
//! Schemas come from `schemars` (`#[derive(JsonSchema)]`, with
//! `#[schemars(length(..), range(..), regex(..))]` for constraints a Rust
//! type cannot express) or are written by hand. The `jsonschema` crate
//! compiles and checks them (every keyword of draft 2020-12, draft 7 and
//! older when the schema's `$schema` names them, but the content keywords,
//! which it does not check and [`formats`] refuses); [`reasons`] words its
//! errors as PROTOCOL.md section 3 shows them, and [`formats`] adds the
//! topic formats and the formats schemars writes for Rust types.
//!
//! A schema that does not compile is an error ([`SchemaError`]), never a
//! validator that accepts everything: the registry and the socket router
//! turn it into a start-up error, a typed emit into a failed publish.

mod formats;
mod reasons;
#[cfg(test)]
mod tests;

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use reasons::{ValidationError, Violation};

pub(crate) use super::{FORMAT_CLIENT_TOPIC, FORMAT_TOPIC};

/// The largest value (in JSON nodes) whose rejection lists every violation:
/// `jsonschema` builds every error before returning any, one allocation
/// each (a 16 MiB array of wrong items would be millions), and even its
/// first error is not cheap: under an `anyOf`/`oneOf` (schemars writes
/// one for every `Option<Struct>`) it collects every branch's errors.
/// A larger value is judged with `is_valid` alone, which stops at the
/// first failure.
const DETAILED_NODES: usize = 4096;

/// The JSON nodes of `value`.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(nodes).sum(),
        _ => 0,
    }
}

/// The reason of a part of a large value that fails its schema.
fn unitemized(nodes: usize) -> String {
    let what = if nodes == 1 { "node" } else { "nodes" };
    format!("does not match its schema (a value of {nodes} {what} is checked, not itemized)")
}

/// The root schema's parts a large value is checked against one by one:
/// for an object, each member's own validator, the required members, and
/// whether other members are refused; for an array, its items' validator.
enum Parts {
    Object {
        properties: Vec<(String, jsonschema::Validator)>,
        required: Vec<String>,
        closed: bool,
    },
    Array(jsonschema::Validator),
}

/// Whether the root schema's `type` allows `kind`.
fn allows(root: &serde_json::Map<String, Value>, kind: &str) -> bool {
    match root.get("type") {
        None => true,
        Some(Value::String(t)) => t == kind,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == kind),
        Some(_) => false,
    }
}

impl Parts {
    /// `None` unless the schema is a plain object schema with `properties`
    /// or array schema with `items`, whose subschemas can be compiled on
    /// their own: no `$ref` but to `$defs` or `definitions`, no `$id`,
    /// anchors or dynamic references.
    fn of(json: &Value) -> Option<Self> {
        let root = json.as_object()?;
        if !self_contained(json) {
            return None;
        }
        let mut wrapper = serde_json::Map::new();
        for key in ["$schema", "$defs", "definitions"] {
            if let Some(v) = root.get(key) {
                wrapper.insert(key.into(), v.clone());
            }
        }
        let compile = |sub: &Value| {
            let mut doc = wrapper.clone();
            doc.insert("allOf".into(), Value::Array(vec![sub.clone()]));
            formats::build(&Value::Object(doc)).ok()
        };
        let Some(properties) = root.get("properties").and_then(Value::as_object) else {
            let items = root.get("items")?;
            if !allows(root, "array") || !items.is_object() || root.contains_key("prefixItems") {
                return None;
            }
            return compile(items).map(Self::Array);
        };
        if !allows(root, "object") {
            return None;
        }
        let properties = properties
            .iter()
            .map(|(name, sub)| Some((name.clone(), compile(sub)?)))
            .collect::<Option<Vec<_>>>()?;
        let required = match root.get("required") {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let closed = root.get("additionalProperties") == Some(&Value::Bool(false))
            && !root.contains_key("patternProperties");
        Some(Self::Object {
            properties,
            required,
            closed,
        })
    }

    /// The violations of `value` found with `is_valid`: of each part (the
    /// first failing item of an array), itemized while they hold
    /// [`DETAILED_NODES`] in all.
    fn check(&self, value: &Value, found: &mut reasons::Collector) {
        match (self, value) {
            (
                Self::Object {
                    properties,
                    required,
                    closed,
                },
                Value::Object(map),
            ) => Self::check_object(properties, required, *closed, map, found),
            (Self::Array(validator), Value::Array(items)) => {
                if let Some(i) = items.iter().position(|item| !validator.is_valid(item)) {
                    let mut budget = DETAILED_NODES;
                    part(validator, &i.to_string(), &items[i], &mut budget, found);
                }
            }
            _ => {}
        }
    }

    fn check_object(
        properties: &[(String, jsonschema::Validator)],
        required: &[String],
        closed: bool,
        map: &serde_json::Map<String, Value>,
        found: &mut reasons::Collector,
    ) {
        let mut budget = DETAILED_NODES;
        for name in required {
            if !map.contains_key(name) {
                found.missing(pointer(name));
            }
        }
        for (name, validator) in properties {
            if let Some(member) = map.get(name) {
                if !validator.is_valid(member) {
                    part(validator, name, member, &mut budget, found);
                }
            }
        }
        if closed {
            for name in map.keys() {
                if !properties.iter().any(|(p, _)| p == name) {
                    found.violation(pointer(name), "is not allowed".into());
                }
            }
        }
    }
}

/// The violations of `value`, the part `name` of the whole value, which
/// fails `validator`: itemized if it fits in `budget` nodes (taken from
/// it), else one.
fn part(
    validator: &jsonschema::Validator,
    name: &str,
    value: &Value,
    budget: &mut usize,
    found: &mut reasons::Collector,
) {
    let mut left = *budget;
    if nodes_within(value, &mut left) {
        *budget = left;
        found.errors(&pointer(name), validator.iter_errors(value));
    } else {
        found.violation(pointer(name), unitemized(nodes(value)));
    }
}

fn pointer(name: &str) -> String {
    let mut path = String::new();
    formats::push_pointer(&mut path, name);
    path
}

/// Whether every reference of `schema` resolves inside `$defs` or
/// `definitions` of the root, whatever the root document is.
fn self_contained(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.iter().all(|(key, v)| match key.as_str() {
            "$ref" => v
                .as_str()
                .is_some_and(|r| r.starts_with("#/$defs/") || r.starts_with("#/definitions/")),
            "$id" | "id" | "$anchor" | "$dynamicRef" | "$dynamicAnchor" | "$recursiveRef"
            | "$recursiveAnchor" => false,
            _ => self_contained(v),
        }),
        Value::Array(items) => items.iter().all(self_contained),
        _ => true,
    }
}

/// Whether `value` has at most `budget` nodes (counting stops there).
fn nodes_within(value: &Value, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match value {
        Value::Array(items) => items.iter().all(|v| nodes_within(v, budget)),
        Value::Object(map) => map.values().all(|v| nodes_within(v, budget)),
        _ => true,
    }
}

/// A compiled JSON Schema: the schema document and its validator.
pub struct Schema {
    json: Value,
    validator: jsonschema::Validator,
    /// Compiled on the first rejection of a large value.
    parts: OnceLock<Option<Parts>>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("json", &self.json).finish()
    }
}

/// Why a schema document cannot be compiled: an invalid keyword value (a
/// `pattern` that is no regular expression, a `$ref` to nowhere or to
/// another document), or a `format` nobody checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema: {0}")]
pub struct SchemaError(String);

impl Schema {
    /// Compiles a JSON Schema document.
    ///
    /// ```
    /// use ori::messages::Schema;
    /// use serde_json::json;
    ///
    /// let schema = Schema::compile(json!({"type": "integer", "multipleOf": 5})).unwrap();
    /// assert_eq!(schema.validate(&json!(12)).unwrap_err().to_string(), "must be a multiple of 5");
    /// // A pattern that is no regular expression, a `$ref` to nowhere, an
    /// // unknown format: the schema does not compile.
    /// assert!(Schema::compile(json!({"type": "string", "pattern": "("})).is_err());
    /// assert!(Schema::compile(json!({"$ref": "#/$defs/Missing"})).is_err());
    /// assert!(Schema::compile(json!({"type": "string", "format": "zip-code"})).is_err());
    /// ```
    pub fn compile(json: Value) -> Result<Self, SchemaError> {
        let validator = formats::build(&json)?;
        Ok(Self {
            json,
            validator,
            parts: OnceLock::new(),
        })
    }

    /// The compiled schema of `T`, computed once per type (the error too),
    /// then shared.
    pub fn of<T: JsonSchema + 'static>() -> Result<Arc<Schema>, SchemaError> {
        type Cache = RwLock<HashMap<TypeId, Result<Arc<Schema>, SchemaError>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = TypeId::of::<T>();
        if let Some(s) = cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return s.clone();
        }
        let json = schemars::SchemaGenerator::default()
            .into_root_schema_for::<T>()
            .to_value();
        let schema = Self::compile(json).map(Arc::new);
        cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(schema)
            .clone()
    }

    /// The JSON Schema document.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Checks `value`.
    ///
    /// Every violation is reported (up to 16) for values of up to 4096
    /// JSON nodes. A larger invalid value is never itemized, so the cost
    /// of a rejection stays that of a check whatever a client sends: for
    /// an object whose schema lists its members, each missing required
    /// member, each member that fails its own subschema (itemized while
    /// the failing members hold 4096 nodes in all, else one violation
    /// `does not match its schema (a value of N nodes is checked, not
    /// itemized)`) and each member a closed schema refuses; for an array
    /// whose schema has `items`, its first failing item, the same way;
    /// otherwise, or when no part is at fault, one such violation for the
    /// whole value.
    ///
    /// ```
    /// use ori::messages::Schema;
    /// use serde_json::json;
    ///
    /// let schema = Schema::compile(json!({
    ///     "type": "object",
    ///     "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}
    /// }))
    /// .unwrap();
    /// let e = schema.validate(&json!({"ids": vec!["x"; 5000]})).unwrap_err();
    /// assert_eq!(
    ///     e.to_string(),
    ///     "/ids: does not match its schema (a value of 5001 nodes is checked, not itemized)"
    /// );
    /// ```
    pub fn validate(&self, value: &Value) -> Result<(), ValidationError> {
        // The fast path answers valid values without building any error.
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let mut budget = DETAILED_NODES;
        if nodes_within(value, &mut budget) {
            return Err(reasons::collect(self.validator.iter_errors(value)));
        }
        let mut found = reasons::Collector::default();
        if let Some(parts) = self.parts.get_or_init(|| Parts::of(&self.json)) {
            parts.check(value, &mut found);
        }
        if found.is_empty() {
            found.violation(String::new(), unitemized(nodes(value)));
        }
        Err(found.finish())
    }

    /// Checks `value`, then deserializes it.
    pub fn parse<T: DeserializeOwned>(&self, value: Value) -> Result<T, ValidationError> {
        self.validate(&value)?;
        serde_json::from_value(value).map_err(|e| ValidationError::new("", e.to_string()))
    }

    /// Checks `value`, then deserializes `T` from it without taking it.
    pub fn parse_ref<T: DeserializeOwned>(&self, value: &Value) -> Result<T, ValidationError> {
        self.validate(value)?;
        T::deserialize(value).map_err(|e| ValidationError::new("", e.to_string()))
    }
}

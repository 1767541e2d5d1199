//! Run-time validation of JSON values against the JSON Schema of a Rust
//! type, with errors that name the JSON Pointer of each violation.
//!
//! Schemas come from `schemars` (`#[derive(JsonSchema)]`, with
//! `#[schemars(length(..), range(..), regex(..))]` for constraints a Rust
//! type cannot express) or are written by hand. The `jsonschema` crate
//! compiles and checks them (every keyword of draft 2020-12, draft 7 and
//! older when the schema's `$schema` names them); [`reasons`] words its
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
/// each (a 16 MiB array of wrong items would be millions).
const DETAILED_NODES: usize = 4096;

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
        Ok(Self { json, validator })
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
    /// JSON nodes; a larger invalid value reports its first one, so the
    /// cost of a rejection stays bounded whatever a client sends.
    pub fn validate(&self, value: &Value) -> Result<(), ValidationError> {
        // The fast path answers valid values without building any error.
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let mut budget = DETAILED_NODES;
        if nodes_within(value, &mut budget) {
            Err(reasons::collect(self.validator.iter_errors(value)))
        } else {
            Err(reasons::collect(
                self.validator.validate(value).err().into_iter(),
            ))
        }
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

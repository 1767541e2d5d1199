//! Run-time validation of JSON values against the JSON Schema of a Rust
//! type, with errors that name the JSON Pointer of each violation.
//!
//! Schemas come from `schemars` (`#[derive(JsonSchema)]`, with
//! `#[schemars(length(..), range(..), regex(..))]` for constraints a Rust
//! type cannot express). They are compiled once into a node tree, so
//! checking a message is a walk over the value with no allocation unless
//! something is wrong.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{FORMAT_CLIENT_TOPIC, FORMAT_TOPIC};

const MAX_VIOLATIONS: usize = 16;

/// One violation: where (a JSON Pointer, empty for the whole value) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value (`/room`), empty for the root.
    pub path: String,
    /// Why it is invalid (`must be at least 1 character`).
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// A value failed its schema: every violation found (at most 16).
///
/// Displays as `<path>: <reason>, ...`; prefix it with `Validation failed: `
/// for the wire format of PROTOCOL.md section 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    violations: Vec<Violation>,
}

impl ValidationError {
    /// The violations: missing required fields first, then the others
    /// field by field.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub(crate) fn single(path: &str, reason: impl Into<String>) -> Self {
        Self {
            violations: vec![Violation {
                path: path.to_owned(),
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null = 1,
    Boolean = 2,
    Integer = 4,
    Number = 8,
    String = 16,
    Array = 32,
    Object = 64,
}

const KINDS: [(Kind, &str, &str); 7] = [
    (Kind::String, "string", "a string"),
    (Kind::Integer, "integer", "an integer"),
    (Kind::Number, "number", "a number"),
    (Kind::Boolean, "boolean", "a boolean"),
    (Kind::Object, "object", "an object"),
    (Kind::Array, "array", "an array"),
    (Kind::Null, "null", "null"),
];

fn kind_of(value: &Value) -> u8 {
    match value {
        Value::Null => Kind::Null as u8,
        Value::Bool(_) => Kind::Boolean as u8,
        Value::Number(n) => {
            // `30.0` is not an integer to serde, so not to the schema either.
            let integral = n.is_i64() || n.is_u64();
            if integral {
                Kind::Integer as u8 | Kind::Number as u8
            } else {
                Kind::Number as u8
            }
        }
        Value::String(_) => Kind::String as u8,
        Value::Array(_) => Kind::Array as u8,
        Value::Object(_) => Kind::Object as u8,
    }
}

fn describe_kinds(mask: u8) -> String {
    let names: Vec<&str> = KINDS
        .iter()
        .filter(|(k, _, _)| mask & (*k as u8) != 0)
        // "integer or number" reads as "number"
        .filter(|(k, _, _)| !(*k == Kind::Integer && mask & (Kind::Number as u8) != 0))
        .map(|(_, _, article)| *article)
        .collect();
    names.join(" or ")
}

#[derive(Default)]
struct Node {
    always: Option<bool>,
    reference: Option<usize>,
    kinds: Option<u8>,
    constant: Option<Value>,
    one_of_values: Option<Vec<Value>>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    format: Option<Format>,
    pattern: Option<(regex_lite::Regex, String)>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    properties: Vec<(String, usize)>,
    required: Vec<String>,
    additional: Option<usize>,
    items: Option<usize>,
    prefix_items: Vec<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    any_of: Vec<usize>,
    one_of: Vec<usize>,
    all_of: Vec<usize>,
}

#[derive(Clone, Copy)]
enum Format {
    Topic,
    ClientTopic,
}

/// A compiled JSON Schema: the schema document and its validator.
pub struct Schema {
    json: Value,
    nodes: Vec<Node>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("json", &self.json).finish()
    }
}

/// Why a schema document cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported schema: {0}")]
pub struct SchemaError(String);

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    refs: HashMap<String, usize>,
}

fn as_usize(v: Option<&Value>) -> Option<usize> {
    v.and_then(Value::as_u64).map(|n| n as usize)
}

impl Compiler<'_> {
    fn compile(&mut self, schema: &Value) -> Result<usize, SchemaError> {
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        let node = match schema {
            Value::Bool(b) => Node {
                always: Some(*b),
                ..Node::default()
            },
            Value::Object(map) => self.compile_object(map)?,
            other => {
                return Err(SchemaError(format!(
                    "a schema must be an object or a boolean, not {other}"
                )))
            }
        };
        self.nodes[id] = node;
        Ok(id)
    }

    fn compile_list(&mut self, v: Option<&Value>) -> Result<Vec<usize>, SchemaError> {
        match v {
            Some(Value::Array(list)) => list.iter().map(|s| self.compile(s)).collect(),
            Some(_) => Err(SchemaError("expected an array of schemas".into())),
            None => Ok(Vec::new()),
        }
    }

    fn resolve(&mut self, reference: &str) -> Result<usize, SchemaError> {
        if let Some(id) = self.refs.get(reference) {
            return Ok(*id);
        }
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| SchemaError(format!("only local $ref is supported: {reference}")))?;
        let target = if pointer.is_empty() {
            self.root
        } else {
            self.root
                .pointer(pointer)
                .ok_or_else(|| SchemaError(format!("dangling $ref {reference}")))?
        };
        // Register before compiling so recursive types terminate.
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        self.refs.insert(reference.to_owned(), id);
        let target = target.clone();
        let compiled = self.compile(&target)?;
        self.nodes[id] = Node {
            reference: Some(compiled),
            ..Node::default()
        };
        Ok(id)
    }

    fn compile_object(&mut self, map: &Map<String, Value>) -> Result<Node, SchemaError> {
        let mut node = Node::default();
        if let Some(Value::String(r)) = map.get("$ref") {
            node.reference = Some(self.resolve(r)?);
        }
        node.kinds = match map.get("type") {
            None => None,
            Some(Value::String(t)) => Some(kind_mask(t)?),
            Some(Value::Array(ts)) => {
                let mut mask = 0;
                for t in ts {
                    mask |= kind_mask(t.as_str().unwrap_or_default())?;
                }
                Some(mask)
            }
            Some(other) => return Err(SchemaError(format!("bad type {other}"))),
        };
        node.constant = map.get("const").cloned();
        node.one_of_values = map.get("enum").and_then(Value::as_array).cloned();
        node.min_length = as_usize(map.get("minLength"));
        node.max_length = as_usize(map.get("maxLength"));
        node.format = match map.get("format").and_then(Value::as_str) {
            Some(FORMAT_TOPIC) => Some(Format::Topic),
            Some(FORMAT_CLIENT_TOPIC) => Some(Format::ClientTopic),
            _ => None, // other formats are annotations
        };
        if let Some(p) = map.get("pattern").and_then(Value::as_str) {
            let re = regex_lite::Regex::new(p)
                .map_err(|e| SchemaError(format!("bad pattern {p:?}: {e}")))?;
            node.pattern = Some((re, p.to_owned()));
        }
        node.minimum = map.get("minimum").and_then(Value::as_f64);
        node.maximum = map.get("maximum").and_then(Value::as_f64);
        // schemars marks fixed-width integers with a format only; bound them
        // so a value the Rust type cannot hold fails with its path.
        if let Some((min, max)) = map
            .get("format")
            .and_then(Value::as_str)
            .and_then(integer_bounds)
        {
            node.minimum = Some(node.minimum.map_or(min, |m| m.max(min)));
            node.maximum = Some(node.maximum.map_or(max, |m| m.min(max)));
        }
        node.exclusive_minimum = map.get("exclusiveMinimum").and_then(Value::as_f64);
        node.exclusive_maximum = map.get("exclusiveMaximum").and_then(Value::as_f64);
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, schema) in props {
                let id = self.compile(schema)?;
                node.properties.push((name.clone(), id));
            }
        }
        if let Some(Value::Array(req)) = map.get("required") {
            node.required = req
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
        }
        if let Some(additional) = map.get("additionalProperties") {
            node.additional = Some(self.compile(additional)?);
        }
        match map.get("items") {
            Some(Value::Array(_)) => node.prefix_items = self.compile_list(map.get("items"))?,
            Some(items) => node.items = Some(self.compile(items)?),
            None => {}
        }
        if map.contains_key("prefixItems") {
            node.prefix_items = self.compile_list(map.get("prefixItems"))?;
        }
        node.min_items = as_usize(map.get("minItems"));
        node.max_items = as_usize(map.get("maxItems"));
        node.any_of = self.compile_list(map.get("anyOf"))?;
        node.one_of = self.compile_list(map.get("oneOf"))?;
        node.all_of = self.compile_list(map.get("allOf"))?;
        Ok(node)
    }
}

/// The range of a fixed-width integer `format`.
fn integer_bounds(format: &str) -> Option<(f64, f64)> {
    Some(match format {
        "int8" => (i8::MIN as f64, i8::MAX as f64),
        "uint8" => (0.0, u8::MAX as f64),
        "int16" => (i16::MIN as f64, i16::MAX as f64),
        "uint16" => (0.0, u16::MAX as f64),
        "int32" => (i32::MIN as f64, i32::MAX as f64),
        "uint32" => (0.0, u32::MAX as f64),
        "int64" => (i64::MIN as f64, i64::MAX as f64),
        "uint" | "uint64" => (0.0, u64::MAX as f64),
        _ => return None,
    })
}

fn kind_mask(name: &str) -> Result<u8, SchemaError> {
    KINDS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(k, _, _)| {
            if *k == Kind::Number {
                Kind::Number as u8 | Kind::Integer as u8
            } else {
                *k as u8
            }
        })
        .ok_or_else(|| SchemaError(format!("unknown type {name:?}")))
}

fn push_pointer(path: &mut String, segment: &str) {
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

struct Walk<'s> {
    schema: &'s Schema,
    violations: Vec<Violation>,
}

impl Walk<'_> {
    fn fail(&mut self, path: &str, reason: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                path: path.to_owned(),
                reason,
            });
        }
    }

    fn check(&mut self, id: usize, value: &Value, path: &mut String) {
        let node = &self.schema.nodes[id];
        if let Some(target) = node.reference {
            self.check(target, value, path);
        }
        match node.always {
            Some(false) => return self.fail(path, "is not allowed".into()),
            Some(true) => return,
            None => {}
        }
        let kind = kind_of(value);
        if let Some(mask) = node.kinds {
            if mask & kind == 0 {
                let what = describe_kinds(mask);
                let reason = if path.is_empty() {
                    format!("expected {what}")
                } else {
                    format!("must be {what}")
                };
                return self.fail(path, reason);
            }
        }
        if let Some(c) = &node.constant {
            if c != value {
                return self.fail(path, format!("must be {c}"));
            }
        }
        if let Some(values) = &node.one_of_values {
            if !values.contains(value) {
                let list: Vec<String> = values.iter().map(Value::to_string).collect();
                return self.fail(path, format!("must be one of {}", list.join(", ")));
            }
        }
        match value {
            Value::String(s) => self.check_string(node, s, path),
            Value::Number(n) => self.check_number(node, n.as_f64().unwrap_or(f64::NAN), path),
            Value::Object(map) => self.check_object(node, map, path),
            Value::Array(items) => self.check_array(node, items, path),
            _ => {}
        }
        for &sub in &node.all_of {
            self.check(sub, value, path);
        }
        if !node.any_of.is_empty() {
            self.check_alternatives(&node.any_of, value, path, false);
        }
        if !node.one_of.is_empty() {
            self.check_alternatives(&node.one_of, value, path, true);
        }
    }

    fn check_string(&mut self, node: &Node, s: &str, path: &str) {
        let needs_len = node.min_length.is_some() || node.max_length.is_some();
        let len = if needs_len { s.chars().count() } else { 0 };
        if let Some(min) = node.min_length {
            if len < min {
                return self.fail(
                    path,
                    format!(
                        "must be at least {}",
                        plural(min, "character", "characters")
                    ),
                );
            }
        }
        if let Some(max) = node.max_length {
            if len > max {
                return self.fail(
                    path,
                    format!("must be at most {}", plural(max, "character", "characters")),
                );
            }
        }
        if let Some(format) = node.format {
            let checked = match format {
                Format::Topic => ori_core::Topic::validate(s),
                Format::ClientTopic => ori_core::Topic::validate(s).and_then(|()| {
                    if s.starts_with("__") {
                        Err(ori_core::TopicError::Reserved)
                    } else {
                        Ok(())
                    }
                }),
            };
            if let Err(e) = checked {
                return self.fail(path, e.to_string());
            }
        }
        if let Some((re, source)) = &node.pattern {
            if !re.is_match(s) {
                self.fail(path, format!("must match the pattern {source}"));
            }
        }
    }

    fn check_number(&mut self, node: &Node, n: f64, path: &str) {
        if let Some(min) = node.minimum {
            if n < min {
                return self.fail(path, format!("must be at least {}", number(min)));
            }
        }
        if let Some(max) = node.maximum {
            if n > max {
                return self.fail(path, format!("must be at most {}", number(max)));
            }
        }
        if let Some(min) = node.exclusive_minimum {
            if n <= min {
                return self.fail(path, format!("must be greater than {}", number(min)));
            }
        }
        if let Some(max) = node.exclusive_maximum {
            if n >= max {
                self.fail(path, format!("must be less than {}", number(max)));
            }
        }
    }

    fn check_object(&mut self, node: &Node, map: &Map<String, Value>, path: &mut String) {
        let len = path.len();
        for name in &node.required {
            if !map.contains_key(name) {
                push_pointer(path, name);
                self.fail(path, "is required".into());
                path.truncate(len);
            }
        }
        for (name, id) in &node.properties {
            if let Some(v) = map.get(name) {
                push_pointer(path, name);
                self.check(*id, v, path);
                path.truncate(len);
            }
        }
        if let Some(additional) = node.additional {
            for (name, v) in map {
                if node.properties.iter().any(|(p, _)| p == name) {
                    continue;
                }
                push_pointer(path, name);
                self.check(additional, v, path);
                path.truncate(len);
            }
        }
    }

    fn check_array(&mut self, node: &Node, items: &[Value], path: &mut String) {
        if let Some(min) = node.min_items {
            if items.len() < min {
                return self.fail(
                    path,
                    format!("must have at least {}", plural(min, "item", "items")),
                );
            }
        }
        if let Some(max) = node.max_items {
            if items.len() > max {
                return self.fail(
                    path,
                    format!("must have at most {}", plural(max, "item", "items")),
                );
            }
        }
        let len = path.len();
        for (i, item) in items.iter().enumerate() {
            let schema = node.prefix_items.get(i).copied().or(node.items);
            if let Some(schema) = schema {
                path.push('/');
                path.push_str(&i.to_string());
                self.check(schema, item, path);
                path.truncate(len);
            }
        }
    }

    fn check_alternatives(
        &mut self,
        branches: &[usize],
        value: &Value,
        path: &mut String,
        exactly_one: bool,
    ) {
        let mut failures = Vec::new();
        let mut matched = 0;
        for &b in branches {
            let mut sub = Walk {
                schema: self.schema,
                violations: Vec::new(),
            };
            sub.check(b, value, path);
            if sub.violations.is_empty() {
                matched += 1;
            } else {
                failures.push((b, sub.violations));
            }
        }
        if matched == 0 {
            // Report the branch meant for this kind of value (for `Option<T>`,
            // the `T` branch of a non-null value), else a summary.
            let kind = kind_of(value);
            let fitting: Vec<_> = failures
                .into_iter()
                .filter(|(b, _)| self.schema.accepts_kind(*b, kind))
                .collect();
            if let [(_, violations)] = fitting.as_slice() {
                for v in violations.clone() {
                    self.fail(&v.path, v.reason);
                }
            } else {
                self.fail(path, "must match one of the allowed shapes".into());
            }
        } else if exactly_one && matched > 1 {
            self.fail(path, "must match exactly one of the allowed shapes".into());
        }
    }
}

impl Schema {
    /// Compiles a JSON Schema document.
    pub fn compile(json: Value) -> Result<Self, SchemaError> {
        let mut compiler = Compiler {
            root: &json,
            nodes: Vec::new(),
            refs: HashMap::new(),
        };
        compiler.compile(&json)?;
        let nodes = compiler.nodes;
        Ok(Self { json, nodes })
    }

    /// The compiled schema of `T` (computed once per type, then shared).
    pub fn of<T: JsonSchema + 'static>() -> Arc<Schema> {
        static CACHE: OnceLock<RwLock<HashMap<TypeId, Arc<Schema>>>> = OnceLock::new();
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
        // Schemas generated by schemars use only keywords this validator
        // knows; a failure here is a bug in a hand-written JsonSchema impl,
        // and degrades to accepting everything rather than failing at run time.
        let schema = Arc::new(Self::compile(json.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot compile message schema; accepting any value");
            Self {
                json,
                nodes: vec![Node {
                    always: Some(true),
                    ..Node::default()
                }],
            }
        }));
        cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, schema.clone());
        schema
    }

    /// The JSON Schema document.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Checks `value`.
    pub fn validate(&self, value: &Value) -> Result<(), ValidationError> {
        let mut walk = Walk {
            schema: self,
            violations: Vec::new(),
        };
        let mut path = String::new();
        walk.check(0, value, &mut path);
        if walk.violations.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                violations: walk.violations,
            })
        }
    }

    /// Checks `value`, then deserializes it.
    pub fn parse<T: DeserializeOwned>(&self, value: Value) -> Result<T, ValidationError> {
        self.validate(&value)?;
        serde_json::from_value(value).map_err(|e| ValidationError::single("", e.to_string()))
    }

    /// Checks `value`, then deserializes `T` from it without taking it.
    pub fn parse_ref<T: DeserializeOwned>(&self, value: &Value) -> Result<T, ValidationError> {
        self.validate(value)?;
        T::deserialize(value).map_err(|e| ValidationError::single("", e.to_string()))
    }

    fn accepts_kind(&self, id: usize, kind: u8) -> bool {
        let node = &self.nodes[id];
        if let Some(target) = node.reference {
            return self.accepts_kind(target, kind);
        }
        node.kinds.is_none_or(|mask| mask & kind != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    #[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Status {
        Online,
        Offline,
    }

    #[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        #[schemars(range(min = 1, max = 10))]
        level: u8,
    }

    #[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Update {
        status: Status,
        #[schemars(length(min = 1, max = 5))]
        name: String,
        last_seen: Option<f64>,
        tags: Vec<String>,
        inner: Option<Inner>,
        #[schemars(length(min = 1))]
        ids: Vec<u32>,
    }

    fn schema() -> Arc<Schema> {
        Schema::of::<Update>()
    }

    fn errors(v: Value) -> String {
        schema().validate(&v).unwrap_err().to_string()
    }

    fn valid() -> Value {
        json!({"status": "online", "name": "ann", "lastSeen": 1.5, "tags": ["a"], "inner": {"level": 3}, "ids": [1]})
    }

    #[test]
    fn valid_values_pass_and_parse() {
        let v = valid();
        let parsed: Update = schema().parse(v).unwrap();
        assert_eq!(parsed.status, Status::Online);
        let mut minimal = valid();
        minimal.as_object_mut().unwrap().remove("lastSeen");
        minimal["inner"] = Value::Null;
        assert!(schema().validate(&minimal).is_ok());
    }

    #[test]
    fn each_kind_of_violation_is_named_with_its_path() {
        let mut v = valid();
        v["status"] = json!("away");
        assert_eq!(errors(v), r#"/status: must be one of "online", "offline""#);
        let mut v = valid();
        v["name"] = json!("");
        assert_eq!(errors(v), "/name: must be at least 1 character");
        let mut v = valid();
        v["name"] = json!("toolong");
        assert_eq!(errors(v), "/name: must be at most 5 characters");
        let mut v = valid();
        v["lastSeen"] = json!("yesterday");
        assert_eq!(errors(v), "/lastSeen: must be a number or null");
        let mut v = valid();
        v["tags"] = json!(["a", 2]);
        assert_eq!(errors(v), "/tags/1: must be a string");
        let mut v = valid();
        v["inner"] = json!({"level": 11});
        assert_eq!(errors(v), "/inner/level: must be at most 10");
        let mut v = valid();
        v["inner"] = json!({});
        assert_eq!(errors(v), "/inner/level: is required");
        let mut v = valid();
        v["ids"] = json!([]);
        assert_eq!(errors(v), "/ids: must have at least 1 item");
        let mut v = valid();
        v["ids"] = json!([-1]);
        assert!(errors(v).starts_with("/ids/0: must be at least 0"));
        assert_eq!(errors(json!([])), "expected an object");
    }

    #[test]
    fn several_violations_are_joined() {
        let e = errors(json!({"status": "x", "tags": []}));
        assert_eq!(
            e,
            r#"/name: is required, /ids: is required, /status: must be one of "online", "offline""#
        );
    }

    #[test]
    fn topic_formats_and_escaped_pointers() {
        let s = Schema::compile(json!({
            "type": "object",
            "properties": {"a/b": {"type": "string", "format": FORMAT_CLIENT_TOPIC}},
            "additionalProperties": false
        }))
        .unwrap();
        assert_eq!(
            s.validate(&json!({"a/b": "__x"})).unwrap_err().to_string(),
            "/a~1b: reserved topic"
        );
        assert_eq!(
            s.validate(&json!({"a/b": "ok", "z": 1}))
                .unwrap_err()
                .to_string(),
            "/z: is not allowed"
        );
    }

    #[test]
    fn recursive_refs_terminate() {
        #[derive(Serialize, Deserialize, JsonSchema)]
        struct Tree {
            children: Vec<Tree>,
        }
        let s = Schema::of::<Tree>();
        assert!(s.validate(&json!({"children": [{"children": []}]})).is_ok());
        assert_eq!(
            s.validate(&json!({"children": [{"children": [1]}]}))
                .unwrap_err()
                .to_string(),
            "/children/0/children/0: must be an object"
        );
    }
}

//! Violations and their wording: `jsonschema`'s errors (a kind and a JSON
//! Pointer to the instance) rendered as PROTOCOL.md section 3 shows them.
//!
//! One violation per path, the most basic one (a wrong type hides the
//! enum, a length the format), at most [`MAX_VIOLATIONS`]. Each object's
//! missing required members come before its other violations (those of
//! the object itself and of its members); an object nested in a later
//! member comes after an earlier sibling's violations.

use std::collections::HashMap;
use std::fmt;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, JsonTypeSet};
use serde_json::Value;

use super::formats::{push_pointer, INTEGER_KEYWORD};
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
    /// One violation at `path` (a JSON Pointer, `""` for the whole value):
    /// for checks of your own that answer as the schema's do.
    ///
    /// ```
    /// use ori::messages::ValidationError;
    ///
    /// assert_eq!(ValidationError::new("/title", "is required").to_string(), "/title: is required");
    /// assert_eq!(ValidationError::new("", "title is required").to_string(), "title is required");
    /// ```
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            violations: vec![Violation {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }

    /// The violations: in each object, its missing required fields first,
    /// then the others field by field.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
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

/// A violation being collected: which one wins at its path, and whether it
/// is a missing required member (listed first).
struct Found {
    violation: Violation,
    rank: u8,
    required: bool,
}

/// Violations being collected, then worded, ordered and bounded by
/// [`Collector::finish`].
#[derive(Default)]
pub(super) struct Collector {
    found: Vec<Found>,
    /// Index in `found` by path.
    at: HashMap<String, usize>,
    /// Prepended to every error's path: where the checked value sits in
    /// the whole one.
    prefix: String,
}

impl Collector {
    /// Adds the errors of a check of the value at `prefix` (a JSON Pointer).
    pub(super) fn errors<'a>(
        &mut self,
        prefix: &str,
        errors: impl Iterator<Item = jsonschema::ValidationError<'a>>,
    ) {
        prefix.clone_into(&mut self.prefix);
        for e in errors {
            self.add(&e);
        }
        self.prefix.clear();
    }

    /// Adds a missing required member at `path`.
    pub(super) fn missing(&mut self, path: String) {
        self.push(path, "is required".into(), 0, true);
    }

    /// Adds a violation worded by the caller.
    pub(super) fn violation(&mut self, path: String, reason: String) {
        self.push(path, reason, 4, false);
    }

    /// Whether nothing was found.
    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    fn push(&mut self, path: String, reason: String, rank: u8, required: bool) {
        if let Some(&i) = self.at.get(&path) {
            let f = &mut self.found[i];
            if rank < f.rank {
                f.violation.reason = reason;
                f.rank = rank;
            }
            return;
        }
        self.at.insert(path.clone(), self.found.len());
        self.found.push(Found {
            violation: Violation { path, reason },
            rank,
            required,
        });
    }

    fn add(&mut self, error: &jsonschema::ValidationError<'_>) {
        let raw = error.instance_path().as_str();
        let full = if self.prefix.is_empty() {
            raw.to_owned()
        } else {
            format!("{}{raw}", self.prefix)
        };
        let path = full.as_str();
        let mut at = |reason: String, rank: u8| self.push(path.to_owned(), reason, rank, false);
        match error.kind() {
            ValidationErrorKind::Type { kind } => {
                let set = match kind {
                    TypeKind::Single(t) => JsonTypeSet::from(*t),
                    TypeKind::Multiple(set) => *set,
                };
                at(expected(path, &describe_set(set)), 0);
            }
            ValidationErrorKind::Custom { keyword, message } if keyword == INTEGER_KEYWORD => {
                at(expected(path, message), 0);
            }
            ValidationErrorKind::Custom { message, .. } => at(message.clone(), 4),
            ValidationErrorKind::FalseSchema => at("is not allowed".into(), 0),
            ValidationErrorKind::Required { property } => {
                let mut child = path.to_owned();
                push_pointer(&mut child, property.as_str().unwrap_or_default());
                self.push(child, "is required".into(), 0, true);
            }
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    let mut child = path.to_owned();
                    push_pointer(&mut child, name);
                    self.push(child, "is not allowed".into(), 0, false);
                }
            }
            ValidationErrorKind::Constant { expected_value } => {
                at(format!("must be {expected_value}"), 1);
            }
            ValidationErrorKind::Enum { options } => {
                let list: Vec<String> = options
                    .as_array()
                    .map(|o| o.iter().map(Value::to_string).collect())
                    .unwrap_or_default();
                at(format!("must be one of {}", list.join(", ")), 1);
            }
            ValidationErrorKind::MinLength { limit } => {
                at(format!("must be at least {}", characters(*limit)), 2);
            }
            ValidationErrorKind::MaxLength { limit } => {
                at(format!("must be at most {}", characters(*limit)), 2);
            }
            ValidationErrorKind::MinItems { limit } => {
                at(format!("must have at least {}", items(*limit)), 2);
            }
            ValidationErrorKind::MaxItems { limit } => {
                at(format!("must have at most {}", items(*limit)), 2);
            }
            ValidationErrorKind::AdditionalItems { limit } => {
                at(format!("must have at most {}", items(*limit as u64)), 2);
            }
            ValidationErrorKind::MinProperties { limit } => {
                at(format!("must have at least {}", properties(*limit)), 2);
            }
            ValidationErrorKind::MaxProperties { limit } => {
                at(format!("must have at most {}", properties(*limit)), 2);
            }
            ValidationErrorKind::Minimum { limit } => {
                at(format!("must be at least {}", number(limit)), 2);
            }
            ValidationErrorKind::Maximum { limit } => {
                at(format!("must be at most {}", number(limit)), 2);
            }
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                at(format!("must be greater than {}", number(limit)), 2);
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                at(format!("must be less than {}", number(limit)), 2);
            }
            ValidationErrorKind::MultipleOf { multiple_of } => {
                let n = serde_json::Number::from_f64(*multiple_of).map(Value::Number);
                let n = n.as_ref().map_or_else(|| multiple_of.to_string(), number);
                at(format!("must be a multiple of {n}"), 3);
            }
            ValidationErrorKind::Format { format } => {
                at(format_reason(format, error.instance().as_str()), 3);
            }
            ValidationErrorKind::Pattern { pattern } => {
                at(format!("must match the pattern {pattern}"), 4);
            }
            ValidationErrorKind::BacktrackLimitExceeded { .. }
            | ValidationErrorKind::RegexEngineFailure { .. } => {
                at("cannot be checked against its pattern".into(), 4);
            }
            ValidationErrorKind::UniqueItems => at("must not contain duplicate items".into(), 3),
            ValidationErrorKind::Contains => at("must contain a matching item".into(), 4),
            ValidationErrorKind::UnevaluatedItems { .. } => {
                at("must not have more items".into(), 4);
            }
            ValidationErrorKind::Not { .. } => {
                at("must not match the disallowed shape".into(), 4);
            }
            ValidationErrorKind::PropertyNames { error } => {
                let name = error.instance().as_str().unwrap_or_default().to_owned();
                let mut inner = Collector::default();
                inner.add(error);
                let why = inner
                    .found
                    .first()
                    .map_or_else(String::new, |f| f.violation.reason.clone());
                at(format!("property name {name:?}: {why}"), 4);
            }
            ValidationErrorKind::ContentEncoding { content_encoding } => {
                at(format!("must be {content_encoding}-encoded"), 3);
            }
            ValidationErrorKind::FromUtf8 { .. } => {
                at("must decode to UTF-8 text".into(), 3);
            }
            ValidationErrorKind::ContentMediaType { content_media_type } => {
                at(format!("must be {content_media_type}"), 3);
            }
            ValidationErrorKind::Referencing(e) => at(format!("cannot be checked: {e}"), 4),
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                self.alternatives(path, raw, context);
            }
            ValidationErrorKind::OneOfMultipleValid { .. } => {
                at("must match exactly one of the allowed shapes".into(), 4);
            }
        }
    }

    /// No branch of an `anyOf`/`oneOf` matched: the violations of the one
    /// branch meant for this kind of value (for `Option<T>`, the `T`
    /// branch of a non-null value), else a summary. `raw` is `path`
    /// without the collector's prefix, as the branches' errors name it.
    fn alternatives(
        &mut self,
        path: &str,
        raw: &str,
        branches: &[Vec<jsonschema::ValidationError<'static>>],
    ) {
        let wrong_kind = |e: &jsonschema::ValidationError<'_>| {
            e.instance_path().as_str() == raw
                && match e.kind() {
                    ValidationErrorKind::Type { .. } => true,
                    ValidationErrorKind::Custom { keyword, .. } => keyword == INTEGER_KEYWORD,
                    _ => false,
                }
        };
        let mut fitting = branches
            .iter()
            .filter(|errors| !errors.iter().any(wrong_kind));
        match (fitting.next(), fitting.next()) {
            (Some(errors), None) if !errors.is_empty() => {
                for e in errors {
                    self.add(e);
                }
            }
            _ => self.push(
                path.to_owned(),
                "must match one of the allowed shapes".into(),
                4,
                false,
            ),
        }
    }
}

impl Collector {
    /// The violations, ordered and bounded: as found, except that each
    /// object's missing required members move before the first violation
    /// found in the object (at its path or under it), an outer object's
    /// before an inner one's, so the order is the old validator's walk:
    /// an object's required members, then its members one by one.
    pub(super) fn finish(self) -> ValidationError {
        // The index of the first violation found at or under each path.
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, f) in self.found.iter().enumerate() {
            let path = f.violation.path.as_str();
            let ends = path.match_indices('/').map(|(at, _)| at);
            for end in ends.chain([path.len()]) {
                first.entry(&path[..end]).or_insert(i);
            }
        }
        let mut keys: Vec<(usize, u8, usize, usize)> = self
            .found
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let path = f.violation.path.as_str();
                if f.required {
                    let object = &path[..path.rfind('/').unwrap_or(0)];
                    let depth = object.matches('/').count();
                    (first.get(object).copied().unwrap_or(i), 0, depth, i)
                } else {
                    (i, 1, 0, i)
                }
            })
            .collect();
        keys.sort_unstable();
        let mut found: Vec<Option<Found>> = self.found.into_iter().map(Some).collect();
        let mut violations: Vec<Found> =
            keys.iter().filter_map(|&(.., i)| found[i].take()).collect();
        if violations.is_empty() {
            // Not reached: an invalid value has at least one error.
            violations.push(Found {
                violation: Violation {
                    path: String::new(),
                    reason: "is not valid".into(),
                },
                rank: 0,
                required: false,
            });
        }
        ValidationError {
            violations: violations
                .into_iter()
                .take(MAX_VIOLATIONS)
                .map(|f| f.violation)
                .collect(),
        }
    }
}

/// The violations of `errors`, worded, ordered and bounded.
pub(super) fn collect<'a>(
    errors: impl Iterator<Item = jsonschema::ValidationError<'a>>,
) -> ValidationError {
    let mut collector = Collector::default();
    collector.errors("", errors);
    collector.finish()
}

/// `must be <what>`, or `expected <what>` for the whole value.
fn expected(path: &str, what: &str) -> String {
    if path.is_empty() {
        format!("expected {what}")
    } else {
        format!("must be {what}")
    }
}

const TYPES: [(JsonType, &str, &str); 7] = [
    (JsonType::String, "string", "a string"),
    (JsonType::Integer, "integer", "an integer"),
    (JsonType::Number, "number", "a number"),
    (JsonType::Boolean, "boolean", "a boolean"),
    (JsonType::Object, "object", "an object"),
    (JsonType::Array, "array", "an array"),
    (JsonType::Null, "null", "null"),
];

/// `a string or null`; "integer or number" reads as "number".
fn describe_set(set: JsonTypeSet) -> String {
    let number = set.contains(JsonType::Number);
    let names: Vec<&str> = TYPES
        .iter()
        .filter(|(t, _, _)| set.contains(*t) && !(*t == JsonType::Integer && number))
        .map(|(_, _, article)| *article)
        .collect();
    names.join(" or ")
}

/// [`describe_set`] of a schema's `type` keyword.
pub(super) fn describe_types(types: Option<&Value>) -> String {
    let names: Vec<&str> = match types {
        Some(Value::String(t)) => vec![t],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let set = TYPES
        .iter()
        .filter(|(_, name, _)| names.contains(name))
        .fold(JsonTypeSet::empty(), |set, (t, _, _)| set.insert(*t));
    describe_set(set)
}

fn format_reason(format: &str, value: Option<&str>) -> String {
    let value = value.unwrap_or_default();
    let topic = match format {
        FORMAT_TOPIC => ori_core::Topic::validate(value),
        FORMAT_CLIENT_TOPIC => ori_core::Topic::validate_client(value),
        _ => return format!("must be a valid {format}"),
    };
    match topic {
        Err(e) => e.to_string(),
        Ok(()) => "must be a valid topic".into(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn characters(n: u64) -> String {
    plural(n, "character", "characters")
}

fn items(n: u64) -> String {
    plural(n, "item", "items")
}

fn properties(n: u64) -> String {
    plural(n, "property", "properties")
}

/// A bound as the old validator wrote it: `1`, `-50`, `1.5`, an integral
/// float without its `.0`, a large one in full (`1e20` as
/// `100000000000000000000`); integer bounds are read as `f64` too.
fn number(limit: &Value) -> String {
    let n = limit.as_f64().unwrap_or(f64::NAN);
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

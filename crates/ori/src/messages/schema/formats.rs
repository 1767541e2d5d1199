//! How a schema is compiled: the validator's options, the `format`s it
//! checks, and the copy of the schema it compiles.
//!
//! Every `format` is checked (draft 2020-12 makes them annotations by
//! default; here they assert) or the schema does not compile:
//!
//! - the standard ones (`email`, `date-time`, `uuid`, `uri`, `ipv4`, ...),
//!   by `jsonschema`; `idn-hostname` and `idn-email` are not built in, so
//!   they do not compile;
//! - [`FORMAT_TOPIC`] and [`FORMAT_CLIENT_TOPIC`], by [`ori_core::Topic`];
//! - those schemars writes for Rust types: `ip`, `partial-date-time`,
//!   `partial-time` and `zoned-date-time` are checked here; the integer
//!   ones (`int8` ... `uint64`, `int`, `uint`, `uint128`) become the
//!   type's `minimum` and `maximum`, so a value the Rust type cannot hold
//!   fails with its path; `float`, `double` and `int128` check nothing
//!   (serde reads any JSON number serde_json holds into them);
//! - any other format is unknown: the schema does not compile rather than
//!   go unchecked.
//!
//! `contentEncoding`, `contentMediaType` and `contentSchema` are refused
//! too: `jsonschema` treats them as annotations (draft 2019-09 and later)
//! or ignores unknown encodings and media types, so a schema using them
//! would accept what it seems to forbid.
//!
//! JSON Schema counts `30.0` as an integer, serde does not: the compiled
//! copy adds [`INTEGER_KEYWORD`] beside every `type` that allows integers
//! but not numbers, so such a value fails with its path too.

use std::sync::OnceLock;

use serde_json::{json, Map, Number, Value};

use super::{SchemaError, FORMAT_CLIENT_TOPIC, FORMAT_TOPIC};

/// The keyword of the compiled copy that refuses integral floats (`30.0`)
/// where the schema allows integers only. Its error message is the type
/// the schema asks for (`an integer or null`).
pub(super) const INTEGER_KEYWORD: &str = "x-ori-integer";

/// Keywords that check nothing here, so that a schema holding one does not
/// compile.
const UNCHECKED_KEYWORDS: [&str; 3] = ["contentEncoding", "contentMediaType", "contentSchema"];

/// Formats of numbers: `jsonschema` checks formats of strings only, so
/// these are registered as checking nothing, and [`prepare`] adds the
/// integer ones' bounds as keywords.
const NUMBER_FORMATS: [&str; 14] = [
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "int", "uint",
    "int128", "uint128", "float", "double",
];

/// The range of an integer `format` (`None` for a bound no JSON number
/// that serde can read goes past).
fn integer_bounds(format: &str) -> Option<(Option<Number>, Option<Number>)> {
    let signed = |min: i64, max: i64| (Some(min.into()), Some(max.into()));
    let unsigned = |max: u64| (Some(0.into()), Some(max.into()));
    Some(match format {
        "int8" => signed(i8::MIN.into(), i8::MAX.into()),
        "int16" => signed(i16::MIN.into(), i16::MAX.into()),
        "int32" => signed(i32::MIN.into(), i32::MAX.into()),
        "int64" | "int" => signed(i64::MIN, i64::MAX),
        "uint8" => unsigned(u8::MAX.into()),
        "uint16" => unsigned(u16::MAX.into()),
        "uint32" => unsigned(u32::MAX.into()),
        "uint64" | "uint" => unsigned(u64::MAX),
        "uint128" => (Some(0.into()), None),
        _ => return None,
    })
}

/// Compiles `schema` (a prepared copy of it) with Ori's options.
pub(super) fn build(schema: &Value) -> Result<jsonschema::Validator, SchemaError> {
    let options = options();
    let mut copy = schema.clone();
    prepare(&mut copy, &mut String::new(), &options)?;
    options.build(&copy).map_err(|e| {
        // Checked against its meta-schema, the schema is the instance.
        let at = e.instance_path().as_str();
        if at.is_empty() {
            SchemaError(e.to_string())
        } else {
            SchemaError(format!("{e} (at {at})"))
        }
    })
}

fn options() -> jsonschema::ValidationOptions<'static> {
    let mut options = jsonschema::options()
        // `$ref`s resolve inside the document, never over the network or
        // from files.
        .offline()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .with_format(FORMAT_TOPIC, |s: &str| ori_core::Topic::validate(s).is_ok())
        .with_format(FORMAT_CLIENT_TOPIC, |s: &str| {
            ori_core::Topic::validate_client(s).is_ok()
        })
        .with_format("ip", |s: &str| s.parse::<std::net::IpAddr>().is_ok())
        .with_format("partial-date-time", |s: &str| {
            is_date_time(&format!("{s}Z"))
        })
        .with_format("partial-time", |s: &str| {
            is_date_time(&format!("1970-01-01T{s}Z"))
        })
        .with_format("zoned-date-time", is_zoned_date_time)
        .with_keyword(INTEGER_KEYWORD, |parent, _, _| {
            Ok(Box::new(IntegerOnly {
                expected: super::reasons::describe_types(parent.get("type")),
            }))
        });
    for name in NUMBER_FORMATS {
        // Strings carrying a number format are not constrained by it.
        options = options.with_format(name, |_: &str| true);
    }
    options
}

/// Adds what the compiled copy checks beyond the document: integer bounds
/// and [`INTEGER_KEYWORD`]. Walks only schema positions, so a `const`,
/// `enum` or `default` value holding a `format` member stays as it is.
fn prepare(
    schema: &mut Value,
    at: &mut String,
    options: &jsonschema::ValidationOptions<'static>,
) -> Result<(), SchemaError> {
    let Value::Object(map) = schema else {
        return Ok(());
    };
    if let Some(key) = UNCHECKED_KEYWORDS.iter().find(|k| map.contains_key(**k)) {
        return Err(SchemaError(format!(
            "{key} is not enforced, so it is refused (at {at}/{key})"
        )));
    }
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        // The compiler would refuse it too, with advice about its options.
        if !options.is_known_format(jsonschema::Draft::Draft202012, format) {
            return Err(SchemaError(format!(
                "unknown format {format:?} (at {at}/format)"
            )));
        }
        if let Some((min, max)) = integer_bounds(format) {
            tighten(map, "minimum", min, |new, old| new > old);
            tighten(map, "maximum", max, |new, old| new < old);
        }
    }
    if integers_only(map.get("type")) {
        map.insert(INTEGER_KEYWORD.into(), Value::Bool(true));
    }
    let len = at.len();
    for (key, sub) in map.iter_mut() {
        push_pointer(at, key);
        match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
            | "dependencies" => {
                if let Value::Object(subs) = sub {
                    let inner = at.len();
                    for (name, s) in subs.iter_mut() {
                        push_pointer(at, name);
                        prepare(s, at, options)?;
                        at.truncate(inner);
                    }
                }
            }
            "items" | "prefixItems" | "allOf" | "anyOf" | "oneOf" => match sub {
                Value::Array(subs) => {
                    let inner = at.len();
                    for (i, s) in subs.iter_mut().enumerate() {
                        push_pointer(at, &i.to_string());
                        prepare(s, at, options)?;
                        at.truncate(inner);
                    }
                }
                s => prepare(s, at, options)?,
            },
            "additionalProperties"
            | "unevaluatedProperties"
            | "additionalItems"
            | "unevaluatedItems"
            | "contains"
            | "propertyNames"
            | "not"
            | "if"
            | "then"
            | "else" => prepare(sub, at, options)?,
            _ => {}
        }
        at.truncate(len);
    }
    Ok(())
}

/// Appends `/segment` to a JSON Pointer, escaped.
pub(super) fn push_pointer(path: &mut String, segment: &str) {
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Sets `map[key]` to `bound` unless it already holds a tighter one
/// (`tighter(bound, existing)` false).
fn tighten(
    map: &mut Map<String, Value>,
    key: &str,
    bound: Option<Number>,
    tighter: fn(f64, f64) -> bool,
) {
    let Some(bound) = bound else { return };
    let replace = match map.get(key).and_then(Value::as_f64) {
        Some(old) => bound.as_f64().is_some_and(|new| tighter(new, old)),
        None => true,
    };
    if replace {
        map.insert(key.to_owned(), Value::Number(bound));
    }
}

/// Whether `type` allows integers and no other numbers.
fn integers_only(types: Option<&Value>) -> bool {
    let names: Vec<&str> = match types {
        Some(Value::String(t)) => vec![t],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return false,
    };
    names.contains(&"integer") && !names.contains(&"number")
}

/// [`INTEGER_KEYWORD`]: a number must be written as an integer.
struct IntegerOnly {
    expected: String,
}

impl IntegerOnly {
    fn accepts(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_i64() || n.is_u64(),
            _ => true, // `type` judges the other kinds
        }
    }
}

impl<'i> jsonschema::Keyword<'i> for IntegerOnly {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if Self::accepts(instance) {
            Ok(())
        } else {
            Err(jsonschema::ValidationError::custom(self.expected.clone()))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        Self::accepts(instance)
    }
}

/// An RFC 3339 `date-time`, as `jsonschema` checks the standard format.
fn is_date_time(s: &str) -> bool {
    static CHECK: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            jsonschema::options()
                .should_validate_formats(true)
                .build(&json!({ "type": "string", "format": "date-time" }))
                .ok()
        })
        .as_ref()
        .is_some_and(|v| v.is_valid(&Value::String(s.to_owned())))
}

/// An RFC 9557 date-time: an RFC 3339 `date-time` followed by one or more
/// bracketed annotations (`2024-06-19T15:22:45-04:00[America/New_York]`).
fn is_zoned_date_time(s: &str) -> bool {
    let Some((date_time, mut rest)) = s.find('[').map(|i| s.split_at(i)) else {
        return false;
    };
    if !is_date_time(date_time) {
        return false;
    }
    while let Some(tail) = rest.strip_prefix('[') {
        let Some((annotation, after)) = tail.split_once(']') else {
            return false;
        };
        if annotation.is_empty() || annotation.contains('[') {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::*;

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
    Schema::of::<Update>().unwrap()
}

fn errors(v: Value) -> String {
    schema().validate(&v).unwrap_err().to_string()
}

fn valid() -> Value {
    json!({"status": "online", "name": "ann", "lastSeen": 1.5, "tags": ["a"], "inner": {"level": 3}, "ids": [1]})
}

fn compiled(schema: Value) -> Schema {
    Schema::compile(schema).unwrap()
}

fn reasons(schema: &Schema, v: Value) -> String {
    schema.validate(&v).unwrap_err().to_string()
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
    let s = compiled(json!({
        "type": "object",
        "properties": {"a/b": {"type": "string", "format": FORMAT_CLIENT_TOPIC}},
        "additionalProperties": false
    }));
    assert_eq!(reasons(&s, json!({"a/b": "__x"})), "/a~1b: reserved topic");
    assert_eq!(
        reasons(&s, json!({"a/b": "ok", "z": 1})),
        "/z: is not allowed"
    );
    let any = compiled(json!({"type": "string", "format": FORMAT_TOPIC}));
    assert!(any.validate(&json!("__broadcast__")).is_ok());
    assert_eq!(
        reasons(&any, json!("a b")),
        "must contain only A-Z a-z 0-9 _ : . -"
    );
}

#[test]
fn recursive_refs_terminate() {
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Tree {
        children: Vec<Tree>,
    }
    let s = Schema::of::<Tree>().unwrap();
    assert!(s.validate(&json!({"children": [{"children": []}]})).is_ok());
    assert_eq!(
        s.validate(&json!({"children": [{"children": [1]}]}))
            .unwrap_err()
            .to_string(),
        "/children/0/children/0: must be an object"
    );
}

#[test]
fn keywords_the_old_validator_ignored_are_enforced() {
    let s = compiled(json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "multipleOf": 5},
            "tags": {"type": "array", "uniqueItems": true},
            "name": {"type": "string", "not": {"const": "root"}},
            "meta": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 2,
                "patternProperties": {"^x-": {"type": "string"}}
            },
            "kind": {"enum": ["a", "b"]},
            "size": {"type": "integer"}
        },
        "if": {"properties": {"kind": {"const": "a"}}, "required": ["kind"]},
        "then": {"required": ["size"]},
        "else": {"properties": {"size": {"maximum": 3}}}
    }));
    assert!(s
        .validate(&json!({"n": 10, "tags": [1, 2], "name": "ann", "meta": {"x-a": "1"}, "kind": "a", "size": 9}))
        .is_ok());
    assert_eq!(reasons(&s, json!({"n": 12})), "/n: must be a multiple of 5");
    assert_eq!(
        reasons(&s, json!({"tags": [1, 1]})),
        "/tags: must not contain duplicate items"
    );
    assert_eq!(
        reasons(&s, json!({"name": "root"})),
        "/name: must not match the disallowed shape"
    );
    assert_eq!(
        reasons(&s, json!({"meta": {}})),
        "/meta: must have at least 1 property"
    );
    assert_eq!(
        reasons(&s, json!({"meta": {"a": 1, "b": 2, "c": 3}})),
        "/meta: must have at most 2 properties"
    );
    assert_eq!(
        reasons(&s, json!({"meta": {"x-a": 1}})),
        "/meta/x-a: must be a string"
    );
    // if/then: kind "a" needs a size; else: the size is at most 3.
    assert_eq!(reasons(&s, json!({"kind": "a"})), "/size: is required");
    assert_eq!(
        reasons(&s, json!({"kind": "b", "size": 4})),
        "/size: must be at most 3"
    );
}

#[test]
fn standard_formats_are_checked() {
    let s = compiled(json!({
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ip"},
            "local": {"type": "string", "format": "partial-date-time"},
            "zoned": {"type": "string", "format": "zoned-date-time"}
        }
    }));
    assert!(s
        .validate(&json!({
            "email": "ann@example.com",
            "at": "2024-06-19T15:22:45Z",
            "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
            "ip": "::1",
            "local": "2024-06-19T15:22:45",
            "zoned": "2024-06-19T15:22:45-04:00[America/New_York]"
        }))
        .is_ok());
    assert_eq!(
        reasons(
            &s,
            json!({"email": "ann", "at": "yesterday", "id": "x", "ip": "1.2.3", "local": "2024-06-19T15:22:45Z", "zoned": "2024-06-19T15:22:45Z"})
        ),
        "/at: must be a valid date-time, /email: must be a valid email, /id: must be a valid uuid, \
         /ip: must be a valid ip, /local: must be a valid partial-date-time, \
         /zoned: must be a valid zoned-date-time"
    );
}

#[test]
fn schemas_that_do_not_compile_are_errors() {
    for (schema, why) in [
        (json!({"type": "string", "pattern": "("}), "pattern"),
        (json!({"$ref": "#/$defs/Missing"}), "Missing"),
        (json!({"$ref": "https://example.com/s.json"}), "example.com"),
        (
            json!({"properties": {"z": {"type": "string", "format": "zip-code"}}}),
            r#"unknown format "zip-code" (at /properties/z/format)"#,
        ),
        (json!({"type": "strin"}), "strin"),
        (
            json!({"minLength": -1}),
            "less than the minimum of 0 (at /minLength)",
        ),
        (
            json!({"properties": {"a": {"pattern": "("}}}),
            r#""(" is not a "regex" (at /properties/a/pattern)"#,
        ),
    ] {
        let err = Schema::compile(schema.clone()).unwrap_err().to_string();
        assert!(err.starts_with("invalid schema: "), "{schema}: {err}");
        assert!(err.contains(why), "{schema}: {err}");
    }
}

#[test]
fn a_schema_error_is_cached_with_its_type() {
    struct Broken;
    impl JsonSchema for Broken {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Broken".into()
        }
        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({"type": "string", "pattern": "(["})
        }
    }
    let first = Schema::of::<Broken>().unwrap_err();
    assert_eq!(Schema::of::<Broken>().unwrap_err(), first);
    assert!(Arc::ptr_eq(
        &Schema::of::<Update>().unwrap(),
        &Schema::of::<Update>().unwrap()
    ));
}

#[test]
fn integer_formats_bound_and_integral_floats_are_refused() {
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct N {
        small: u8,
        big: u64,
        maybe: Option<i32>,
    }
    let s = Schema::of::<N>().unwrap();
    assert!(s
        .validate(&json!({"small": 255, "big": u64::MAX, "maybe": null}))
        .is_ok());
    assert_eq!(
        reasons(
            &s,
            json!({"small": 256, "big": -1, "maybe": 2_147_483_648u64})
        ),
        "/big: must be at least 0, /maybe: must be at most 2147483647, /small: must be at most 255"
    );
    assert_eq!(
        reasons(&s, json!({"small": 30.0, "big": 1e2, "maybe": 1.0})),
        "/big: must be an integer, /maybe: must be an integer or null, /small: must be an integer"
    );
    // A `const` holding a `format` member is a value, not a schema.
    let c = compiled(json!({"const": {"format": "int8", "n": 300}}));
    assert!(c.validate(&json!({"format": "int8", "n": 300})).is_ok());
}

#[test]
fn alternatives_report_the_fitting_branch_or_a_summary() {
    let s = compiled(json!({
        "oneOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "integer", "minimum": 10}
        ]
    }));
    assert_eq!(reasons(&s, json!(3)), "must be at least 10");
    assert_eq!(reasons(&s, json!({})), "/a: is required");
    assert_eq!(
        reasons(&s, json!("x")),
        "must match one of the allowed shapes"
    );
    let both = compiled(json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}));
    assert_eq!(
        reasons(&both, json!(1)),
        "must match exactly one of the allowed shapes"
    );
}

#[test]
fn at_most_sixteen_violations() {
    let s = compiled(json!({"type": "array", "items": {"type": "string"}}));
    let e = s.validate(&json!((0..40).collect::<Vec<_>>())).unwrap_err();
    assert_eq!(e.violations().len(), 16);
    assert_eq!(e.violations()[15].path, "/15");
}

#[test]
fn a_large_invalid_value_reports_its_first_violation() {
    let s = compiled(json!({"type": "array", "items": {"type": "string"}}));
    let small: Vec<u32> = (0..4000).collect();
    assert_eq!(
        s.validate(&json!(small)).unwrap_err().violations().len(),
        16
    );
    let large: Vec<u32> = (0..100_000).collect();
    let e = s.validate(&json!(large)).unwrap_err();
    assert_eq!(e.to_string(), "/0: must be a string");
    let valid: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    assert!(s.validate(&json!(valid)).is_ok());
}

#[test]
fn a_nested_objects_missing_members_follow_an_earlier_siblings_violation() {
    let mut v = valid();
    v["ids"] = json!([-1]);
    v["inner"] = json!({});
    assert_eq!(
        errors(v),
        "/ids/0: must be at least 0, /inner/level: is required"
    );
    // An object's own missing members still come first.
    let e = errors(json!({"status": "x", "tags": [], "inner": {}, "ids": [-1]}));
    assert_eq!(
        e,
        r#"/name: is required, /ids/0: must be at least 0, /inner/level: is required, /status: must be one of "online", "offline""#
    );
}

#[test]
fn bounds_are_written_as_the_old_validator_wrote_them() {
    let s = compiled(json!({
        "type": "object",
        "properties": {
            "big": {"type": "number", "maximum": 1e20},
            "wide": {"type": "number", "minimum": 1e15},
            "half": {"type": "number", "exclusiveMinimum": 1.5},
            "int": {"type": "integer", "maximum": 10}
        }
    }));
    assert_eq!(
        reasons(&s, json!({"big": 1e21, "wide": 1, "half": 1, "int": 11})),
        "/big: must be at most 100000000000000000000, /half: must be greater than 1.5, \
         /int: must be at most 10, /wide: must be at least 1000000000000000"
    );
}

#[test]
fn content_keywords_are_refused() {
    for key in ["contentEncoding", "contentMediaType", "contentSchema"] {
        let value = if key == "contentSchema" {
            json!({"type": "integer"})
        } else {
            json!("base64")
        };
        let schema = json!({"properties": {"data": {"type": "string", key: value}}});
        let err = Schema::compile(schema).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("invalid schema: {key} is not enforced, so it is refused (at /properties/data/{key})")
        );
    }
}

#[test]
fn a_large_value_under_an_optional_struct_gets_bounded_violations() {
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Items {
        ids: Vec<u32>,
    }
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        inner: Option<Items>,
        #[schemars(length(max = 3))]
        name: String,
    }
    let s = Schema::of::<Outer>().unwrap();
    let ids = vec!["x"; 250_000];
    let e = s
        .validate(&json!({"inner": {"ids": ids}, "name": "ann"}))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/inner: does not match its schema (a value of 250002 nodes is checked, not itemized)"
    );
    // A small member beside it is itemized; a missing one is named.
    let e = s
        .validate(&json!({"inner": {"ids": ids}, "name": "toolong"}))
        .unwrap_err();
    assert_eq!(e.violations().len(), 2);
    assert_eq!(
        e.violations()[1].to_string(),
        "/name: must be at most 3 characters"
    );
    let e = s.validate(&json!({"inner": {"ids": ids}})).unwrap_err();
    assert_eq!(e.violations().len(), 2);
    assert_eq!(e.violations()[0].to_string(), "/name: is required");
    // A large value that is no such object: one violation for all of it.
    let e = s.validate(&json!(ids)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "does not match its schema (a value of 250001 nodes is checked, not itemized)"
    );
}

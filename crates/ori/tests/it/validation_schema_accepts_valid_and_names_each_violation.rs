//! Property tests of the run-time validator (`Schema::of::<T>()` on a
//! derived type), with a seeded xorshift generator so every run checks the
//! same cases: random valid values (strings with length bounds counted in
//! characters, integer ranges, enums, optional fields, nested objects,
//! arrays with item bounds) pass `validate` and `parse`; one random mutation
//! of each kind (wrong type, too short, too long, out of range, bad enum,
//! missing required field, bad array item) fails with exactly one
//! violation naming the mutated path and a fitting reason.

use std::sync::Arc;

use ori::messages::{Schema, Violation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Address {
    #[schemars(length(min = 2, max = 10))]
    city: String,
    #[schemars(range(min = 1, max = 99999))]
    zip: u32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Item {
    #[schemars(length(min = 1, max = 6))]
    sku: String,
    #[schemars(range(min = 1, max = 20))]
    qty: u8,
    color: Color,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Order {
    #[schemars(length(min = 3, max = 12))]
    name: String,
    #[schemars(range(min = -50, max = 50))]
    score: i32,
    color: Color,
    nick_name: Option<String>,
    address: Address,
    backup: Option<Address>,
    #[schemars(length(min = 1, max = 5))]
    items: Vec<Item>,
    tags: Vec<Color>,
}

const COLORS: [&str; 3] = ["red", "green", "blue"];
const ENUM_REASON: &str = r#"must be one of "red", "green", "blue""#;

/// Characters of 1 to 4 UTF-8 bytes, quotes, slashes and a combining mark:
/// lengths are counted in characters.
const ALPHABET: [char; 14] = [
    'a', 'Z', '0', ' ', '-', 'é', 'ß', '日', '🙂', '\u{301}', '"', '\\', '/', '~',
];

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A value in `lo..=hi`, the bounds themselves one time in four.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        match self.below(8) {
            0 => lo,
            1 => hi,
            _ => lo + (self.next() % (hi - lo + 1) as u64) as i64,
        }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

fn string(rng: &mut Rng, min: usize, max: usize) -> String {
    let len = rng.range(min as i64, max as i64) as usize;
    (0..len).map(|_| rng.pick(&ALPHABET)).collect()
}

fn color(rng: &mut Rng) -> Value {
    json!(rng.pick(&COLORS))
}

fn address(rng: &mut Rng) -> Value {
    json!({ "city": string(rng, 2, 10), "zip": rng.range(1, 99_999) })
}

fn item(rng: &mut Rng) -> Value {
    json!({ "sku": string(rng, 1, 6), "qty": rng.range(1, 20), "color": color(rng) })
}

fn order(rng: &mut Rng) -> Value {
    let items: Vec<Value> = (0..rng.range(1, 5)).map(|_| item(rng)).collect();
    let tags: Vec<Value> = (0..rng.range(0, 3)).map(|_| color(rng)).collect();
    let mut o = json!({
        "name": string(rng, 3, 12),
        "score": rng.range(-50, 50),
        "color": color(rng),
        "address": address(rng),
        "items": items,
        "tags": tags,
    });
    match rng.below(3) {
        0 => {}
        1 => o["nickName"] = Value::Null,
        _ => o["nickName"] = json!(string(rng, 0, 8)),
    }
    match rng.below(3) {
        0 => {}
        1 => o["backup"] = Value::Null,
        _ => o["backup"] = address(rng),
    }
    o
}

/// What sits at a path of a generated value, as far as the schema goes.
#[derive(Debug, Clone, Copy)]
enum Field {
    Str {
        min: usize,
        max: usize,
    },
    OptStr,
    Int {
        min: i64,
        max: i64,
    },
    Enum,
    Object,
    OptObject,
    Array {
        min: Option<usize>,
        max: Option<usize>,
    },
}

#[derive(Debug, Clone)]
struct Site {
    path: String,
    field: Field,
    /// A required member of its object (removing it is a violation).
    required: bool,
    /// An element of an array.
    element: bool,
}

fn site(path: impl Into<String>, field: Field, required: bool) -> Site {
    Site {
        path: path.into(),
        field,
        required,
        element: false,
    }
}

fn address_sites(prefix: &str, sites: &mut Vec<Site>) {
    sites.push(site(
        format!("{prefix}/city"),
        Field::Str { min: 2, max: 10 },
        true,
    ));
    sites.push(site(
        format!("{prefix}/zip"),
        Field::Int {
            min: 1,
            max: 99_999,
        },
        true,
    ));
}

/// Every place of `v` a mutation can hit.
fn sites(v: &Value) -> Vec<Site> {
    let mut s = vec![
        site("/name", Field::Str { min: 3, max: 12 }, true),
        site("/score", Field::Int { min: -50, max: 50 }, true),
        site("/color", Field::Enum, true),
        site("/address", Field::Object, true),
        site(
            "/items",
            Field::Array {
                min: Some(1),
                max: Some(5),
            },
            true,
        ),
        site(
            "/tags",
            Field::Array {
                min: None,
                max: None,
            },
            true,
        ),
    ];
    address_sites("/address", &mut s);
    if v.get("nickName").is_some() {
        s.push(site("/nickName", Field::OptStr, false));
    }
    if let Some(backup) = v.get("backup") {
        s.push(site("/backup", Field::OptObject, false));
        if backup.is_object() {
            address_sites("/backup", &mut s);
        }
    }
    for i in 0..v["items"].as_array().unwrap().len() {
        s.push(Site {
            element: true,
            ..site(format!("/items/{i}"), Field::Object, false)
        });
        s.push(site(
            format!("/items/{i}/sku"),
            Field::Str { min: 1, max: 6 },
            true,
        ));
        s.push(site(
            format!("/items/{i}/qty"),
            Field::Int { min: 1, max: 20 },
            true,
        ));
        s.push(site(format!("/items/{i}/color"), Field::Enum, true));
    }
    for j in 0..v["tags"].as_array().unwrap().len() {
        s.push(Site {
            element: true,
            ..site(format!("/tags/{j}"), Field::Enum, false)
        });
    }
    // Only what is there (an earlier mutation may have removed a member).
    s.retain(|site| v.pointer(&site.path).is_some());
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn set(v: &mut Value, path: &str, new: Value) {
    assert!(v.pointer(path).is_some(), "no {path} in {v}");
    if let Some(slot) = v.pointer_mut(path) {
        *slot = new;
    }
}

fn remove(v: &mut Value, path: &str) {
    let (parent, key) = path.rsplit_once('/').unwrap();
    let removed = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key));
    assert!(removed.is_some(), "no {path} to remove in {v}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mutation {
    WrongType,
    TooShort,
    TooLong,
    OutOfRange,
    BadEnum,
    MissingRequired,
    BadArrayItem,
}

const MUTATIONS: [Mutation; 7] = [
    Mutation::WrongType,
    Mutation::TooShort,
    Mutation::TooLong,
    Mutation::OutOfRange,
    Mutation::BadEnum,
    Mutation::MissingRequired,
    Mutation::BadArrayItem,
];

/// Applies `mutation` at a random fitting site of `v`; returns the one
/// violation it must cause.
fn mutate(rng: &mut Rng, v: &mut Value, mutation: Mutation) -> Violation {
    let all = sites(v);
    let fits = |s: &&Site| match mutation {
        Mutation::WrongType => true,
        Mutation::TooShort => matches!(
            s.field,
            Field::Str { .. } | Field::Array { min: Some(_), .. }
        ),
        Mutation::TooLong => matches!(
            s.field,
            Field::Str { .. } | Field::Array { max: Some(_), .. }
        ),
        Mutation::OutOfRange => matches!(s.field, Field::Int { .. }),
        Mutation::BadEnum => matches!(s.field, Field::Enum),
        Mutation::MissingRequired => s.required,
        Mutation::BadArrayItem => s.element,
    };
    let candidates: Vec<&Site> = all.iter().filter(fits).collect();
    let target = rng.pick(&candidates).clone();
    let path = target.path.clone();
    let reason = match (mutation, target.field) {
        (Mutation::MissingRequired, _) => {
            remove(v, &path);
            "is required".to_owned()
        }
        (Mutation::WrongType | Mutation::BadArrayItem, field) => {
            let (choices, reason): (Vec<Value>, &str) = match field {
                Field::Str { .. } | Field::Enum => (
                    vec![
                        json!(5),
                        json!(true),
                        Value::Null,
                        json!([]),
                        json!({}),
                        json!(1.5),
                    ],
                    "must be a string",
                ),
                Field::OptStr => (
                    vec![json!(5), json!(false), json!(["x"]), json!({ "a": 1 })],
                    "must be a string or null",
                ),
                Field::Int { .. } => (
                    vec![
                        json!("7"),
                        json!(true),
                        Value::Null,
                        json!([1]),
                        json!({}),
                        json!(1.5),
                        json!(-0.25),
                    ],
                    "must be an integer",
                ),
                Field::Object => (
                    vec![json!("x"), json!(5), Value::Null, json!([]), json!(false)],
                    "must be an object",
                ),
                Field::OptObject => (
                    vec![json!("x"), json!(5), json!([]), json!(true)],
                    "must match one of the allowed shapes",
                ),
                Field::Array { .. } => (
                    vec![json!("x"), json!(5), Value::Null, json!({}), json!(true)],
                    "must be an array",
                ),
            };
            // A bad enum string is a bad array item too.
            if mutation == Mutation::BadArrayItem
                && matches!(field, Field::Enum)
                && rng.below(2) == 0
            {
                set(v, &path, json!("purple"));
                ENUM_REASON.to_owned()
            } else {
                set(v, &path, rng.pick(&choices));
                reason.to_owned()
            }
        }
        (Mutation::TooShort, Field::Str { min, .. }) => {
            let s = string(rng, 0, min - 1);
            set(v, &path, json!(s));
            format!(
                "must be at least {}",
                plural(min, "character", "characters")
            )
        }
        (Mutation::TooLong, Field::Str { max, .. }) => {
            let s = string(rng, max + 1, max + 4);
            set(v, &path, json!(s));
            format!("must be at most {}", plural(max, "character", "characters"))
        }
        (Mutation::TooShort, Field::Array { min: Some(min), .. }) => {
            let items: Vec<Value> = (0..rng.range(0, min as i64 - 1))
                .map(|_| item(rng))
                .collect();
            set(v, &path, json!(items));
            format!("must have at least {}", plural(min, "item", "items"))
        }
        (Mutation::TooLong, Field::Array { max: Some(max), .. }) => {
            let n = rng.range(max as i64 + 1, max as i64 + 3);
            let items: Vec<Value> = (0..n).map(|_| item(rng)).collect();
            set(v, &path, json!(items));
            format!("must have at most {}", plural(max, "item", "items"))
        }
        (Mutation::OutOfRange, Field::Int { min, max }) => {
            if rng.below(2) == 0 {
                set(v, &path, json!(rng.range(min - 1000, min - 1)));
                format!("must be at least {min}")
            } else {
                set(v, &path, json!(rng.range(max + 1, max + 1000)));
                format!("must be at most {max}")
            }
        }
        (Mutation::BadEnum, Field::Enum) => {
            let bad = rng.pick(&["purple", "Red", "", "red ", "GREEN", "bleu", "🙂"]);
            set(v, &path, json!(bad));
            ENUM_REASON.to_owned()
        }
        other => unreachable!("no such mutation {other:?}"),
    };
    Violation { path, reason }
}

fn schema() -> Arc<Schema> {
    Schema::of::<Order>().unwrap()
}

#[test]
fn random_valid_values_pass_validate_and_parse() {
    let schema = schema();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..600 {
        let v = order(&mut rng);
        if let Err(e) = schema.validate(&v) {
            panic!(
                "case {case}: valid value refused: {e}\nvalue: {v}\nschema: {}",
                schema.json()
            );
        }
        let parsed: Order = schema
            .parse(v.clone())
            .unwrap_or_else(|e| panic!("case {case}: parse failed: {e}\nvalue: {v}"));
        assert_eq!(json!(parsed.name), v["name"]);
        assert_eq!(parsed.items.len(), v["items"].as_array().unwrap().len());
        assert_eq!(
            parsed.backup.is_some(),
            v.get("backup").is_some_and(Value::is_object)
        );
    }
}

#[test]
fn each_kind_of_mutation_is_named_with_its_path_and_reason() {
    let schema = schema();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut seen = [0usize; 7];
    let mut shapes = std::collections::BTreeSet::new();
    for case in 0..700 {
        let kind = case % MUTATIONS.len();
        let mutation = MUTATIONS[kind];
        let mut v = order(&mut rng);
        let expected = mutate(&mut rng, &mut v, mutation);
        let err = match schema.validate(&v) {
            Ok(()) => panic!("case {case}: {mutation:?} at {expected:?} was accepted\nvalue: {v}"),
            Err(e) => e,
        };
        assert_eq!(
            err.violations(),
            std::slice::from_ref(&expected),
            "case {case}: {mutation:?}\nvalue: {v}"
        );
        assert_eq!(
            err.to_string(),
            format!("{}: {}", expected.path, expected.reason)
        );
        // `parse` refuses with the same error.
        assert_eq!(schema.parse::<Order>(v).unwrap_err(), err);
        seen[kind] += 1;
        let shape: String = expected
            .path
            .chars()
            .map(|c| if c.is_ascii_digit() { '*' } else { c })
            .collect();
        shapes.insert((shape, mutation));
    }
    assert!(seen.iter().all(|&n| n >= 100), "{seen:?}");
    // Nested objects, optional objects (anyOf), array items: all were hit.
    for (shape, mutation) in [
        ("/backup/city", Mutation::TooLong),
        ("/backup/zip", Mutation::OutOfRange),
        ("/backup", Mutation::WrongType),
        ("/nickName", Mutation::WrongType),
        ("/items/*/qty", Mutation::OutOfRange),
        ("/items/*/sku", Mutation::MissingRequired),
        ("/items/*", Mutation::BadArrayItem),
        ("/tags/*", Mutation::BadArrayItem),
        ("/items", Mutation::TooShort),
        ("/items", Mutation::TooLong),
        ("/address/city", Mutation::TooShort),
        ("/color", Mutation::BadEnum),
    ] {
        assert!(
            shapes.contains(&(shape.to_owned(), mutation)),
            "{mutation:?} at {shape} never generated"
        );
    }
}

#[test]
fn several_mutations_are_all_reported_joined_with_commas() {
    let schema = schema();
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for case in 0..300 {
        let mut v = order(&mut rng);
        // Two mutations in different top-level members cannot mask each other.
        let first = mutate_within(&mut rng, &mut v, "/name");
        let second = mutate_within(&mut rng, &mut v, "/score");
        let err = schema.validate(&v).unwrap_err();
        let mut got: Vec<Violation> = err.violations().to_vec();
        got.sort_by(|a, b| a.path.cmp(&b.path));
        let mut want = vec![first, second];
        want.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(got, want, "case {case}: {v}");
        let text = err.to_string();
        assert_eq!(text.matches(", /").count(), 1, "{text}");
    }
}

/// Mutates the member at `path` (one of `/name`, `/score`): wrong type,
/// out of bounds, or removed.
fn mutate_within(rng: &mut Rng, v: &mut Value, path: &str) -> Violation {
    let candidates: Vec<Mutation> = match path {
        "/name" => vec![
            Mutation::WrongType,
            Mutation::TooShort,
            Mutation::TooLong,
            Mutation::MissingRequired,
        ],
        _ => vec![
            Mutation::WrongType,
            Mutation::OutOfRange,
            Mutation::MissingRequired,
        ],
    };
    loop {
        let mutation = rng.pick(&candidates);
        let mut attempt = v.clone();
        let violation = mutate(rng, &mut attempt, mutation);
        if violation.path == path {
            *v = attempt;
            return violation;
        }
    }
}

#[test]
fn a_value_of_the_wrong_kind_is_a_violation_of_the_root() {
    let schema = schema();
    for v in [
        json!([]),
        json!("order"),
        json!(1),
        Value::Null,
        json!(true),
    ] {
        let err = schema.validate(&v).unwrap_err();
        assert_eq!(
            err.violations(),
            [Violation {
                path: String::new(),
                reason: "expected an object".into()
            }]
        );
        assert_eq!(err.to_string(), "expected an object");
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Counts {
    small: u8,
    count: i32,
    big: u32,
}

/// Whatever passes `validate` must deserialize: an integer the field's
/// Rust type cannot hold is a violation at that field's path (schemars
/// writes the type as `"format": "int32"` etc. with no `maximum`), not a
/// path-less serde error.
#[test]
fn integers_the_rust_type_cannot_hold_are_named_with_their_path() {
    let schema = Schema::of::<Counts>().unwrap();
    for (v, path) in [
        (json!({ "small": 256, "count": 1, "big": 1 }), "/small"),
        (json!({ "small": -1, "count": 1, "big": 1 }), "/small"),
        (json!({ "small": 1, "count": 1, "big": -1 }), "/big"),
        (
            json!({ "small": 1, "count": 2_147_483_648u64, "big": 1 }),
            "/count",
        ),
        (
            json!({ "small": 1, "count": -2_147_483_649i64, "big": 1 }),
            "/count",
        ),
        (
            json!({ "small": 1, "count": 1, "big": 4_294_967_296u64 }),
            "/big",
        ),
    ] {
        let err = schema
            .parse::<Counts>(v.clone())
            .expect_err("out of the type's range");
        let paths: Vec<&str> = err.violations().iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, [path], "{v}: {err}");
    }
    let ok: Counts = schema
        .parse(json!({ "small": 255, "count": -2_147_483_648i64, "big": 4_294_967_295u64 }))
        .unwrap();
    assert_eq!((ok.small, ok.count, ok.big), (255, i32::MIN, u32::MAX));
}

/// JSON Schema counts `30.0` as an integer but serde refuses it for an
/// integer field; the validator must either accept what parses or name the
/// field, never fail `parse` with a path-less serde message.
#[test]
fn integral_floats_for_integer_fields_are_named_with_their_path() {
    let schema = Schema::of::<Counts>().unwrap();
    for (v, path) in [
        (json!({ "small": 30.0, "count": 1, "big": 1 }), "/small"),
        (json!({ "small": 1, "count": 1e2, "big": 1 }), "/count"),
    ] {
        match schema.parse::<Counts>(v.clone()) {
            Ok(_) => {}
            Err(err) => {
                let paths: Vec<&str> = err.violations().iter().map(|x| x.path.as_str()).collect();
                assert_eq!(paths, [path], "{v}: {err}");
            }
        }
    }
}

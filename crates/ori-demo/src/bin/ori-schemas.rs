//! Prints the JSON Schema of the data of every client-to-server message the
//! demo validates, as one JSON document `{"<message name>": <schema>, ...}`.
//!
//! The TypeScript client generates its types from it:
//! `cargo run -q -p ori-demo --bin ori-schemas | node scripts/gen-types.mjs`.

fn main() {
    let schemas = serde_json::Value::Object(ori_demo::message_schemas());
    match serde_json::to_string_pretty(&schemas) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("ori-schemas: {e}");
            std::process::exit(1);
        }
    }
}

//! `GET /api/schemas` serves the JSON Schema of every client-to-server
//! message's data: the same schemas the server validates with, which the
//! TypeScript client generates its types from (`ori-schemas`).

use ori::messages::{DefinitionSchema, Heartbeat, JoinRoom, LeaveRoom};
use ori::testing;
use serde_json::{json, Value};

#[test]
fn message_schemas_are_the_definitions_the_server_validates_with() {
    let schemas = ori_demo::message_schemas();
    let names: Vec<&str> = schemas.keys().map(String::as_str).collect();
    assert_eq!(names, ["heartbeat", "publish", "room.join", "room.leave"]);
    assert_eq!(&schemas["room.join"], JoinRoom.schema().unwrap().json());
    assert_eq!(&schemas["room.leave"], LeaveRoom.schema().unwrap().json());
    assert_eq!(&schemas["heartbeat"], Heartbeat.schema().unwrap().json());
    assert_eq!(
        &schemas["publish"],
        ori_demo::PUBLISH.schema().unwrap().json()
    );

    let publish = &schemas["publish"];
    assert_eq!(publish["type"], "object");
    assert_eq!(publish["required"], json!(["topic", "message"]));
    assert_eq!(publish["properties"]["message"]["type"], "string");
    assert_eq!(
        publish["properties"]["message"]["description"],
        "The notification text."
    );
    assert_eq!(publish["properties"]["topic"]["type"], "string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_schemas_serves_them_as_json() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let response = server.get("/api/schemas").await;
    assert_eq!(response.status, 200);
    let content_type = response.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(response.json(), Value::Object(ori_demo::message_schemas()));
    server.stop().await;
}

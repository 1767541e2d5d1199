//! `GET /` serves the web page and `GET /ori-client.js` the TypeScript
//! client bundle it imports (both compiled into the binary).

use ori::testing;

async fn demo() -> testing::TestServer {
    testing::spawn(ori_demo::build(ori_demo::Config::default())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_serves_the_page() {
    let server = demo().await;
    let page = server.get("/").await;
    assert_eq!(page.status, 200);
    let content_type = page.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text();
    assert_eq!(html, ori_demo::INDEX_HTML);
    assert!(html.contains("<title>Ori demo</title>"));
    assert!(html.contains("from '/ori-client.js'"));
    assert!(html.contains("id=\"state\""));
    assert!(html.contains("id=\"notifications\""));
    // A query string is the page's business (`?room=`, `?token=`).
    assert_eq!(server.get("/?room=lobby&token=t").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_bundle_is_served_as_javascript() {
    let server = demo().await;
    let js = server.get("/ori-client.js").await;
    assert_eq!(js.status, 200);
    let content_type = js.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    let body = js.text();
    assert_eq!(body, ori_demo::CLIENT_JS);
    assert!(body.contains("SocketClient"));
    assert!(body.contains("export {"), "an ES module");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_does_not_shadow_the_api() {
    let server = demo().await;
    assert_eq!(server.get("/api/stats").await.status, 200);
    assert_eq!(server.get("/metrics").await.status, 200);
    assert_eq!(server.get("/index.html").await.status, 404);
    server.stop().await;
}

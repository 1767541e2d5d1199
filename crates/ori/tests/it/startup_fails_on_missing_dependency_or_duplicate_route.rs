//! Set-up mistakes fail `listen`, before anything is served: a controller
//! or service needing an unregistered service (`BuildError::MissingService`)
//! and two handlers for one method and path (`BuildError::DuplicateRoute`).

use crate::common;

use std::sync::Arc;

use ori::{BuildError, Controller, Error, Ori, RequestContext, RouteBuilder};

struct Missing;

struct Present;

struct NeedsMissing {
    _svc: Arc<Missing>,
}

impl Controller for NeedsMissing {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.get("/x", Self::x);
    }
}

impl NeedsMissing {
    async fn x(self: Arc<Self>, _ctx: RequestContext) -> &'static str {
        "x"
    }
}

/// A controller declaring `routes` (method, path) with a trivial handler.
struct Routes(Vec<(&'static str, &'static str)>);

impl Controller for Routes {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        for (method, path) in &self.0 {
            r.route(
                method.parse().unwrap(),
                path,
                |_: Arc<Self>, _ctx: RequestContext| async { "ok" },
            );
        }
    }
}

async fn listen<W: ori::WebSocketState>(
    ori: Ori<ori::SocketEmitter, W>,
) -> Result<ori::App, Error> {
    ori.listen("127.0.0.1:0").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_needing_an_unregistered_service_fails_listen() {
    let result = listen(Ori::create().websocket().service(Present).controller_with(
        "/api",
        |ctx| {
            Ok(NeedsMissing {
                _svc: ctx.require::<Missing>()?,
            })
        },
    ))
    .await;
    match result {
        Err(Error::Build(BuildError::MissingService(name))) => {
            assert!(name.ends_with("Missing"), "names the missing type: {name}");
        }
        Err(other) => panic!("expected MissingService, got {other:?}"),
        Ok(_) => panic!("listen must fail on a missing dependency"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_service_error_explains_itself() {
    let err = listen(Ori::create().service_with(|ctx| {
        ctx.require::<Missing>()?;
        Ok(Present)
    }))
    .await
    .err()
    .expect("listen must fail");
    let text = err.to_string();
    assert!(
        text.contains("missing dependency") && text.contains("Missing"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registered_after_its_dependent_is_missing_at_that_point() {
    let result = listen(
        Ori::create()
            .controller_with("/api", |ctx| {
                Ok(NeedsMissing {
                    _svc: ctx.require::<Missing>()?,
                })
            })
            .service(Missing),
    )
    .await;
    assert!(matches!(
        result,
        Err(Error::Build(BuildError::MissingService(_)))
    ));

    // In the right order it starts and serves the route.
    let server = ori::testing::spawn(Ori::create().service(Missing).controller_with(
        "/api",
        |ctx| {
            Ok(NeedsMissing {
                _svc: ctx.require::<Missing>()?,
            })
        },
    ))
    .await;
    assert_eq!(server.get("/api/x").await.text(), "x");
    common::stop_server(&server, vec![]).await;
}

fn assert_duplicate(result: Result<ori::App, Error>, method: &str, path: &str) {
    match result {
        Err(Error::Build(BuildError::DuplicateRoute { method: m, path: p })) => {
            assert_eq!((m.as_str(), p.as_str()), (method, path));
        }
        Err(other) => panic!("expected DuplicateRoute, got {other:?}"),
        Ok(_) => panic!("listen must fail on a duplicate route"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_route_in_one_controller_fails_listen() {
    let result =
        listen(Ori::create().controller("/api", Routes(vec![("GET", "/a"), ("GET", "/a")]))).await;
    assert_duplicate(result, "GET", "/api/a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_route_across_controllers_and_prefixes_fails_listen() {
    let result = listen(
        Ori::create()
            .controller("/api", Routes(vec![("POST", "/items/:id")]))
            .controller("/api/items", Routes(vec![("POST", ":id")])),
    )
    .await;
    assert_duplicate(result, "POST", "/api/items/{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_on_the_websocket_path_fails_listen() {
    let result = listen(
        Ori::create()
            .websocket()
            .controller("/", Routes(vec![("POST", "/ws")])),
    )
    .await;
    assert_duplicate(result, "GET", "/ws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_path_with_different_methods_is_fine() {
    let server = ori::testing::spawn(Ori::create().controller(
        "/api",
        Routes(vec![("GET", "/a"), ("POST", "/a"), ("DELETE", "/a")]),
    ))
    .await;
    for method in ["GET", "POST", "DELETE"] {
        let resp = server
            .request(method.parse().unwrap(), "/api/a", &[], "")
            .await;
        assert_eq!((method, resp.status.as_u16()), (method, 200));
    }
    common::stop_server(&server, vec![]).await;
}

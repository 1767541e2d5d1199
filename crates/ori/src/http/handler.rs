//! What a controller route accepts: a function of the controller
//! (`Arc<Self>`) and up to eight extractors, the last of which may read the
//! body. The classic `fn(Arc<Self>, RequestContext<E>)` is the case of one
//! extractor, [`RequestContext`](super::RequestContext).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, Request, Response};
use axum::response::IntoResponse;
use http_body_util::BodyExt;

use crate::context::AppContext;
use crate::emitter::Emitter;

/// An extractor's rejection in Ori's shape: axum's plain-text rejections
/// (`Path`, `Query`, axum's `Json`, body limits) become `{"error": "<their
/// text>"}` with the same status; any other response is kept.
async fn as_json(rejection: Response<Body>) -> Response<Body> {
    let plain = rejection
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain {
        return rejection;
    }
    let (parts, body) = rejection.into_parts();
    let text = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    super::error_response(parts.status, String::from_utf8_lossy(&text).trim())
}

/// A controller handler: `async fn(self: Arc<Self>, T1, ..., Tn) -> impl
/// IntoResponse` where `T1..Tn-1` read the request head
/// (`FromRequestParts<AppContext<E>>`: `Path`, `Query`, `State<AppContext<E>>`,
/// [`RequestEmitter<E>`](crate::RequestEmitter),
/// [`Service<T>`](crate::extract::Service), headers) and `Tn` may read the
/// body (`FromRequest<AppContext<E>>`: [`Json<T>`](crate::Json),
/// [`RequestContext<E>`](crate::RequestContext), or any of the former), up
/// to eight in all. `T` is a marker the compiler infers; it keeps the two
/// styles apart. A closure names its argument types:
///
/// ```
/// use std::sync::Arc;
/// use ori::extract::Query;
/// use ori::{Controller, RequestContext, RouteBuilder};
///
/// struct Health;
///
/// impl Controller for Health {
///     fn configure(&self, r: &mut RouteBuilder<Self>) {
///         r.get("/live", |_: Arc<Self>| async { "ok" })
///             .get("/echo", |_: Arc<Self>, Query(q): Query<Vec<(String, String)>>| async move {
///                 format!("{q:?}")
///             })
///             .get("/id", |_: Arc<Self>, ctx: RequestContext| async move {
///                 ctx.correlation_id().to_owned()
///             });
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler of this controller",
    note = "a handler is `async fn(self: Arc<Self>, extractors...) -> impl IntoResponse`: \
            the arguments after the controller read the request head (`Path`, `Query`, \
            `RequestEmitter<E>`, `Service<T>`, ...), the last may read the body \
            (`Json<T>`, `RequestContext<E>`), and the future must be `Send`"
)]
pub trait ControllerHandler<C, E: Emitter, T>: Send + Sync + Sized + 'static {
    /// Runs the extractors, then the handler.
    #[doc(hidden)]
    fn call(
        self: Arc<Self>,
        controller: Arc<C>,
        req: Request<Body>,
        app: AppContext<E>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

impl<C, E, F, Fut, R> ControllerHandler<C, E, ()> for F
where
    C: Send + Sync + 'static,
    E: Emitter,
    F: Fn(Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse + 'static,
{
    fn call(
        self: Arc<Self>,
        controller: Arc<C>,
        _req: Request<Body>,
        _app: AppContext<E>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        let fut = (self)(controller);
        Box::pin(async move { fut.await.into_response() })
    }
}

macro_rules! controller_handler {
    ([$($head:ident),*], $last:ident) => {
        impl<C, E, F, Fut, R, M, $($head,)* $last> ControllerHandler<C, E, (M, $($head,)* $last,)>
            for F
        where
            C: Send + Sync + 'static,
            E: Emitter,
            F: Fn(Arc<C>, $($head,)* $last) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoResponse + 'static,
            $($head: FromRequestParts<AppContext<E>> + Send + 'static,)*
            $last: FromRequest<AppContext<E>, M> + Send + 'static,
            M: 'static,
        {
            #[allow(non_snake_case, unused_mut)]
            fn call(
                self: Arc<Self>,
                controller: Arc<C>,
                req: Request<Body>,
                app: AppContext<E>,
            ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
                Box::pin(async move {
                    let (mut parts, body) = req.into_parts();
                    $(
                        let extracted = $head::from_request_parts(&mut parts, &app)
                            .await
                            .map_err(IntoResponse::into_response);
                        let $head = match extracted {
                            Ok(value) => value,
                            Err(rejection) => return as_json(rejection).await,
                        };
                    )*
                    let req = Request::from_parts(parts, body);
                    let extracted = $last::from_request(req, &app)
                        .await
                        .map_err(IntoResponse::into_response);
                    let $last = match extracted {
                        Ok(value) => value,
                        Err(rejection) => return as_json(rejection).await,
                    };
                    (self)(controller, $($head,)* $last).await.into_response()
                })
            }
        }
    };
}

controller_handler!([], T1);
controller_handler!([T1], T2);
controller_handler!([T1, T2], T3);
controller_handler!([T1, T2, T3], T4);
controller_handler!([T1, T2, T3, T4], T5);
controller_handler!([T1, T2, T3, T4, T5], T6);
controller_handler!([T1, T2, T3, T4, T5, T6], T7);
controller_handler!([T1, T2, T3, T4, T5, T6, T7], T8);

//! The application context: registered services (typed, no string keys) and
//! the app's emitter, shared by controllers, socket handlers and services.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::emitter::{Emitter, SocketEmitter};
use crate::error::BuildError;

type ServiceMap = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// Services and the emitter of one application. Cheap to clone.
///
/// A service that publishes keeps a clone and reaches the app's emitter type
/// `E` with its domain methods:
///
/// ```
/// use ori::{AppContext, Emitter};
///
/// struct IncidentService {
///     ctx: AppContext,
/// }
///
/// impl IncidentService {
///     async fn create(&self, account: &str) -> Result<(), ori::PublishError> {
///         self.ctx.socket().publish(format!("account:{account}"), "created").await
///     }
/// }
/// ```
pub struct AppContext<E: Emitter = SocketEmitter> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    emitter: E,
    /// Shared with the same app's context of the base emitter.
    services: Arc<RwLock<ServiceMap>>,
}

impl<E: Emitter> Clone for AppContext<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Emitter> AppContext<E> {
    /// A context around `emitter` with no services.
    pub fn new(emitter: E) -> Self {
        Self {
            inner: Arc::new(Inner {
                emitter,
                services: Arc::default(),
            }),
        }
    }

    /// The same services with another emitter (the base one of this app).
    pub(crate) fn with_emitter<E2: Emitter>(&self, emitter: E2) -> AppContext<E2> {
        AppContext {
            inner: Arc::new(Inner {
                emitter,
                services: self.inner.services.clone(),
            }),
        }
    }

    /// The app's emitter.
    pub fn socket(&self) -> &E {
        &self.inner.emitter
    }

    /// Registers (or replaces) a service.
    pub fn insert<T: Send + Sync + 'static>(&self, service: T) -> Arc<T> {
        let service = Arc::new(service);
        self.insert_arc(service.clone());
        service
    }

    /// Registers (or replaces) a service already in an `Arc`.
    pub fn insert_arc<T: Send + Sync + 'static>(&self, service: Arc<T>) {
        self.inner
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(TypeId::of::<T>(), service);
    }

    /// The service of type `T`, if registered.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let services = self
            .inner
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        services.get(&TypeId::of::<T>())?.clone().downcast().ok()
    }

    /// The service of type `T`, or the start-up error naming it.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, BuildError> {
        self.service()
            .ok_or(BuildError::MissingService(type_name::<T>()))
    }
}

impl<E: Emitter> std::fmt::Debug for AppContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext").finish_non_exhaustive()
    }
}

//! The actix-web middleware that gives each request its session slot and writes
//! the session back after the handler.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::Key;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{HttpMessage as _, ResponseError as _};
use latchkey_core::{SessionStore, Timestamp};

use crate::config::SessionMiddlewareBuilder;
use crate::error::{Error, StoreUnavailable};
use crate::lifecycle::{CookieAction, write_back};
use crate::metrics::SessionMetrics;
use crate::session::{SessionSlot, State};
use crate::shared::Shared;

/// Server-side sessions for an actix-web app.
///
/// Wrap an `App` (or a scope) with it and take [`Session`](crate::Session) in
/// handlers. Cloning is cheap; every worker shares one configuration and store.
///
/// # Examples
///
/// ```
/// use actix_web::{App, cookie::Key};
/// use latchkey::{SessionMiddleware, memory::MemoryStore};
///
/// // In a real app, load the key from configuration so cookies survive restarts.
/// let key = Key::generate();
/// let sessions = SessionMiddleware::new(MemoryStore::new(), key);
/// let app = App::new().wrap(sessions);
/// # drop(app);
/// ```
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    config: Arc<Shared>,
}

impl SessionMiddleware {
    /// Sessions in `store`, cookies signed with `key`, every other setting at its
    /// default (see [`SessionMiddlewareBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::new(MemoryStore::new(), Key::generate());
    /// # drop(sessions);
    /// ```
    pub fn new<S: SessionStore>(store: S, key: Key) -> Self {
        // The defaults pass every check `build` makes (a test below holds it to that).
        Self::builder(store, key).build_unchecked()
    }

    /// Configures the middleware; see [`SessionMiddlewareBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::builder(MemoryStore::new(), Key::generate())
    ///     .cookie_name("__Host-session")
    ///     .build()?;
    /// # Ok::<(), latchkey::ConfigError>(())
    /// ```
    pub fn builder<S: SessionStore>(store: S, key: Key) -> SessionMiddlewareBuilder {
        SessionMiddlewareBuilder::new(store, key)
    }

    /// The counters of this middleware's sessions (loads, saves, conflicts,
    /// errors, sessions created and destroyed), for export.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::cookie::Key;
    /// use latchkey::{SessionMiddleware, memory::MemoryStore};
    ///
    /// let sessions = SessionMiddleware::new(MemoryStore::new(), Key::generate());
    /// let metrics = sessions.metrics();
    /// assert_eq!(metrics.snapshot().store_errors, 0);
    /// ```
    pub fn metrics(&self) -> Arc<SessionMetrics> {
        self.config.store.metrics_handle()
    }

    pub(crate) fn from_config(config: Arc<Shared>) -> Self {
        Self { config }
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn config(&self) -> Arc<Shared> {
        Arc::clone(&self.config)
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            config: Arc::clone(&self.config),
        }))
    }
}

/// The per-worker service made by [`SessionMiddleware`]; actix-web creates it,
/// applications never name it.
///
/// # Examples
///
/// ```
/// use actix_web::{App, cookie::Key};
/// use latchkey::{SessionMiddleware, memory::MemoryStore};
///
/// // `wrap` turns the middleware into one `SessionService` per worker.
/// let app = App::new().wrap(SessionMiddleware::new(MemoryStore::new(), Key::generate()));
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    config: Arc<Shared>,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let slot = Arc::new(SessionSlot::new(Arc::clone(&self.config)));
        req.extensions_mut().insert(Arc::clone(&slot));
        let service = Rc::clone(&self.service);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            if config.load_before_routing
                && let Err(err) = slot.session(req.request()).await
            {
                tracing::error!(error = %err, "session store failed while loading a session");
                let response = StoreUnavailable(config.store_error_status).error_response();
                return Ok(req.into_response(response).map_into_right_body());
            }
            let mut res = match service.call(req).await {
                Ok(res) => res,
                // An inner middleware failed on the session (through
                // `SessionExt`) and gave no response back: answer as for a
                // handler, with the configured status.
                Err(err) if err.as_error::<Error>().is_some_and(Error::is_store_failure) => {
                    slot.close();
                    tracing::error!("session store failed while loading a session");
                    return Err(StoreUnavailable(config.store_error_status).into());
                }
                Err(err) => {
                    slot.close();
                    return Err(err);
                }
            };
            slot.close();
            if handler_hit_store_failure(&res) {
                tracing::error!("session store failed while loading a session");
                return Ok(store_failure(res, &config));
            }
            let Some(state) = slot.take_loaded() else {
                return Ok(res.map_into_left_body());
            };
            if failed_with_session_error(&res) {
                // A request that failed on its session (a limit, a value that
                // would not serialize) keeps none of its changes, so the stored
                // session stays as it was.
                return Ok(res.map_into_left_body());
            }
            match finish(state, &config).await {
                Ok(cookie) => {
                    if let Some(cookie) = cookie {
                        res.response_mut().add_cookie(&cookie)?;
                    }
                    Ok(res.map_into_left_body())
                }
                Err(err) if err.is_store_failure() => {
                    tracing::error!(error = %err, source = ?std::error::Error::source(&err), "session could not be saved");
                    Ok(store_failure(res, &config))
                }
                Err(err) => {
                    // A change that no longer fits once merged with a concurrent
                    // one (a limit): nothing was saved, and the client is told.
                    tracing::warn!(error = %err, "session change refused at write-back");
                    let (req, _) = res.into_parts();
                    let response = actix_web::ResponseError::error_response(&err);
                    Ok(ServiceResponse::new(req, response).map_into_right_body())
                }
            }
        })
    }
}

/// Writes the request's session back; the cookie to send, if any.
pub(crate) async fn finish(
    state: State,
    config: &Shared,
) -> Result<Option<actix_web::cookie::Cookie<'static>>, Error> {
    let now = Timestamp::now();
    let action = write_back(state, config, now).await?;
    Ok(cookie_for(action, config, now))
}

fn handler_hit_store_failure<B>(res: &ServiceResponse<B>) -> bool {
    res.response()
        .error()
        .and_then(|err| err.as_error::<Error>())
        .is_some_and(Error::is_store_failure)
}

fn failed_with_session_error<B>(res: &ServiceResponse<B>) -> bool {
    res.response()
        .error()
        .is_some_and(|err| err.as_error::<Error>().is_some())
}

/// Replaces the response with the configured store-failure status and an opaque body.
fn store_failure<B>(res: ServiceResponse<B>, config: &Shared) -> ServiceResponse<EitherBody<B>> {
    let (req, _) = res.into_parts();
    let response = StoreUnavailable(config.store_error_status).error_response();
    ServiceResponse::new(req, response).map_into_right_body()
}

pub(crate) fn cookie_for(
    action: CookieAction,
    config: &Shared,
    now: Timestamp,
) -> Option<actix_web::cookie::Cookie<'static>> {
    match action {
        CookieAction::Keep => None,
        CookieAction::Remove => Some(config.codec.removal()),
        CookieAction::Set {
            token,
            deadlines,
            persistent,
        } => {
            let max_age = persistent.then(|| deadlines.expires_at().saturating_since(now));
            Some(config.codec.issue(&token, max_age))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_configuration_builds() {
        let built =
            SessionMiddleware::builder(latchkey_memory::MemoryStore::new(), Key::generate())
                .build();
        assert!(built.is_ok());
    }
}

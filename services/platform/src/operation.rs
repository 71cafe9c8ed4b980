//! An internal operation declared once: its method, its path template and the types of
//! its request and answer. A service's HTTP client calls it and the service's router
//! serves it from the same declaration, so path and method cannot drift apart, and each
//! `{param}` of the template is filled with exactly one encoded path segment.
//!
//! ```ignore
//! pub const RELEASE: Operation<(), serde_json::Value> =
//!     Operation::post("/internal/v1/quota/reservations/{id}/release");
//! // client
//! RELEASE.call(&client, &[id], &()).await
//! // router
//! RELEASE.route(Router::new(), release_handler)
//! ```

use std::marker::PhantomData;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{delete, get, post, put};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ServiceClient, ServicePath};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

/// One internal operation: `I` is what the caller sends (`()` for none), `O` what it gets.
pub struct Operation<I, O> {
    pub verb: Verb,
    /// The route as axum writes it: `/internal/v1/merchants/{id}/api-keys`.
    pub path: &'static str,
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> Operation<I, O> {
    const fn new(verb: Verb, path: &'static str) -> Self {
        Self {
            verb,
            path,
            types: PhantomData,
        }
    }

    pub const fn get(path: &'static str) -> Self {
        Self::new(Verb::Get, path)
    }

    pub const fn post(path: &'static str) -> Self {
        Self::new(Verb::Post, path)
    }

    pub const fn put(path: &'static str) -> Self {
        Self::new(Verb::Put, path)
    }

    pub const fn delete(path: &'static str) -> Self {
        Self::new(Verb::Delete, path)
    }

    /// The request path: the template with `params`, in order, each one encoded segment.
    pub fn path_with(&self, params: &[&str]) -> ApiResult<ServicePath> {
        let mut params = params.iter();
        let segments = self
            .path
            .trim_start_matches('/')
            .split('/')
            .map(|segment| match segment.starts_with('{') {
                true => params.next().copied().ok_or_else(|| self.miscalled()),
                false => Ok(segment),
            })
            .collect::<ApiResult<Vec<&str>>>()?;
        if params.next().is_some() {
            return Err(self.miscalled());
        }
        Ok(ServicePath::new(segments))
    }

    fn miscalled(&self) -> ApiError {
        ApiError::internal(format!(
            "{} takes as many parameters as its template has",
            self.path
        ))
    }

    /// Serves the operation from `router` with `handler`, at its path and method.
    pub fn route<S, H, T>(&self, router: Router<S>, handler: H) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        H: Handler<T, S>,
        T: 'static,
    {
        let method = match self.verb {
            Verb::Get => get(handler),
            Verb::Post => post(handler),
            Verb::Put => put(handler),
            Verb::Delete => delete(handler),
        };
        router.route(self.path, method)
    }
}

impl<I: Serialize + Sync, O: DeserializeOwned> Operation<I, O> {
    /// Calls the operation on `client` with the template's `params` and `input` (sent as
    /// the JSON body of a POST or PUT; GET and DELETE carry none).
    pub async fn call(&self, client: &ServiceClient, params: &[&str], input: &I) -> ApiResult<O> {
        self.send(client, self.path_with(params)?, input).await
    }

    /// As [`Self::call`], with `query` pairs appended, each key and value encoded.
    pub async fn call_with_query(
        &self,
        client: &ServiceClient,
        params: &[&str],
        query: &[(&str, &str)],
        input: &I,
    ) -> ApiResult<O> {
        let path = query
            .iter()
            .fold(self.path_with(params)?, |path, (key, value)| {
                path.query(key, value)
            });
        self.send(client, path, input).await
    }

    async fn send(&self, client: &ServiceClient, path: ServicePath, input: &I) -> ApiResult<O> {
        match self.verb {
            Verb::Get => client.get(path).await,
            Verb::Post => client.post(path, input).await,
            Verb::Put => client.put(path, input).await,
            Verb::Delete => client.delete(path).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    const KEYS: Operation<(), ()> = Operation::post("/internal/v1/merchants/{id}/api-keys/{key}");

    #[test]
    fn each_parameter_is_one_encoded_segment() {
        let path = KEYS.path_with(&["mch_1/../x", "key?a=b"]).unwrap();
        assert_eq!(
            path.as_str(),
            "/internal/v1/merchants/mch_1%2F..%2Fx/api-keys/key%3Fa%3Db"
        );
    }

    #[test]
    fn a_call_with_the_wrong_number_of_parameters_is_refused() {
        assert!(KEYS.path_with(&["mch_1"]).is_err());
        assert!(KEYS.path_with(&["mch_1", "k", "extra"]).is_err());
    }
}

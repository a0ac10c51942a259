//! Trying a Kubernetes API call again when it failed on the way and doing it twice is
//! harmless: reads (`GET`, `HEAD`) and server-side apply (`PATCH` with
//! `application/apply-patch+yaml`, which sets the same fields to the same values). Creates,
//! replaces and deletes are not tried again (a second one after a first that took effect
//! would fail with a conflict); the kube client already retries 429, 503 and 504 answers.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use tower::BoxError;

/// How many times a call is tried again, and the first pause (doubled each time).
const RETRIES: u32 = 2;
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// A `tower::retry::Policy` for idempotent calls that failed in transit (a reset, a
/// timed-out attempt, a connection refused) or with 500 or 502.
#[derive(Debug, Clone)]
pub struct RetryIdempotent {
    left: u32,
    pause: Duration,
}

impl Default for RetryIdempotent {
    fn default() -> Self {
        Self {
            left: RETRIES,
            pause: FIRST_PAUSE,
        }
    }
}

fn idempotent(req: &Request<Body>) -> bool {
    match *req.method() {
        Method::GET | Method::HEAD => true,
        Method::PATCH => req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/apply-patch")),
        _ => false,
    }
}

impl<B> tower::retry::Policy<Request<Body>, Response<B>, BoxError> for RetryIdempotent {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let transient = match result {
            Err(_) => true,
            Ok(r) => matches!(r.status().as_u16(), 500 | 502),
        };
        if !transient || self.left == 0 || !idempotent(req) {
            return None;
        }
        self.left -= 1;
        let pause = self.pause;
        self.pause *= 2;
        tracing::debug!(method = %req.method(), uri = %req.uri(), "Kubernetes call failed in transit; trying again");
        Some(tokio::time::sleep(pause))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Streamed bodies cannot be sent twice: such a call is not retried.
        let body = req.body().try_clone()?;
        let mut out = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *out.headers_mut() = req.headers().clone();
        *out.extensions_mut() = req.extensions().clone();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::Policy;

    fn req(method: Method, content_type: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/a/pods/b");
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(b"{}".to_vec())).expect("a request")
    }

    fn failed() -> Result<Response<()>, BoxError> {
        Err("connection reset".into())
    }

    #[tokio::test]
    async fn reads_and_server_side_apply_are_tried_again_twice_creates_never() {
        let mut p = RetryIdempotent::default();
        let mut get = req(Method::GET, None);
        assert!(p.retry(&mut get, &mut failed()).is_some());
        let mut apply = req(Method::PATCH, Some("application/apply-patch+yaml"));
        assert!(p.retry(&mut apply, &mut failed()).is_some());
        assert!(
            p.retry(&mut apply, &mut failed()).is_none(),
            "two retries at most"
        );
        let mut fresh = RetryIdempotent::default();
        for (method, ct) in [
            (Method::POST, None),
            (Method::PUT, None),
            (Method::DELETE, None),
            (Method::PATCH, Some("application/merge-patch+json")),
        ] {
            let mut r = req(method.clone(), ct);
            assert!(fresh.retry(&mut r, &mut failed()).is_none(), "{method}");
            assert!(Policy::<_, Response<()>, BoxError>::clone_request(&mut fresh, &r).is_some());
        }
        let mut ok: Result<Response<()>, BoxError> = Ok(Response::builder()
            .status(409)
            .body(())
            .expect("a response"));
        assert!(
            fresh.retry(&mut get, &mut ok).is_none(),
            "a 409 is an answer"
        );
        let mut err500: Result<Response<()>, BoxError> = Ok(Response::builder()
            .status(500)
            .body(())
            .expect("a response"));
        assert!(fresh.retry(&mut get, &mut err500).is_some());
    }
}

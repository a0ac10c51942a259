//! Content types: request bodies in protobuf read as JSON, and the request trace (`DEPLOYCTL_STANDIN_TRACE=1` prints every request).

use bytes::Bytes;
use http::Request;

use crate::ops::Failure;
use crate::protobuf::Unreadable;

/// Prints `METHOD uri content-type accept` to stderr when `DEPLOYCTL_STANDIN_TRACE` is set.
pub fn trace<B>(req: &Request<B>) {
    if std::env::var_os("DEPLOYCTL_STANDIN_TRACE").is_none() {
        return;
    }
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    eprintln!(
        "standin: {} {} content-type={} accept={} ua={}",
        req.method(),
        req.uri(),
        h("content-type"),
        h("accept"),
        h("user-agent")
    );
}

/// A request body as JSON bytes: protobuf (what client-go's typed clients send) is decoded
/// (400 when malformed, 415 for a kind it cannot read); JSON and YAML pass unchanged.
pub fn json_body(body: Bytes, content_type: &str) -> Result<Bytes, Failure> {
    if !crate::protobuf::is_protobuf(content_type) || body.is_empty() {
        return Ok(body);
    }
    match crate::protobuf::decode(&body) {
        Ok(v) => Ok(Bytes::from(v.to_string())),
        Err(Unreadable::Malformed(m)) => Err(Failure::new(400, "BadRequest", m)),
        Err(Unreadable::Unsupported(m)) => Err(Failure::new(415, "UnsupportedMediaType", m)),
    }
}

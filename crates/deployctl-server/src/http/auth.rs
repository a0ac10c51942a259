//! Bearer tokens on every request but `/healthz`. 401 says the token is missing, unknown,
//! expired or revoked; 403 says it is for another project or lacks the role. Neither looks at
//! whether the project exists.

use axum::http::{HeaderMap, StatusCode, header};

use super::ApiError;
use crate::jobs::AppState;
use crate::store::{Role, TokenRecord};
use crate::tokens::{hash, now_ms};

/// The WebSocket subprotocol a client that cannot set `Authorization` (a browser's
/// `WebSocket`) carries its token in: `deployctl.bearer.<token>`, offered together with
/// [`WS_PROTOCOL`], which the server selects (so the token is never echoed back).
pub(crate) const WS_BEARER_PREFIX: &str = "deployctl.bearer.";
/// The subprotocol a WebSocket stream of this API speaks.
pub(crate) const WS_PROTOCOL: &str = "deployctl.v1";

const CREATE_HINT: &str =
    "send `Authorization: Bearer <token>`; an admin makes one with `deployctl serve token create`";

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
        .hint(CREATE_HINT)
        .header(header::WWW_AUTHENTICATE, "Bearer realm=\"deployctl\"")
}

/// The request's token, if it may act as `need` on `project`.
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    project: &str,
    need: Role,
) -> Result<TokenRecord, ApiError> {
    let token = authenticate(state, headers).await?;
    permit(&token, project, need)?;
    Ok(token)
}

/// Whether `token` (looked up already) may act as `need` on `project`.
pub(crate) fn permit(token: &TokenRecord, project: &str, need: Role) -> Result<(), ApiError> {
    if token.project != project {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token {} is scoped to another project", token.id),
        )
        .hint("use a token created with --project for this project"));
    }
    if token.role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {} has the role {}; this needs {}",
                token.id,
                token.role.as_str(),
                need.as_str()
            ),
        )
        .hint(format!("use a token created with --role {}", need.as_str())));
    }
    Ok(())
}

/// The token a WebSocket handshake offers as the subprotocol `deployctl.bearer.<token>`.
fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_BEARER_PREFIX))
        .filter(|s| !s.is_empty())
}

/// The request's valid token, whatever it may do.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<TokenRecord, ApiError> {
    let secret = match headers.get(header::AUTHORIZATION) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?,
        None => subprotocol_token(headers).ok_or_else(|| unauthorized("missing bearer token"))?,
    };
    let token = state
        .inner
        .store
        .token_by_hash(&hash(secret))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| unauthorized("unknown token"))?;
    if token.revoked_ms.is_some() {
        return Err(unauthorized(&format!("token {} was revoked", token.id)));
    }
    if token.expires_ms <= now_ms() {
        return Err(unauthorized(&format!("token {} has expired", token.id)));
    }
    Ok(token)
}

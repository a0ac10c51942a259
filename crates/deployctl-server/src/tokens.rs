//! API tokens: made here (random, shown once), kept as SHA-256 only, checked per request.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::store::{Role, Store, TokenRecord};

/// The prefix of every token secret, so a leaked one is recognisable in a scanner.
pub const TOKEN_PREFIX: &str = "dctl_";

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| Error::Random { source })?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of a token secret, as stored.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses a time to live: `90s`, `15m`, `12h`, `30d` (a number and one unit).
pub fn parse_ttl(s: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::Invalid {
        message: format!(
            "--ttl `{s}` is not a duration: write a number and s, m, h or d, e.g. 30d"
        ),
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

/// A new token's record and its secret (the only time the secret exists outside the client).
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedToken {
    /// The stored part.
    pub record: TokenRecord,
    /// The secret to give the client: `dctl_<id>_<random>`.
    pub secret: String,
}

/// Makes a token for `project` with `role`, valid for `ttl`, and stores its hash (and an
/// audit row `token.create`).
pub async fn create(
    store: &dyn Store,
    project: &str,
    role: Role,
    ttl: std::time::Duration,
) -> Result<CreatedToken, Error> {
    crate::names::check("--project", project).map_err(|message| Error::Invalid { message })?;
    let id = format!("tok_{}", random_hex(6)?);
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    let now = now_ms();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let record = TokenRecord {
        id,
        project: project.to_owned(),
        role,
        created_ms: now,
        expires_ms: now.saturating_add(ttl_ms),
        revoked_ms: None,
    };
    store.add_token(&record, &hash(&secret)).await?;
    store
        .audit(&crate::store::AuditRow::cli(
            "token.create",
            Some(project),
            &record.id,
            now,
        ))
        .await?;
    Ok(CreatedToken { record, secret })
}

/// Revokes the token `id` (and writes an audit row `token.revoke`); false when there is none.
pub async fn revoke(store: &dyn Store, id: &str) -> Result<bool, Error> {
    let now = now_ms();
    let found = store.revoke_token(id, now).await?;
    if found {
        store
            .audit(&crate::store::AuditRow::cli("token.revoke", None, id, now))
            .await?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_ttl("15m").unwrap().as_secs(), 900);
        for bad in ["", "d", "30", "30w", "0d", "-1d", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

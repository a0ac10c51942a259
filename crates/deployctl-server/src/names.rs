//! Project and app names in paths and on the command line: one rule for both.

/// The longest name.
pub const MAX_NAME: usize = 63;

/// Checks `value` (named `what` in the message): 1 to 63 of `a-z`, `0-9` and `-`, starting
/// with a letter or digit.
pub fn check(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{value}` is not a name: use 1 to {MAX_NAME} of a-z, 0-9 and -, not starting with -"
        ))
    }
}

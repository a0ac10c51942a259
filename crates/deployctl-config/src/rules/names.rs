//! Name formats: DNS-1123 labels and subdomains, environment variable names, Kubernetes
//! label values and qualified names.

use crate::load::Diags;

pub(crate) fn dns_label(d: &mut Diags<'_>, path: &str, v: &str, what: &str) {
    if !is_dns_label(v) {
        let mut hint = "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit".to_owned();
        let fixed: String = v
            .to_ascii_lowercase()
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .chars()
            .take(63)
            .collect();
        if !fixed.is_empty() && fixed != v {
            hint = format!("{hint}, e.g. `{fixed}`");
        }
        let shown = if v.len() > 70 {
            format!(
                "{}…",
                &v[..v.char_indices().nth(60).map_or(v.len(), |(i, _)| i)]
            )
        } else {
            v.to_owned()
        };
        d.value(
            path,
            format!("`{shown}` is not a valid name for {what}"),
            Some(hint),
        );
    }
}

/// DNS-1123 label: 1–63 lowercase letters, digits and `-`, alphanumeric at both ends.
pub(crate) fn is_dns_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub(crate) fn is_dns_subdomain(v: &str) -> bool {
    !v.is_empty() && v.len() <= 253 && v.split('.').all(is_dns_label)
}

pub(crate) fn dns_subdomain(d: &mut Diags<'_>, path: &str, v: &str) {
    if !is_dns_subdomain(v) {
        d.value(
            path,
            format!("`{v}` is not a valid Kubernetes name"),
            Some(
                "at most 253 lowercase letters, digits, `-` and `.`, each dot-separated part \
                 starting and ending with a letter or digit"
                    .to_owned(),
            ),
        );
    }
}

/// A Kubernetes label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]`
/// starting and ending with a letter or digit.
pub(crate) fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
            && v.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && v.ends_with(|ch: char| ch.is_ascii_alphanumeric()))
}

/// A Kubernetes qualified name (label and annotation keys): `[prefix/]name`, the prefix a
/// DNS-1123 subdomain, the name 1–63 characters like a non-empty label value.
pub(crate) fn is_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Letters, digits and `_`, not starting with a digit.
pub(crate) fn is_env_name(k: &str) -> bool {
    k.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub(crate) fn env_name(d: &mut Diags<'_>, section: &str, k: &str) {
    if !is_env_name(k) {
        d.key(
            &format!("{section}.{k}"),
            format!("`{k}` is not a valid environment variable name"),
            Some("letters, digits and `_`, not starting with a digit".to_owned()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_formats() {
        assert!(is_dns_label("a") && is_dns_label("web-1") && is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)) && !is_dns_label("-a") && !is_dns_label("A"));
        assert!(is_dns_subdomain("a.b-c.d") && !is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(&format!("{}.b", "a".repeat(64))));
        assert!(is_label_value("") && is_label_value("v1.2_3-x") && !is_label_value("-x"));
        assert!(!is_label_value(&"a".repeat(64)) && !is_label_value("a b"));
        assert!(is_qualified_name("app.kubernetes.io/name") && is_qualified_name("tier"));
        assert!(
            !is_qualified_name("Bad_Prefix/x")
                && !is_qualified_name("a/")
                && !is_qualified_name("a/b/c")
        );
    }
}

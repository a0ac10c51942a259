//! `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and the `$${` escape.

/// Looks up variables for interpolation. The binary passes [`ProcessEnv`]; tests pass a map.
pub trait VarLookup {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// Reads the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl VarLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> VarLookup for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

impl VarLookup for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationProblem {
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
    /// The problem is only that a variable is unset (or empty where `:?` requires a
    /// value), not how the reference is written.
    pub missing: bool,
}

/// Expands every `${…}` in `input`. Returns the expanded text, or every problem found.
pub fn interpolate(input: &str, vars: &dyn VarLookup) -> Result<String, Vec<InterpolationProblem>> {
    let mut out = String::with_capacity(input.len());
    let mut problems = Vec::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` → literal `${`
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            problems.push(InterpolationProblem {
                message: format!("unterminated `${{` in `{}`", truncate(input)),
                hint: "close it with `}`, or write `$${` for a literal `${`".into(),
                missing: false,
            });
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let body = &body_start[..end];
        rest = &body_start[end + 1..];
        match expand(body, vars) {
            Ok(v) => out.push_str(&v),
            Err(p) => problems.push(p),
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn expand(body: &str, vars: &dyn VarLookup) -> Result<String, InterpolationProblem> {
    let (name, op) = match body.find([':', '-', '?']) {
        Some(i) => (&body[..i], Some(&body[i..])),
        None => (body, None),
    };
    if !is_var_name(name) {
        return Err(InterpolationProblem {
            message: format!("`${{{body}}}` is not a valid variable reference"),
            hint: "variable names are letters, digits and `_`, not starting with a digit: \
                   ${NAME}, ${NAME:-default}, ${NAME:?message}"
                .into(),
            missing: false,
        });
    }
    let value = vars.get(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    match op {
        None => value.ok_or_else(|| InterpolationProblem {
            message: format!("environment variable `{name}` is not set"),
            hint: format!("set {name}, or give a default with ${{{name}:-default}}"),
            missing: true,
        }),
        Some(op) if op.starts_with(":-") => Ok(if set_nonempty {
            value.unwrap_or_default()
        } else {
            op[2..].to_owned()
        }),
        Some(op) if op.starts_with('-') => Ok(value.unwrap_or_else(|| op[1..].to_owned())),
        Some(op) if op.starts_with(":?") || op.starts_with('?') => {
            let msg = op.trim_start_matches(':').trim_start_matches('?');
            if set_nonempty {
                Ok(value.unwrap_or_default())
            } else {
                Err(InterpolationProblem {
                    message: if msg.is_empty() {
                        format!("environment variable `{name}` is required")
                    } else {
                        format!("environment variable `{name}` is required: {msg}")
                    },
                    hint: format!("set {name} before running deployctl"),
                    missing: true,
                })
            }
        }
        Some(_) => Err(InterpolationProblem {
            message: format!("`${{{body}}}` uses an unknown operator"),
            hint: "use ${NAME}, ${NAME:-default} or ${NAME:?message}".into(),
            missing: false,
        }),
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn truncate(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Result<String, Vec<InterpolationProblem>> {
        let vars: std::collections::BTreeMap<String, String> =
            [("HOME_DIR", "/home/x"), ("EMPTY", ""), ("N", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        interpolate(input, &vars)
    }

    #[test]
    fn table() {
        let ok = [
            ("plain", "plain"),
            ("${HOME_DIR}/a", "/home/x/a"),
            ("a${N}b${N}", "a3b3"),
            ("${MISSING:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${MISSING-dflt}", "dflt"),
            ("${N:-dflt}", "3"),
            ("${N:?needed}", "3"),
            ("$${HOME_DIR}", "${HOME_DIR}"),
            ("cost: $5", "cost: $5"),
            ("$", "$"),
            ("${MISSING:-}", ""),
            ("${MISSING:-a:b}", "a:b"),
        ];
        for (input, want) in ok {
            assert_eq!(run(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn errors() {
        let e = run("${MISSING}").unwrap_err();
        assert_eq!(e[0].message, "environment variable `MISSING` is not set");
        let e = run("${EMPTY:?give me a value}").unwrap_err();
        assert_eq!(
            e[0].message,
            "environment variable `EMPTY` is required: give me a value"
        );
        let e = run("${1BAD}").unwrap_err();
        assert!(e[0].message.contains("not a valid variable reference"));
        let e = run("abc ${OPEN").unwrap_err();
        assert!(e[0].message.contains("unterminated"));
        let e = run("${A} ${B}").unwrap_err();
        assert_eq!(e.len(), 2, "every problem is reported");
        let e = run("${N:+x}").unwrap_err();
        assert!(e[0].message.contains("unknown operator"));
    }
}

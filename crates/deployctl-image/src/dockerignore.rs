//! `.dockerignore` with Docker's semantics (moby's patternmatcher).
//!
//! - Blank lines and lines starting with `#` are ignored; surrounding spaces are trimmed.
//! - A leading `!` makes an exception (re-includes what earlier patterns excluded).
//! - Patterns are cleaned like Go's `filepath.Clean` (`./a//b/` → `a/b`); a leading `/` is
//!   dropped: patterns are relative to the context root.
//! - `*` matches any run of characters except `/`; `?` one character except `/`;
//!   `[...]` a character class (`[^...]`/`[!...]` negated, ranges); `\` escapes.
//! - `**` matches any number of directories, including none (`**/x`, `a/**/b`); at the end
//!   of a pattern it matches everything below.
//! - A path is excluded when it or any of its parent directories matches; the **last**
//!   matching pattern decides.

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `*`
    Star,
    /// `?`
    One,
    /// `[...]`
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    /// `**` at the end: anything.
    All,
    /// `**/` or `**` followed by more: zero or more whole directories.
    Dirs,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the contents of a `.dockerignore`.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (exception, body) = match l.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, l),
                };
                let cleaned = clean(body);
                let cleaned = cleaned.strip_prefix('/').unwrap_or(&cleaned).to_owned();
                if cleaned.is_empty() || cleaned == "." {
                    return None;
                }
                Some(Pattern {
                    tokens: compile(&cleaned),
                    text: cleaned,
                    exception,
                })
            })
            .collect();
        Self { patterns }
    }

    /// Whether there are exception patterns (then an excluded directory must still be
    /// walked, since something inside may be re-included).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative, `/`-separated) is excluded from the context.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            let hit = matches(&p.tokens, &path) || parents.iter().any(|d| matches(&p.tokens, d));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether a directory can be skipped without walking it: it is excluded and no
    /// exception could re-include anything below it.
    pub fn skips_dir(&self, dir: &str) -> bool {
        if !self.excludes(dir) {
            return false;
        }
        let prefix = format!("{}/", clean(dir));
        // An escape (`\b/keep` is `b/keep`) hides the prefix as surely as a wildcard.
        !self.patterns.iter().any(|p| {
            p.exception && (p.text.starts_with(&prefix) || p.text.contains(['*', '?', '[', '\\']))
        })
    }
}

/// Go's `filepath.Clean` for `/`-separated relative paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                out.push(if i >= chars.len() {
                    Token::All
                } else {
                    Token::Dirs
                });
                continue;
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push(Token::Lit(chars[i]));
            }
            '[' => {
                // Find the closing bracket; an unclosed `[` is a literal.
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('^' | '!'));
                if negated {
                    j += 1;
                }
                let start = j;
                let mut items = Vec::new();
                let mut closed = false;
                while j < chars.len() {
                    if chars[j] == ']' && j > start {
                        closed = true;
                        break;
                    }
                    let mut lo = chars[j];
                    if lo == '\\' && j + 1 < chars.len() {
                        j += 1;
                        lo = chars[j];
                    }
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|c| *c != ']')
                    {
                        items.push((lo, chars[j + 2]));
                        j += 3;
                    } else {
                        items.push((lo, lo));
                        j += 1;
                    }
                }
                if closed {
                    out.push(Token::Class { negated, items });
                    i = j + 1;
                    continue;
                }
                out.push(Token::Lit('['));
            }
            c => out.push(Token::Lit(c)),
        }
        i += 1;
    }
    out
}

fn matches(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    // Whether `tokens[t..]` matches `chars[i..]` depends on (t, i) only, so each pair is
    // tried once: without this, `*a*a*a…b` against a long name backtracks exponentially.
    let mut failed = vec![false; (tokens.len() + 1) * (chars.len() + 1)];
    match_at(tokens, &chars, 0, 0, &mut failed)
}

fn match_at(tokens: &[Token], s: &[char], t: usize, i: usize, failed: &mut [bool]) -> bool {
    let key = t * (s.len() + 1) + i;
    if failed[key] {
        return false;
    }
    let hit = match_token(tokens, s, t, i, failed);
    if !hit {
        failed[key] = true;
    }
    hit
}

fn match_token(tokens: &[Token], s: &[char], t: usize, i: usize, failed: &mut [bool]) -> bool {
    let Some(first) = tokens.get(t) else {
        return i == s.len();
    };
    let next = t + 1;
    match first {
        Token::Lit(c) => s.get(i) == Some(c) && match_at(tokens, s, next, i + 1, failed),
        Token::One => {
            s.get(i).is_some_and(|c| *c != '/') && match_at(tokens, s, next, i + 1, failed)
        }
        Token::Class { negated, items } => {
            s.get(i).is_some_and(|c| {
                *c != '/' && (items.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
            }) && match_at(tokens, s, next, i + 1, failed)
        }
        Token::Star => {
            let mut j = i;
            loop {
                if match_at(tokens, s, next, j, failed) {
                    return true;
                }
                if j >= s.len() || s[j] == '/' {
                    return false;
                }
                j += 1;
            }
        }
        Token::All => true,
        Token::Dirs => {
            // Zero directories, or skip through each following `/`.
            if match_at(tokens, s, next, i, failed) {
                return true;
            }
            (i..s.len()).any(|j| s[j] == '/' && match_at(tokens, s, next, j + 1, failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (patterns, path, excluded)
    const TABLE: &[(&str, &str, bool)] = &[
        ("target", "target", true),
        ("target", "target/debug/app", true),
        ("target", "src/target", false),
        ("/target", "target/x", true),
        ("./target/", "target/x", true),
        ("*.log", "app.log", true),
        ("*.log", "logs/app.log", false),
        ("**/*.log", "logs/app.log", true),
        ("**/*.log", "app.log", true),
        ("docs/**/*.md", "docs/a/b/c.md", true),
        ("docs/**/*.md", "docs/c.md", true),
        ("docs/**", "docs/x/y", true),
        ("docs/**", "docsx", false),
        ("**", "anything/at/all", true),
        ("a?c", "abc", true),
        ("a?c", "a/c", false),
        ("[a-c]at", "bat", true),
        ("[a-c]at", "rat", false),
        ("[^a-c]at", "rat", true),
        ("[!a-c]at", "cat", false),
        ("\\*.txt", "*.txt", true),
        ("\\*.txt", "a.txt", false),
        ("*\n!keep.log", "keep.log", false),
        ("*.log\n!important.log", "debug.log", true),
        ("*.log\n!important.log", "important.log", false),
        (
            "*.log\n!important.log\nimportant.log",
            "important.log",
            true,
        ),
        (
            "node_modules\n!node_modules/keep",
            "node_modules/keep/x.js",
            false,
        ),
        (
            "node_modules\n!node_modules/keep",
            "node_modules/other.js",
            true,
        ),
        ("# a comment\n\n  secret.txt  ", "secret.txt", true),
        ("# a comment", "# a comment", false),
        ("a/../b", "b/file", true),
        ("*/temp*", "dir/temporary.txt", true),
        ("*/temp*", "dir/sub/temporary.txt", false),
        ("*/*/temp*", "dir/sub/temporary.txt", true),
        ("temp?", "tempa", true),
        ("!", "x", false),
    ];

    #[test]
    fn docker_semantics_table() {
        for (patterns, path, want) in TABLE {
            let ig = DockerIgnore::parse(patterns);
            assert_eq!(
                ig.excludes(path),
                *want,
                "patterns {patterns:?} path {path:?}"
            );
        }
    }

    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        // Timed out the `dockerignore` fuzz target (fixtures/fuzz/dockerignore/): exponential
        // backtracking took minutes; each (token, position) is now tried once.
        let pattern = format!("{}b", "*a".repeat(12));
        let ig = DockerIgnore::parse(&pattern);
        let start = std::time::Instant::now();
        assert!(!ig.excludes(&"a".repeat(60)));
        assert!(ig.excludes(&format!("{}b", "a".repeat(60))));
        let ig = DockerIgnore::parse(&format!("{}b", "**/a".repeat(12)));
        assert!(!ig.excludes(&"a/".repeat(40)));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("a//b/", "a/b"),
            ("./a", "a"),
            ("a/./b/../c", "a/c"),
            ("", "."),
            ("/", "/"),
            ("../x", "../x"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn directory_skipping_respects_exceptions() {
        let ig = DockerIgnore::parse("node_modules\n");
        assert!(ig.skips_dir("node_modules"));
        let ig = DockerIgnore::parse("node_modules\n!node_modules/keep\n");
        assert!(!ig.skips_dir("node_modules"));
        let ig = DockerIgnore::parse("build\n!*.keep\n");
        assert!(
            !ig.skips_dir("build"),
            "a wildcard exception may match inside"
        );
        // Broke the `dockerignore` fuzz property (fixtures/fuzz/dockerignore/).
        let ig = DockerIgnore::parse("build\n!\\build/keep\n");
        assert!(!ig.excludes("build/keep"));
        assert!(
            !ig.skips_dir("build"),
            "an escaped exception may match inside"
        );
    }
}

//! The `dockerignore` target: a `.dockerignore` and paths matched against it.
//!
//! The input is `patterns NUL paths` (one path a line); without a NUL, the pattern lines
//! are the paths too, so a seed `.dockerignore` is a useful input as it is.
//!
//! Properties, for every relative path:
//! - matching returns (within libFuzzer's `-timeout`: no backtracking blow-up);
//! - paths are cleaned first: `./p` and `p/` match as `p` does;
//! - a directory [`DockerIgnore::skips_dir`] says need not be walked holds nothing that is
//!   included: every path below it is excluded (else a build context would miss files).
//!   Directories are clean paths below the root (no empty, `.` or `..` component), as the
//!   context walk asks.

use super::DockerIgnore;

/// Paths below a skipped directory checked besides the input's own lines.
const CHILDREN: [&str; 4] = ["x", "x/y", ".keep", "a b"];

/// At most this many paths (and children) per input, so one input stays cheap.
const MAX_PATHS: usize = 8;

/// Checks the properties for `data`.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, &text));
    let ig = DockerIgnore::parse(patterns);
    let _ = ig.has_exceptions();
    let paths: Vec<&str> = paths
        .lines()
        .map(|l| l.trim_start_matches('!'))
        // An empty line is no path, and a `/` path is not relative.
        .filter(|p| !p.is_empty() && !p.starts_with('/'))
        .take(MAX_PATHS)
        .collect();
    // Children: fixed names, the input's paths and what follows each `/` in them (so
    // `a` and `!b/c` also try `a/c`); plain names, no `..` that would climb out.
    let suffixes = paths
        .iter()
        .flat_map(|p| p.match_indices('/').map(move |(i, _)| &p[i + 1..]));
    let children: Vec<&str> = CHILDREN
        .iter()
        .copied()
        .chain(paths.iter().copied())
        .chain(suffixes)
        .filter(|c| !c.is_empty() && !c.split('/').any(|s| s == ".." || s == "."))
        .take(2 * MAX_PATHS)
        .collect();
    for path in &paths {
        let excluded = ig.excludes(path);
        assert_eq!(
            ig.excludes(&format!("./{path}")),
            excluded,
            "./{path:?} vs {path:?}"
        );
        assert_eq!(
            ig.excludes(&format!("{path}/")),
            excluded,
            "{path:?}/ vs {path:?}"
        );
        // The context walk asks only about clean directory paths below the root.
        let walkable = path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if walkable && ig.skips_dir(path) {
            assert!(excluded, "skips {path:?} but does not exclude it");
            for child in &children {
                let below = format!("{path}/{child}");
                assert!(
                    ig.excludes(&below),
                    "skips directory {path:?} but {below:?} below it is included; patterns:\n{patterns}"
                );
            }
        }
    }
}

//! Global options anywhere on the command line, as kubectl, docker and aws accept them.
//!
//! argh reads the top-level options (`-c/--config`, `-e/--env`, `--context`, `-o/--output`,
//! `-v`) only before the subcommand. [`normalise`] moves them there from wherever the user put
//! them, before argh parses. The set of global options is read from the `Cli` definition
//! itself (argh's `ArgsInfo`), never listed here; a subcommand's own options keep their values
//! (a subcommand option of the same name wins), and everything after `--` is left alone.
//! `--name=value` is split for the options this moves.

use argh::{ArgsInfo, FlagInfoKind};

use crate::cli::Cli;

/// One option as this module needs it.
struct Opt {
    long: String,
    short: Option<char>,
    takes_value: bool,
}

fn opts(flags: &[argh::FlagInfo<'_>]) -> Vec<Opt> {
    flags
        .iter()
        .filter(|f| f.long != "--help")
        .map(|f| Opt {
            long: f.long.to_owned(),
            short: f.short,
            takes_value: matches!(f.kind, FlagInfoKind::Option { .. }),
        })
        .collect()
}

/// The option `token` names (`--config`, `-c`, or `--config=…`), and the inline value.
fn find<'o>(options: &'o [Opt], token: &str) -> Option<(&'o Opt, Option<String>)> {
    let (name, inline) = match token.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
        _ => (token, None),
    };
    options
        .iter()
        .find(|o| {
            o.long == name
                || o.short.is_some_and(|s| {
                    name.len() == 2 && name.strip_prefix('-') == Some(&s.to_string())
                })
        })
        .map(|o| (o, inline))
}

/// `-vv` → `--verbose --verbose` when `v` is a global switch; `None` for any other token.
fn repeated_short_switch(globals: &[Opt], token: &str) -> Option<Vec<String>> {
    let letters = token.strip_prefix('-')?;
    let first = letters.chars().next()?;
    if letters.len() < 2 || letters.starts_with('-') || !letters.chars().all(|c| c == first) {
        return None;
    }
    let opt = globals
        .iter()
        .find(|o| o.short == Some(first) && !o.takes_value)?;
    Some(letters.chars().map(|_| opt.long.clone()).collect())
}

/// The arguments (without the program name) with every global option moved before the
/// subcommand, in the order given.
pub fn normalise(args: &[String]) -> Vec<String> {
    let info = Cli::get_args_info();
    let globals: Vec<Opt> = opts(info.flags)
        .into_iter()
        .filter(|o| o.long != "--version")
        .collect();
    let mut front: Vec<String> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    // The options of the subcommands named so far (`serve`, then `serve token`, …) and the
    // subcommands the innermost of them has.
    let mut own: Option<Vec<Opt>> = None;
    let mut nested = &info.commands;
    let mut i = 0;
    while i < args.len() {
        let token = &args[i];
        i += 1;
        if token == "--" {
            rest.extend(args[i - 1..].iter().cloned());
            break;
        }
        let sub_opts = own.as_deref().unwrap_or(&[]);
        if let Some((o, inline)) = find(sub_opts, token) {
            // The subcommand's own option: keep it and its value where they are.
            rest.push(token.clone());
            if o.takes_value && inline.is_none() && i < args.len() {
                rest.push(args[i].clone());
                i += 1;
            }
            continue;
        }
        if let Some((o, inline)) = find(&globals, token) {
            front.push(o.long.clone());
            if o.takes_value {
                match inline {
                    Some(v) => front.push(v),
                    None if i < args.len() => {
                        front.push(args[i].clone());
                        i += 1;
                    }
                    None => {}
                }
            }
            continue;
        }
        if let Some(expanded) = repeated_short_switch(&globals, token) {
            front.extend(expanded);
            continue;
        }
        if !token.starts_with('-') {
            // A (nested) subcommand: from here on its own options take precedence.
            let sub = nested.iter().find(|c| c.name == token);
            if own.is_none() || sub.is_some() {
                let mut mine = own.take().unwrap_or_default();
                if let Some(c) = sub {
                    mine.extend(opts(c.command.flags));
                    nested = &c.command.commands;
                }
                own = Some(mine);
            }
        }
        rest.push(token.clone());
    }
    front.extend(rest);
    front
}

#[cfg(test)]
mod tests {
    use super::normalise;

    fn n(args: &str) -> String {
        let v: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        normalise(&v).join(" ")
    }

    #[test]
    fn global_options_after_the_subcommand_move_before_it() {
        assert_eq!(n("validate --config x.yaml"), "--config x.yaml validate");
        assert_eq!(n("validate -c x.yaml"), "--config x.yaml validate");
        assert_eq!(
            n("deploy local --output json"),
            "--output json deploy local"
        );
        assert_eq!(
            n("deploy local -o json -c d.yaml"),
            "--output json --config d.yaml deploy local"
        );
        assert_eq!(
            n("status --context kind-dev -e staging"),
            "--context kind-dev --env staging status"
        );
        assert_eq!(
            n("deploy --config=a.yaml lambda"),
            "--config a.yaml deploy lambda"
        );
    }

    #[test]
    fn verbosity_counts_wherever_it_is() {
        assert_eq!(n("deploy -vv lambda"), "--verbose --verbose deploy lambda");
        assert_eq!(n("-v deploy -v"), "--verbose --verbose deploy");
    }

    #[test]
    fn subcommand_options_and_values_stay_put() {
        // `-t` is build's own; a value that looks like a global option is a value.
        assert_eq!(n("build -t -c"), "build -t -c");
        assert_eq!(n("logs k8s --filter -o"), "logs k8s --filter -o");
        assert_eq!(
            n("deploy lambda --image r@sha256:1"),
            "deploy lambda --image r@sha256:1"
        );
    }

    #[test]
    fn nested_subcommand_options_win_over_globals_of_the_same_name() {
        // `serve token create --project` is the nested command's own option, not the global
        // `--project` of the thin client.
        assert_eq!(
            n("serve token create --project p --role deploy -o json"),
            "--output json serve token create --project p --role deploy"
        );
    }

    #[test]
    fn nothing_after_a_double_dash_moves() {
        assert_eq!(n("init -- -c"), "init -- -c");
    }

    #[test]
    fn globals_before_the_subcommand_are_unchanged() {
        assert_eq!(
            n("--config a.yaml --env prod plan"),
            "--config a.yaml --env prod plan"
        );
    }
}

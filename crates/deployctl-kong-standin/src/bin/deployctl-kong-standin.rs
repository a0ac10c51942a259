//! Runs the Kong Admin API stand-in until Ctrl-C, so clients can be tried by hand:
//! `deployctl-kong-standin [--port N] [--admin-token T]`. With
//! `DEPLOYCTL_KONG_STANDIN_TRACE` set, every request is printed on stderr.

use deployctl_kong_standin::{KongStandin, Options};

const USAGE: &str = "usage: deployctl-kong-standin [--port N] [--admin-token TOKEN]";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => match p.parse() {
                Ok(p) => options.port = p,
                Err(_) => {
                    eprintln!("deployctl-kong-standin: --port {p}: not a port number\n{USAGE}");
                    return std::process::ExitCode::from(2);
                }
            },
            ("--admin-token", Some(t)) => options.admin_token = Some(t),
            _ => {
                eprintln!("deployctl-kong-standin: unexpected argument {a}\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let standin = match KongStandin::start_with(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deployctl-kong-standin: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!("serving the Kong Admin API stand-in on {}", standin.url());
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}

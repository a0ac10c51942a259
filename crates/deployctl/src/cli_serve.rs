//! The arguments of `deployctl serve` and `deployctl serve token …` (shapes only; behaviour
//! is in `commands/serve.rs`).

use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};

/// Run the deployment API (issue 17): HTTP on loopback by default, jobs through the same
/// pipeline as `deployctl deploy`, state in SQLite (the data dir) or PostgreSQL.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// address to listen on (default 127.0.0.1:8787)
    #[argh(option, default = "String::from(\"127.0.0.1:8787\")")]
    pub listen: String,

    /// postgres://user:password@host:port/db to share one database between servers
    /// (default: $DEPLOYCTL_DATABASE_URL, else SQLite in --data-dir)
    #[argh(option)]
    pub database_url: Option<String>,

    /// where the SQLite database and job directories live (default:
    /// ~/.local/share/deployctl/server)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// deployments run at once by this process (default 4)
    #[argh(option, default = "4")]
    pub workers: usize,

    /// deployments a project may have queued or running; one more is answered 429
    /// (default 20)
    #[argh(option, default = "20")]
    pub queue_cap: u32,

    /// let a request's deploy.yaml name build paths outside the job's directory (absolute
    /// or with ..), which the server then reads: for trusted clients only
    #[argh(switch)]
    pub trust_config_paths: bool,

    /// largest upload (.tar.gz request body), in MiB (default 100)
    #[argh(
        option,
        default = "deployctl_server::unpack::UploadLimits::default().compressed_bytes >> 20"
    )]
    pub upload_max_mib: u64,

    /// largest upload once gunzipped, in MiB (default 1024)
    #[argh(
        option,
        default = "deployctl_server::unpack::UploadLimits::default().unpacked_bytes >> 20"
    )]
    pub upload_max_unpacked_mib: u64,

    /// most entries (files, directories, links) in one upload (default 20000)
    #[argh(
        option,
        default = "deployctl_server::unpack::UploadLimits::default().files"
    )]
    pub upload_max_files: u64,

    #[argh(subcommand)]
    pub command: Option<ServeCommand>,
}

#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand)]
pub enum ServeCommand {
    Token(TokenArgs),
}

/// Manage API tokens (stored hashed; a secret is printed once, at create).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "token")]
pub struct TokenArgs {
    #[argh(subcommand)]
    pub command: TokenCommand,
}

#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand)]
pub enum TokenCommand {
    Create(TokenCreateArgs),
    List(TokenListArgs),
    Revoke(TokenRevokeArgs),
}

/// Create a token for one project and print its secret (once).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "create")]
pub struct TokenCreateArgs {
    /// the project the token may act on
    #[argh(option)]
    pub project: String,

    /// read, deploy or admin
    #[argh(option)]
    pub role: String,

    /// how long it is valid: 90s, 15m, 12h, 30d (default 30d)
    #[argh(option, default = "String::from(\"30d\")")]
    pub ttl: String,

    /// as `deployctl serve --database-url`
    #[argh(option)]
    pub database_url: Option<String>,

    /// as `deployctl serve --data-dir`
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// List tokens: id, project, role, expiry, revoked (never the secrets).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "list")]
pub struct TokenListArgs {
    /// as `deployctl serve --database-url`
    #[argh(option)]
    pub database_url: Option<String>,

    /// as `deployctl serve --data-dir`
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

/// Revoke a token by its id (tok_…).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "revoke")]
pub struct TokenRevokeArgs {
    /// the token's id
    #[argh(positional)]
    pub id: String,

    /// as `deployctl serve --database-url`
    #[argh(option)]
    pub database_url: Option<String>,

    /// as `deployctl serve --data-dir`
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
}

//! `mittari token new`: a bearer token and the configuration block that admits it.

use crate::*;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a fresh token, and the configuration block that admits it (holding only its
    /// SHA-256). Clients send it as `authorization: Bearer <token>`; the CLI reads it from the
    /// MITTARI_TOKEN environment variable.
    New {
        /// The token's name, as the server's audit log shows it.
        name: String,
        /// What the token may do, repeatable: compute (list, describe, compute, read and score
        /// with stored models), models (fit models, delete versions, move aliases) or admin.
        #[arg(long = "scope", default_values_t = [Scope::Compute])]
        scopes: Vec<Scope>,
    },
}

pub(crate) fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::New { name, scopes } => {
            let (token, config) =
                mittari_server::new_token(&name, &scopes).map_err(anyhow::Error::msg)?;
            // The configuration block on standard output, so `>> mittari.toml` appends exactly
            // it; the secret on standard error, where a redirection does not take it along.
            eprintln!(
                "the token (shown once; hand it to the client as a secret, e.g. in MITTARI_TOKEN):\n{token}\n"
            );
            print(&format!(
                "# token {name}, made by `mittari token new`: only its SHA-256 is stored here\n{config}"
            ))
        }
    }
}

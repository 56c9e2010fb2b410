//! `elihu secret set|ls|rm|keygen`: secrets from the command line. A value
//! is read from stdin or a file, never from a flag (flags end up in shell
//! history and process lists), and is never printed.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use zeroize::Zeroizing;

use elihu::secrets::SecretsKey;

use super::settings::{DbArgs, open};

/// `elihu secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret (create or replace) from stdin, or from a file with
    /// --from-file. One trailing newline is dropped. Needs the secrets key.
    Set {
        #[command(flatten)]
        db: DbArgs,
        /// The secret's name (letters, digits, `_`, `-`).
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// List secrets: names and times, never values.
    Ls {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret (refused while a template uses it).
    Rm {
        #[command(flatten)]
        db: DbArgs,
        /// The secret.
        name: String,
    },
    /// Print a fresh random secrets key (64 hex digits) to give every node.
    Keygen,
}

pub async fn run(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set { db, name, from_file } => {
            let mut value = Zeroizing::new(Vec::new());
            match &from_file {
                Some(path) => {
                    *value = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                }
                None => {
                    std::io::stdin().read_to_end(&mut value).context("reading the value from stdin")?;
                }
            }
            if value.last() == Some(&b'\n') {
                value.pop();
                if value.last() == Some(&b'\r') {
                    value.pop();
                }
            }
            let client = open(&db).await?;
            let created = client.secret_set(&name, &value).await?;
            println!("secret {name} {}", if created { "created" } else { "updated" });
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Ls { db, json } => {
            let client = open(&db).await?;
            let secrets = client.secret_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&secrets)?);
                return Ok(ExitCode::SUCCESS);
            }
            match client.secrets_key_id() {
                Some(id) => println!("secrets key in use: id {id}"),
                None => println!("no secrets key given"),
            }
            if secrets.is_empty() {
                println!("no secrets; set one with `elihu secret set NAME` (the value on stdin)");
            } else {
                println!("{:<32} {:<26} {:<26}", "NAME", "CREATED", "UPDATED");
                for s in secrets {
                    println!("{:<32} {:<26} {:<26}", s.name, s.created_at, s.updated_at);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Rm { db, name } => {
            let client = open(&db).await?;
            client.secret_delete(&name).await?;
            println!("deleted secret {name}");
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Keygen => {
            let key = SecretsKey::generate();
            println!("{}", key.to_hex().as_str());
            eprintln!("key id {}: keep the key safe and give every node the same one", key.id());
            Ok(ExitCode::SUCCESS)
        }
    }
}

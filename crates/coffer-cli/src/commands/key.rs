//! `coffer key`: list, add, remove and change the passwords that open the repository.

use crate::context::{kdf_params, Ctx};
use crate::output::{self, code, UsageError};
use anyhow::Result;
use clap::{Args, Subcommand};
use coffer_ops::password::{read_password_file, Password};
use std::path::PathBuf;

/// `key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files.
    List,
    /// Add a password.
    Add(NewPassword),
    /// Remove a key file (not the one in use).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Change the password of the key in use.
    Passwd(NewPassword),
}

/// Where a new password comes from.
#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file.
    #[arg(long, env = "COFFER_NEW_PASSWORD_FILE")]
    pub new_password_file: Option<PathBuf>,
}

fn new_password(n: &NewPassword) -> Result<Password> {
    if let Some(f) = &n.new_password_file {
        return Ok(read_password_file(f)?);
    }
    if let Ok(p) = std::env::var("COFFER_NEW_PASSWORD") {
        if !p.is_empty() {
            return Ok(Password::new(p.into_bytes()));
        }
    }
    Err(
        UsageError("no new password given: use --new-password-file or COFFER_NEW_PASSWORD".into())
            .into(),
    )
}

/// Runs `key ...`.
pub async fn run(ctx: &Ctx, k: KeyCommand) -> Result<u8> {
    let repo = ctx.open().await?;
    match k {
        KeyCommand::List => {
            let keys = repo.list_keys().await?;
            if ctx.global.json {
                output::print_json(&keys);
            } else {
                for k in keys {
                    println!(
                        "{} {}  {}  {}@{}",
                        if k.current { "*" } else { " " },
                        k.id.short(),
                        k.created.format("%Y-%m-%d %H:%M:%S"),
                        k.username,
                        k.hostname
                    );
                }
            }
        }
        KeyCommand::Add(n) => {
            let id = repo.add_key(&new_password(&n)?, kdf_params()?).await?;
            if ctx.global.json {
                output::print_json(&serde_json::json!({ "added": id }));
            } else if !ctx.global.quiet {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys().await?;
            let m: Vec<_> = keys
                .iter()
                .filter(|k| k.id.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            let k = match m.len() {
                0 => {
                    return Err(coffer_core::Error::not_found(format!(
                        "no key has an id starting with {id}"
                    ))
                    .into())
                }
                1 => m[0],
                _ => {
                    return Err(coffer_core::Error::new(
                        coffer_core::ErrorKind::Ambiguous,
                        format!("key prefix {id} is ambiguous"),
                    )
                    .into())
                }
            };
            if keys.len() == 1 {
                return Err(coffer_core::Error::invalid(
                    "refusing to remove the last key: the repository could never be opened again",
                )
                .into());
            }
            repo.remove_key(&k.id).await?;
            if ctx.global.json {
                output::print_json(&serde_json::json!({ "removed": k.id }));
            } else if !ctx.global.quiet {
                println!("removed key {}", k.id.short());
            }
        }
        KeyCommand::Passwd(n) => {
            let id = repo
                .change_password(&new_password(&n)?, kdf_params()?)
                .await?;
            if ctx.global.json {
                output::print_json(&serde_json::json!({ "key": id }));
            } else if !ctx.global.quiet {
                println!("password changed (key {})", id.short());
            }
        }
    }
    Ok(code::OK)
}

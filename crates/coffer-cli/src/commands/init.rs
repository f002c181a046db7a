//! `coffer init`: create a repository.

use crate::context::{kdf_params, Ctx};
use crate::output::{self, UsageError};
use anyhow::Result;
use clap::Args;
use coffer_core::compression::Compression;
use coffer_core::crypto::Encryption;
use coffer_core::InitOptions;

/// `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// zstd[:LEVEL] (default zstd:3), lz4, gzip[:LEVEL], bzip2[:LEVEL] or none.
    #[arg(long, default_value = "zstd:3")]
    pub compression: String,
    /// aes256-gcm (default), aes128-gcm, chacha20-poly1305, or none (needs
    /// --insecure-no-encryption).
    #[arg(long, default_value = "aes256-gcm")]
    pub encryption: String,
    /// Allow --encryption none: data stays authenticated but anyone can read it.
    #[arg(long)]
    pub insecure_no_encryption: bool,
    /// Chunk sizes in bytes, MIN,AVG,MAX (for benchmarks; the default is measured, see
    /// docs/format.md).
    #[arg(long, hide = true)]
    pub chunker: Option<String>,
}

/// Runs `init`.
pub async fn run(ctx: &Ctx, a: InitArgs) -> Result<u8> {
    let compression: Compression = a
        .compression
        .parse()
        .map_err(|e: coffer_core::Error| UsageError(format!("{e:#}")))?;
    let encryption: Encryption = a
        .encryption
        .parse()
        .map_err(|e: coffer_core::Error| UsageError(format!("{e:#}")))?;
    if encryption == Encryption::None && !a.insecure_no_encryption {
        return Err(UsageError("--encryption none stores data readable by anyone: add --insecure-no-encryption if that is what you want".into()).into());
    }
    if encryption == Encryption::None {
        eprintln!("coffer: warning: this repository is NOT encrypted: anyone who can read it can read your data (it is still authenticated)");
    }
    let password = ctx.password()?;
    let repo = ctx.closed().await?;
    let mut opts = InitOptions {
        compression,
        encryption,
        kdf: kdf_params()?,
        ..Default::default()
    };
    if let Some(c) = &a.chunker {
        let v: Vec<u32> = c.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        match v[..] {
            [min_size, avg_size, max_size]
                if 64 <= min_size
                    && min_size <= avg_size
                    && avg_size <= max_size
                    && max_size <= 64 << 20 =>
            {
                opts.chunker = coffer_core::chunker::ChunkerParams {
                    min_size,
                    avg_size,
                    max_size,
                };
            }
            _ => {
                return Err(UsageError(format!(
                    "--chunker {c:?} is not MIN,AVG,MAX with MIN <= AVG <= MAX <= 64 MiB"
                ))
                .into())
            }
        }
    }
    let repo = repo.init(&password, opts).await?;
    let url = ctx.repo_url()?;
    if ctx.global.json {
        output::print_json(
            &serde_json::json!({ "repository": url, "id": repo.config().id, "compression": repo.config().compression, "encryption": repo.config().encryption }),
        );
    } else if !ctx.global.quiet {
        println!(
            "created repository {} at {url} ({}, {})",
            repo.config().id.short(),
            repo.config().compression,
            repo.config().encryption
        );
    }
    Ok(output::code::OK)
}

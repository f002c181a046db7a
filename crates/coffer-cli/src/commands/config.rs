//! `coffer config`: the settings stored in the repository and shared by every client: the
//! retention policy `forget` applies when given no flags, and the mirrors every backup is
//! copied to (`coffer_core::settings`).

use crate::commands::forget::{policy_from, PolicyArgs};
use crate::context::Ctx;
use crate::output::{self, code, UsageError};
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_core::retention::parse_timezone;
use coffer_core::settings::{Mirror, Settings, StoredSettings};
use coffer_core::{Open, Repository};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The `config` subcommands.
#[derive(Subcommand, Debug)]
// Parsed once per run: the size of the policy flags does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ConfigCommand {
    /// Print the repository's settings.
    Show,
    /// Store the retention policy `forget` applies when it is given no policy flags (the same
    /// flags as `forget`; --timezone is stored with it).
    SetRetention(PolicyArgs),
    /// Remove the stored retention policy.
    ClearRetention,
    /// Copy every new snapshot to another repository after its backup (it must exist).
    AddMirror(AddMirrorArgs),
    /// Stop copying new snapshots to a mirror (what it holds stays there).
    RemoveMirror(RemoveMirrorArgs),
}

/// `config add-mirror`.
#[derive(Args, Debug)]
pub struct AddMirrorArgs {
    /// The mirror repository's URL (create it first with `coffer init`).
    pub url: String,
    /// The mirror's password file, read on each backup (default: this repository's password).
    #[arg(long, value_name = "FILE")]
    pub mirror_password_file: Option<PathBuf>,
    /// A command printing the mirror's password (run on each backup).
    #[arg(long, value_name = "COMMAND", conflicts_with = "mirror_password_file")]
    pub mirror_password_command: Option<String>,
    /// A non-secret storage option for the mirror, KEY=VALUE (repeatable); credentials come
    /// from the environment, never from the repository.
    #[arg(long = "mirror-option", value_name = "KEY=VALUE")]
    pub mirror_options: Vec<String>,
}

/// `config remove-mirror`.
#[derive(Args, Debug)]
pub struct RemoveMirrorArgs {
    /// The mirror's URL, as `config show` lists it.
    pub url: String,
}

/// Runs a `config` subcommand.
pub async fn run(ctx: &Ctx, cmd: ConfigCommand) -> Result<u8> {
    // Flags are checked before the repository is opened.
    let change = match &cmd {
        ConfigCommand::Show => None,
        ConfigCommand::SetRetention(p) => {
            let policy = policy_from(p)?.ok_or_else(|| {
                UsageError(
                    "give the policy to store, with the flags `forget` takes (--keep-daily 7 \
                     --keep-weekly 4 ...)"
                        .into(),
                )
            })?;
            if let Some(tz) = &p.timezone {
                parse_timezone(tz).map_err(|e| UsageError(format!("--timezone: {e:#}")))?;
            }
            Some(Change::Retention(Some((policy, p.timezone.clone()))))
        }
        ConfigCommand::ClearRetention => Some(Change::Retention(None)),
        ConfigCommand::AddMirror(a) => Some(Change::AddMirror(mirror_from(a)?)),
        ConfigCommand::RemoveMirror(a) => Some(Change::RemoveMirror(a.url.clone())),
    };
    let repo = ctx.open().await?;
    let Some(change) = change else {
        let stored = repo.load_settings().await?;
        show(ctx, &stored);
        return Ok(code::OK);
    };
    let mut settings = repo.load_settings().await?.settings;
    let what = match change {
        Change::Retention(Some((policy, tz))) => {
            let msg = format!("retention policy stored: {policy}");
            settings.retention = Some(policy);
            settings.timezone = tz;
            msg
        }
        Change::Retention(None) => {
            if settings.retention.is_none() {
                return Err(UsageError("the repository stores no retention policy".into()).into());
            }
            settings.retention = None;
            settings.timezone = None;
            "retention policy removed: `forget` now needs policy flags".into()
        }
        Change::AddMirror(m) => {
            if settings.mirrors.iter().any(|o| o.url == m.url) {
                return Err(UsageError(format!("{} is a mirror already", m.url)).into());
            }
            if m.url == ctx.repo_url()? {
                return Err(UsageError("a repository cannot be its own mirror".into()).into());
            }
            // A mirror that cannot be opened would fail every backup: prove it works now.
            let spec = coffer_ops::mirror::mirror_spec(&ctx.spec()?, &m)?;
            let mirror = spec.open().await.with_context(|| {
                format!(
                    "cannot open the mirror {} (create it with `coffer init`, and check its \
                     password and options)",
                    m.url
                )
            })?;
            if mirror.config().id == repo.config().id {
                return Err(UsageError(format!(
                    "{} is this repository itself, not a mirror",
                    m.url
                ))
                .into());
            }
            let msg = format!(
                "mirror added: every new snapshot is copied to {} after its backup (copy the \
                 existing ones with `coffer copy --from {} --to {}`)",
                m.url,
                ctx.repo_url()?,
                m.url
            );
            settings.mirrors.push(m);
            msg
        }
        Change::RemoveMirror(url) => {
            let before = settings.mirrors.len();
            settings.mirrors.retain(|m| m.url != url);
            if settings.mirrors.len() == before {
                return Err(UsageError(format!(
                    "{url} is not a mirror of this repository (see `coffer config show`)"
                ))
                .into());
            }
            format!("mirror removed: new snapshots are no longer copied to {url}")
        }
    };
    let seq = save(&repo, &settings).await?;
    if ctx.global.json {
        let stored = repo.load_settings().await?;
        show(ctx, &stored);
    } else if !ctx.global.quiet {
        println!("{what} (settings #{seq})");
    }
    Ok(code::OK)
}

enum Change {
    Retention(Option<(coffer_core::retention::Policy, Option<String>)>),
    AddMirror(Mirror),
    RemoveMirror(String),
}

async fn save(repo: &Repository<Open>, settings: &Settings) -> Result<u64> {
    let lock = repo.lock(false, "config").await?;
    let seq = repo.save_settings(settings).await;
    lock.release().await.ok();
    Ok(seq?)
}

/// Builds a mirror entry; refuses anything that would store a secret.
fn mirror_from(a: &AddMirrorArgs) -> Result<Mirror> {
    coffer_storage::Location::parse(&a.url).map_err(|e| UsageError(format!("{e:#}")))?;
    let mut options = BTreeMap::new();
    let mut check = coffer_storage::StorageOptions::default();
    for pair in &a.mirror_options {
        check
            .set_pair(pair)
            .map_err(|e| UsageError(format!("--mirror-option: {e:#}")))?;
        let (k, v) = pair.split_once('=').expect("set_pair checked the form");
        // Security rule: credentials never go into the repository; they come from the
        // environment of the machine that runs the backup.
        if coffer_storage::StorageOptions::is_secret(k) {
            return Err(UsageError(format!(
                "--mirror-option {k}: that is a secret, and the repository never stores secrets; \
                 set it in the environment of the machines that back up"
            ))
            .into());
        }
        options.insert(k.to_string(), v.to_string());
    }
    let absolute = |p: &PathBuf| -> Result<String> {
        Ok(std::path::absolute(p)
            .with_context(|| format!("cannot resolve {}", p.display()))?
            .to_string_lossy()
            .into_owned())
    };
    Ok(Mirror {
        url: a.url.clone(),
        password_file: a.mirror_password_file.as_ref().map(absolute).transpose()?,
        password_command: a.mirror_password_command.clone(),
        options,
    })
}

/// A mirror as printed: its password command, which may hold a secret, is hidden.
fn shown_mirror(m: &Mirror) -> serde_json::Value {
    let mut v = serde_json::to_value(m).expect("a mirror serializes");
    if m.password_command.is_some() {
        v["password_command"] = "***".into();
    }
    v
}

fn show(ctx: &Ctx, stored: &StoredSettings) {
    let s = &stored.settings;
    if ctx.global.json {
        output::print_json(&serde_json::json!({
            "sequence": stored.sequence,
            "written": stored.written.as_ref().map(|(t, h)| serde_json::json!({"time": t, "hostname": h})),
            "retention": s.retention,
            "timezone": s.timezone,
            "mirrors": s.mirrors.iter().map(shown_mirror).collect::<Vec<_>>(),
        }));
        return;
    }
    match &stored.written {
        Some((t, h)) => println!(
            "settings #{} written {} by {h}",
            stored.sequence,
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => println!("no settings stored (the defaults apply)"),
    }
    match &s.retention {
        Some(p) => println!(
            "retention: {p} (time zone: {})",
            s.timezone.as_deref().unwrap_or("each client's own")
        ),
        None => println!("retention: none (`forget` needs policy flags)"),
    }
    if s.mirrors.is_empty() {
        println!("mirrors: none");
    }
    for m in &s.mirrors {
        let password = match (&m.password_file, &m.password_command) {
            (Some(f), _) => format!("password file {f}"),
            // A command may hold a secret (`echo ...`): it is never shown.
            (None, Some(_)) => "a password command".into(),
            (None, None) => "this repository's password".into(),
        };
        let opts: Vec<String> = m.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "mirror: {} ({password}{}{})",
            m.url,
            if opts.is_empty() { "" } else { "; options " },
            opts.join(" ")
        );
    }
}

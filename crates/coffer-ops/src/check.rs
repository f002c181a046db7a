//! Checking a repository: its structure (index, snapshots, trees) and, when asked, its data
//! (every pack, or a random share of them, read and authenticated).

use crate::progress::{Phase, Progress};
use crate::repo::RepoSpec;
use crate::CancellationToken;
use coffer_core::check::{CheckOptions, CheckReport};
use coffer_core::{Error, Result};

/// Parses a share of packs to read, such as `10%` or `2.5%`: above 0 and at most 100 percent.
/// Returns the fraction (0 to 1].
pub fn parse_subset(s: &str) -> Result<f64> {
    let v: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| {
        Error::usage(format!(
            "--read-data-subset {s:?} is not a percentage such as 10%"
        ))
    })?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(Error::usage(format!(
            "--read-data-subset {s:?} must be above 0% and at most 100%"
        )));
    }
    Ok(v / 100.0)
}

/// Checks the repository of `spec` under a shared lock (none with `no_lock`). Damage is
/// reported, not an error.
pub async fn check(
    spec: &RepoSpec,
    opts: &CheckOptions,
    no_lock: bool,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<CheckReport> {
    progress.phase(Phase::Opening);
    let (locked, snapshots) = spec.open_listed("check", no_lock, progress).await?;
    locked
        .run(|repo| async move {
            progress.phase(Phase::Checking);
            let check = repo.check_snapshots(opts, snapshots);
            crate::or_cancelled(cancel, "the check", check).await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_percentages_above_zero_up_to_a_hundred() {
        assert_eq!(parse_subset("10%").unwrap(), 0.1);
        assert_eq!(parse_subset("100").unwrap(), 1.0);
        for bad in ["0%", "101%", "-5%", "ten", ""] {
            let e = parse_subset(bad).unwrap_err();
            assert_eq!(e.kind(), coffer_core::ErrorKind::Usage, "{bad}");
        }
    }
}

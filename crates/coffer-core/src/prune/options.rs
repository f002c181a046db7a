//! What a prune may do: [`PruneOptions`], with the unused space it tolerates ([`MaxUnused`]),
//! the grace period ([`DEFAULT_GRACE`]) and the stages a crash test can stop it at
//! ([`PruneStage`], [`PruneHook`]).

use crate::error::{Error, Result};
use crate::id::Id;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a pack stays pending before a prune may delete it: one hour, twice the time after
/// which a lock that is not refreshed counts as stale. A backup holding a live lock keeps prune
/// out entirely; the grace period protects a backup whose lock went stale (a suspended laptop,
/// a lost network) and that resumes with an index read before the mark.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// How much unused space prune tolerates before it repacks (`--max-unused`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Never repack; only fully unused packs are deleted.
    Unlimited,
    /// At most this share (0..100) of the stored blobs may be unused.
    Percent(f64),
    /// At most this many unused bytes.
    Bytes(u64),
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(10.0)
    }
}

impl MaxUnused {
    /// The unused bytes tolerated next to `used` bytes of used blobs.
    pub fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Unlimited => u64::MAX,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
            // unused / (used + unused) <= p  <=>  unused <= used * p / (1 - p)
            MaxUnused::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
        }
    }
}

impl FromStr for MaxUnused {
    type Err = Error;

    /// `10%`, `0%`, `500MiB` (any size `forget --max-size` takes), or `unlimited`.
    fn from_str(s: &str) -> Result<MaxUnused> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxUnused::Percent(v)),
                _ => Err(Error::invalid(format!(
                    "{s:?} is not a percentage from 0% to 100%"
                ))),
            };
        }
        t.parse::<crate::retention::ByteSize>()
            .map(|b| MaxUnused::Bytes(b.0))
            .map_err(|_| {
                Error::invalid(format!(
                    "{s:?} is not a limit: write a percentage (10%), a size (500MiB) or `unlimited`"
                ))
            })
    }
}

impl fmt::Display for MaxUnused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxUnused::Unlimited => f.write_str("unlimited"),
            MaxUnused::Percent(p) => write!(f, "{p}%"),
            MaxUnused::Bytes(b) => write!(f, "{}", crate::retention::ByteSize(*b)),
        }
    }
}

/// The points of a prune run at which [`PruneOptions::hook`] is called (tests kill the process
/// there to prove that a crash at any of them leaves a repository `check` passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneStage {
    /// The first batch's new packs are stored; no index lists them yet.
    PacksWritten,
    /// Every new index file is written; the files they supersede are still there.
    IndexWritten,
    /// Superseded index files are removed; no pack is deleted yet.
    IndexCleaned,
    /// The first pack was deleted.
    PackDeleted,
}

impl PruneStage {
    /// Every stage, in the order a run reaches them.
    pub const ALL: [PruneStage; 4] = [
        PruneStage::PacksWritten,
        PruneStage::IndexWritten,
        PruneStage::IndexCleaned,
        PruneStage::PackDeleted,
    ];

    /// Its kebab-case name (`index-written`).
    pub fn name(self) -> &'static str {
        match self {
            PruneStage::PacksWritten => "packs-written",
            PruneStage::IndexWritten => "index-written",
            PruneStage::IndexCleaned => "index-cleaned",
            PruneStage::PackDeleted => "pack-deleted",
        }
    }
}

/// A callback told of each [`PruneStage`] reached.
pub type PruneHook = Arc<dyn Fn(PruneStage) + Send + Sync>;

/// What prune may do.
#[derive(Clone, Default)]
pub struct PruneOptions {
    /// Unused space tolerated before packs are repacked.
    pub max_unused: MaxUnused,
    /// Copy at most this many bytes of used blobs when repacking (`None`: no limit).
    pub max_repack_bytes: Option<u64>,
    /// How long a pack stays pending before it is deleted ([`DEFAULT_GRACE`]; zero deletes in
    /// the same run).
    pub grace: Duration,
    /// Compute and report, change nothing (a plan made with it is only shown:
    /// [`Repository::execute_prune`](crate::Repository::execute_prune) refuses it).
    pub dry_run: bool,
    /// Snapshots to count as already deleted (`forget --dry-run --prune`).
    pub ignore_snapshots: Vec<Id>,
    /// Called at each stage (crash tests).
    pub hook: Option<PruneHook>,
}

impl fmt::Debug for PruneOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PruneOptions")
            .field("max_unused", &self.max_unused)
            .field("max_repack_bytes", &self.max_repack_bytes)
            .field("grace", &self.grace)
            .field("dry_run", &self.dry_run)
            .field("ignore_snapshots", &self.ignore_snapshots.len())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl PruneOptions {
    /// The defaults: 10% unused tolerated, one hour of grace.
    pub fn new() -> Self {
        PruneOptions {
            grace: DEFAULT_GRACE,
            ..Default::default()
        }
    }

    /// Calls the hook, if any, with `stage`.
    pub(super) fn reached(&self, stage: PruneStage) {
        if let Some(h) = &self.hook {
            h(stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unused_parses_and_limits() {
        assert_eq!(
            "10%".parse::<MaxUnused>().unwrap(),
            MaxUnused::Percent(10.0)
        );
        assert_eq!(
            "unlimited".parse::<MaxUnused>().unwrap(),
            MaxUnused::Unlimited
        );
        assert_eq!(
            "1MiB".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(1 << 20)
        );
        assert!("101%".parse::<MaxUnused>().is_err());
        assert!("lots".parse::<MaxUnused>().is_err());
        // 10% of the total: 900 used allow 100 unused.
        assert_eq!(MaxUnused::Percent(10.0).limit(900), 100);
        assert_eq!(MaxUnused::Percent(0.0).limit(900), 0);
        assert_eq!(MaxUnused::Percent(100.0).limit(900), u64::MAX);
    }
}

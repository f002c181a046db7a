//! `--exclude GLOB` and `--exclude-file F`: a pattern without `/` matches a name at any depth;
//! a pattern with `/` matches the whole absolute path (or the path below the source).

use coffer_core::{Error, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A compiled set of exclude patterns.
#[derive(Clone, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

impl Excludes {
    /// Compiles patterns; a bad pattern is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n_names, mut n_paths) = (0, 0);
        for p in patterns {
            let g = globset::GlobBuilder::new(p.trim_end_matches('/'))
                .literal_separator(true)
                .build()
                .map_err(|e| Error::invalid(format!("bad exclude pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(g);
                n_paths += 1;
                // `dir/**`-style patterns should also hide the directory itself.
                if let Some(base) = p.strip_suffix("/**") {
                    paths.add(
                        Glob::new(base).map_err(|e| {
                            Error::invalid(format!("bad exclude pattern {p:?}: {e}"))
                        })?,
                    );
                }
            } else {
                names.add(g);
                n_names += 1;
            }
        }
        let build = |b: GlobSetBuilder, n: usize| -> Result<Option<GlobSet>> {
            if n == 0 {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::invalid(format!("bad exclude patterns: {e}")))
        };
        Ok(Excludes {
            names: build(names, n_names)?,
            paths: build(paths, n_paths)?,
        })
    }

    /// Reads patterns from a file: one per line; blank lines and `#` comments are ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read exclude file {}", path.display()), e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether there is no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_none() && self.paths.is_none()
    }

    /// Whether `abs` (with `rel` its path below the source root) is excluded.
    pub fn is_excluded(&self, abs: &Path, rel: &Path) -> bool {
        if let (Some(set), Some(name)) = (&self.names, abs.file_name()) {
            if set.is_match(Path::new(name)) {
                return true;
            }
        }
        if let Some(set) = &self.paths {
            let rel_s = Path::new(std::ffi::OsStr::from_bytes(rel.as_os_str().as_bytes()));
            if set.is_match(abs) || set.is_match(rel_s) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let e = Excludes::new(&["*.log".into(), "/data/cache/**".into(), "tmp/".into()]).unwrap();
        assert!(e.is_excluded(Path::new("/data/a/x.log"), Path::new("a/x.log")));
        assert!(!e.is_excluded(Path::new("/data/a/x.txt"), Path::new("a/x.txt")));
        assert!(e.is_excluded(Path::new("/data/cache"), Path::new("cache")));
        assert!(e.is_excluded(Path::new("/data/cache/f"), Path::new("cache/f")));
        assert!(e.is_excluded(Path::new("/data/tmp"), Path::new("tmp")));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}

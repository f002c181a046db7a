//! Groups: which snapshots a policy weighs against each other. [`GroupBy`] says which fields
//! make a group (host and source unless configured); [`GroupKey`] is one group's values.

use super::SnapshotMeta;
use crate::error::{Error, Result};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Which snapshot fields make up a group; written `host,source` (the default), `host,source,tags`,
/// `host`, or the empty string for one group of everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by source (a file tree's paths, a database's location).
    pub source: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            source: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Whether this is the default, `host,source`.
    pub fn is_default(&self) -> bool {
        *self == GroupBy::default()
    }

    /// The group of one snapshot.
    pub fn key(&self, s: &SnapshotMeta) -> GroupKey {
        GroupKey {
            host: self.host.then(|| s.hostname.clone()),
            source: self.source.then(|| s.source.clone()),
            tags: self.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        }
    }
}

impl GroupBy {
    /// The names of what it groups by, in order (`host`, `source`, `tags`).
    fn parts(&self) -> Vec<&'static str> {
        [
            (self.host, "host"),
            (self.source, "source"),
            (self.tags, "tags"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect()
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.parts();
        if parts.is_empty() {
            f.write_str("nothing (one group)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// Parses a comma-separated list of `host`, `source` (alias `paths`) and `tags` (alias `tag`);
    /// the empty string means one group.
    fn from_str(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            source: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hostname" => g.host = true,
                "source" | "paths" | "path" => g.source = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                        "cannot group by {other:?}: use host, source and/or tags, \
                         comma-separated (or \"\" for one group)"
                    )))
                }
            }
        }
        Ok(g)
    }
}

impl Serialize for GroupBy {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.parts().join(","))
    }
}

impl<'de> Deserialize<'de> for GroupBy {
    /// Accepts `"host,source"` or `["host", "source"]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupBy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host,source,tags\" or a list of those words")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GroupBy, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<GroupBy, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    parts.push(p);
                }
                parts.join(",").parse().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The group a snapshot belongs to: the fields [`GroupBy`] selects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    /// The host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The source, when grouping by source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sorted tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    /// `host=web1 source=/srv tags=[a,b]`, or `all snapshots` for the single group.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host={h}"));
        }
        if let Some(s) = &self.source {
            parts.push(format!("source={s}"));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags=[{}]", t.join(",")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_parses() {
        assert_eq!(
            "host,source".parse::<GroupBy>().unwrap(),
            GroupBy::default()
        );
        let g: GroupBy = "tags".parse().unwrap();
        assert!(g.tags && !g.host && !g.source);
        let none: GroupBy = "".parse().unwrap();
        assert_eq!(none.to_string(), "nothing (one group)");
        assert!("hosts".parse::<GroupBy>().is_err());
    }
}

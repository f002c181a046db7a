//! Full, incremental and differential backups: what each reads, adds and takes as parent.

use std::path::Path;

use coffer_testkit::cli::{str_field, u64_field, CofferEnv};
use coffer_testkit::tree::{compressible_bytes, random_bytes, set_mtime};
use serde_json::Value;

use crate::{env_with_repo, s, write_files};

/// Trees and snapshots only: what an unchanged backup may add.
const SMALL: u64 = 64 * 1024;

struct Fixture {
    env: CofferEnv,
    src: std::path::PathBuf,
    total: u64,
    files: u64,
}

fn fixture() -> Fixture {
    let env = env_with_repo();
    let src = env.path("src");
    let a = random_bytes(200_000, 1);
    let b = random_bytes(150_000, 2);
    let c = compressible_bytes(50_000);
    let d = random_bytes(300_000, 3);
    let e = random_bytes(1_234, 4);
    let files: Vec<(&str, &[u8])> = vec![
        ("a.bin", &a),
        ("b.bin", &b),
        ("c.txt", &c),
        ("sub/d.bin", &d),
        ("sub/deeper/e.bin", &e),
    ];
    write_files(&src, &files);
    let total = files.iter().map(|(_, d)| d.len() as u64).sum();
    Fixture {
        env,
        src,
        total,
        files: files.len() as u64,
    }
}

/// Replace a file's content (a new size too) and give it a new, old-looking mtime.
fn modify(path: &Path, size: usize, seed: u64, mtime_secs: i64) -> u64 {
    std::fs::write(path, random_bytes(size, seed)).unwrap();
    set_mtime(path, mtime_secs, 123);
    size as u64
}

fn summary_type(v: &Value) -> String {
    str_field(v, "type")
}

#[test]
fn first_backup_is_full_and_counts_everything() {
    let f = fixture();
    let s1 = f.env.backup([s(&f.src)]);
    assert_eq!(summary_type(&s1), "full", "{s1:#}");
    assert!(s1["parent"].is_null(), "{s1:#}");
    assert_eq!(u64_field(&s1, "files"), f.files, "{s1:#}");
    assert!(u64_field(&s1, "dirs") >= 2, "{s1:#}");
    assert_eq!(u64_field(&s1, "total_bytes"), f.total, "{s1:#}");
    assert_eq!(u64_field(&s1, "bytes_read"), f.total, "{s1:#}");
    // Random data does not compress: most of it is added; the compressible file shrinks.
    let added = u64_field(&s1, "bytes_added");
    assert!(
        added > 600_000 && added < f.total + SMALL,
        "bytes_added {added} for {} bytes: {s1:#}",
        f.total
    );
    assert!(s1["duration_seconds"].is_number(), "{s1:#}");
    assert!(
        s1["unreadable"].as_array().is_some_and(Vec::is_empty),
        "{s1:#}"
    );
    let listed = f.env.snapshot_ids();
    assert_eq!(listed, vec![str_field(&s1, "snapshot_id")]);
}

#[test]
fn incremental_backup_of_unchanged_tree_reads_nothing() {
    let f = fixture();
    let s1 = f.env.backup([s(&f.src)]);
    let s2 = f.env.backup([s(&f.src)]);
    assert_eq!(summary_type(&s2), "incremental", "{s2:#}");
    assert_eq!(
        s2["parent"].as_str(),
        Some(str_field(&s1, "snapshot_id").as_str()),
        "{s2:#}"
    );
    assert_eq!(u64_field(&s2, "bytes_read"), 0, "{s2:#}");
    assert!(u64_field(&s2, "bytes_added") < SMALL, "{s2:#}");
    assert_eq!(u64_field(&s2, "total_bytes"), f.total, "{s2:#}");
    assert_eq!(u64_field(&s2, "files"), f.files, "{s2:#}");
    assert_ne!(str_field(&s1, "snapshot_id"), str_field(&s2, "snapshot_id"));
}

#[test]
fn incremental_backup_reads_only_the_modified_file() {
    let f = fixture();
    f.env.backup([s(&f.src)]);
    let s2 = f.env.backup([s(&f.src)]);
    let new_size = modify(&f.src.join("sub/d.bin"), 310_000, 99, 1_600_000_000);
    let s3 = f.env.backup([s(&f.src)]);
    assert_eq!(summary_type(&s3), "incremental", "{s3:#}");
    assert_eq!(
        s3["parent"].as_str(),
        Some(str_field(&s2, "snapshot_id").as_str()),
        "{s3:#}"
    );
    assert_eq!(u64_field(&s3, "bytes_read"), new_size, "{s3:#}");
    assert_eq!(
        u64_field(&s3, "total_bytes"),
        f.total - 300_000 + new_size,
        "{s3:#}"
    );
    let added = u64_field(&s3, "bytes_added");
    assert!(
        added > 200_000 && added < new_size + SMALL,
        "bytes_added {added}: {s3:#}"
    );

    // The incremental snapshot restores on its own, with the new content.
    let target = f.env.path("restored");
    f.env
        .run([
            "restore",
            &str_field(&s3, "snapshot_id"),
            "--target",
            s(&target),
        ])
        .assert_ok();
    assert_eq!(
        std::fs::read(target.join("sub/d.bin")).unwrap(),
        random_bytes(310_000, 99)
    );
    assert_eq!(
        std::fs::read(target.join("a.bin")).unwrap(),
        random_bytes(200_000, 1)
    );
}

#[test]
fn full_backup_rereads_everything_but_adds_only_new_trees() {
    let f = fixture();
    f.env.backup([s(&f.src)]);
    let s2 = f.env.backup([s(&f.src), "--type", "full"]);
    assert_eq!(summary_type(&s2), "full", "{s2:#}");
    assert_eq!(u64_field(&s2, "bytes_read"), f.total, "{s2:#}");
    assert_eq!(u64_field(&s2, "total_bytes"), f.total, "{s2:#}");
    assert!(
        u64_field(&s2, "bytes_added") < SMALL,
        "dedup failed: {s2:#}"
    );
}

#[test]
fn differential_backup_takes_the_latest_full_snapshot_as_parent() {
    let f = fixture();
    let _first_full = f.env.backup([s(&f.src)]);
    modify(&f.src.join("a.bin"), 200_001, 10, 1_600_000_000);
    let inc1 = f.env.backup([s(&f.src)]);
    assert_eq!(summary_type(&inc1), "incremental", "{inc1:#}");
    let full2 = f.env.backup([s(&f.src), "--type", "full"]);
    assert_eq!(summary_type(&full2), "full", "{full2:#}");
    let full2_id = str_field(&full2, "snapshot_id");

    let b_size = modify(&f.src.join("b.bin"), 150_003, 11, 1_600_000_100);
    let inc2 = f.env.backup([s(&f.src)]);
    assert_eq!(inc2["parent"].as_str(), Some(full2_id.as_str()), "{inc2:#}");
    assert_eq!(u64_field(&inc2, "bytes_read"), b_size, "{inc2:#}");

    let e_size = modify(&f.src.join("sub/deeper/e.bin"), 999, 12, 1_600_000_200);
    let diff = f.env.backup([s(&f.src), "--type", "differential"]);
    assert_eq!(summary_type(&diff), "differential", "{diff:#}");
    assert_eq!(
        diff["parent"].as_str(),
        Some(full2_id.as_str()),
        "differential must take the latest FULL snapshot ({full2_id}), not the latest incremental ({}) nor the first full: {diff:#}",
        str_field(&inc2, "snapshot_id")
    );
    // Everything changed since the full snapshot is read again: b (changed before inc2) and e.
    assert_eq!(u64_field(&diff, "bytes_read"), b_size + e_size, "{diff:#}");

    // The manifests agree.
    let snaps = f.env.snapshots(None::<&str>);
    assert_eq!(snaps.len(), 5);
    let last = snaps.last().unwrap();
    assert_eq!(str_field(last, "backup_type"), "differential", "{last:#}");
    assert_eq!(last["parent"].as_str(), Some(full2_id.as_str()), "{last:#}");
}

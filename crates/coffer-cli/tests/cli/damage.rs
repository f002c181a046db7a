//! A flipped byte in a pack file is found by `check --read-data`, `verify` and `restore`, which
//! still restores every undamaged file.

use std::path::PathBuf;

use coffer_testkit::cli::{str_field, CofferEnv};
use coffer_testkit::tree::random_bytes;

use crate::{env_with_repo, s, write_files};

const SMALL: &[(&str, u64)] = &[("a.txt", 21), ("b.txt", 22), ("sub/c.txt", 23)];

/// A repository with one snapshot holding `big.bin` (6 MiB of random bytes, most of the data)
/// and three small files; then one byte in the middle of the largest pack is flipped. Returns the
/// environment, the snapshot id and the damaged pack.
fn damaged() -> (CofferEnv, String, PathBuf) {
    let env = env_with_repo();
    let src = env.path("src");
    let big = random_bytes(6 << 20, 20);
    let small: Vec<(String, Vec<u8>)> = SMALL
        .iter()
        .map(|(n, seed)| (n.to_string(), random_bytes(3000, *seed)))
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![("big.bin", &big)];
    files.extend(small.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    write_files(&src, &files);
    let id = str_field(&env.backup([s(&src)]), "snapshot_id");
    env.run(["check", "--read-data"]).assert_ok();

    let packs = env.pack_files();
    assert!(!packs.is_empty(), "no pack files under data/");
    let pack = packs
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    assert!(
        data.len() > 5 << 20,
        "the largest pack ({} bytes) should hold big.bin",
        data.len()
    );
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&pack, data).unwrap();
    (env, id, pack)
}

fn pack_name(pack: &std::path::Path) -> String {
    pack.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn check_read_data_finds_a_flipped_byte_and_names_the_pack() {
    let (env, _, pack) = damaged();
    let name = pack_name(&pack);
    let out = env.run(["check", "--read-data"]).assert_code(1);
    assert!(
        out.combined().contains(&name[..8]),
        "the damaged pack {name} is not named\n{out}"
    );

    let out = env.run(["--json", "check", "--read-data"]).assert_code(1);
    let v = out.json();
    assert_eq!(v["ok"], false, "{out}");
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list\n{out}"));
    assert!(!errors.is_empty(), "{out}");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains(&name[..8]))),
        "no error names the pack\n{out}"
    );
}

#[test]
fn verify_finds_a_flipped_byte() {
    let (env, id, _) = damaged();
    let out = env.run(["verify", "latest"]).assert_code(1);
    assert!(!out.combined().trim().is_empty(), "{out}");
    let out = env.run(["--json", "verify", &id]).assert_code(1);
    let v = out.json();
    assert_eq!(v["ok"], false, "{out}");
    assert!(
        v["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{out}"
    );
}

#[test]
fn restore_of_a_damaged_snapshot_names_the_file_and_restores_the_rest() {
    let (env, id, _) = damaged();
    let target = env.path("restored");
    let out = env
        .run(["restore", &id, "--target", s(&target)])
        .assert_code(1);
    assert!(
        out.combined().contains("big.bin"),
        "the damaged file is not named\n{out}"
    );
    for (name, seed) in SMALL {
        let got = std::fs::read(target.join(name))
            .unwrap_or_else(|e| panic!("{name} not restored: {e}\n{out}"));
        assert_eq!(got, random_bytes(3000, *seed), "{name} restored wrong");
    }
    // Whatever is left of big.bin is not passed off as the real thing.
    if let Ok(got) = std::fs::read(target.join("big.bin")) {
        assert_ne!(
            got,
            random_bytes(6 << 20, 20),
            "big.bin restored intact from a damaged pack?"
        );
    }
}

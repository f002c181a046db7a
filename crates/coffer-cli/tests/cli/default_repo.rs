//! With no repository and no password configured, `backup` creates the embedded default
//! repository under `$XDG_DATA_HOME/coffer` with its key under `$XDG_CONFIG_HOME/coffer`, says
//! where both are, and later commands find it.

use std::path::{Path, PathBuf};

use coffer_testkit::cli::str_field;

use crate::{env, s, write_files};

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn backup_without_configuration_creates_the_embedded_default_repository() {
    let env = env();
    let src = env.path("src");
    write_files(&src, &[("a.txt", b"alpha"), ("sub/b.txt", b"beta")]);

    let out = env.run_bare(["backup", s(&src)]).assert_ok();
    assert!(
        !env.repo().exists(),
        "the configured test repository must not be touched"
    );

    // The repository: a folder under $XDG_DATA_HOME/coffer holding a config file.
    let data_dir = env.data_home().join("coffer");
    let configs: Vec<PathBuf> = files_under(&data_dir)
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| n == "config") && p.with_file_name("keys").is_dir()
        })
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "no repository (config + keys/) under {}\n{out}",
        data_dir.display()
    );
    let repo = configs[0].parent().unwrap().to_path_buf();

    // The key: a file under $XDG_CONFIG_HOME/coffer.
    let keys = files_under(&env.config_home().join("coffer"));
    assert_eq!(
        keys.len(),
        1,
        "expected one key file under $XDG_CONFIG_HOME/coffer, found {keys:?}\n{out}"
    );

    // The output says where both are.
    let said = out.combined();
    assert!(
        said.contains(s(&repo)),
        "the repository's location {} is not printed\n{out}",
        repo.display()
    );
    assert!(
        said.contains(s(&keys[0])),
        "the key's location {} is not printed\n{out}",
        keys[0].display()
    );
    assert!(
        !std::fs::read_dir(env.home()).unwrap().any(|_| true),
        "the fake HOME was written to although XDG folders are set"
    );

    // Later commands, still with nothing configured, find the same repository.
    let list = env.run_bare(["--json", "snapshots"]).assert_ok().json();
    let list = list.as_array().expect("an array of snapshots");
    assert_eq!(list.len(), 1, "{list:#?}");
    let text = env.run_bare(["snapshots"]).assert_ok();
    assert!(
        text.stdout.contains(&str_field(&list[0], "id")[..8]),
        "{text}"
    );

    // A second backup goes to the same place, with the first as its parent.
    std::fs::write(src.join("c.txt"), b"gamma").unwrap();
    let second = env
        .run_bare(["--json", "backup", s(&src)])
        .assert_ok()
        .json();
    assert_eq!(
        second["parent"].as_str(),
        Some(str_field(&list[0], "id").as_str()),
        "{second:#}"
    );
    let target = env.path("restored");
    env.run_bare(["restore", "latest", "--target", s(&target)])
        .assert_ok();
    assert_eq!(std::fs::read(target.join("c.txt")).unwrap(), b"gamma");
    assert_eq!(std::fs::read(target.join("sub/b.txt")).unwrap(), b"beta");
}

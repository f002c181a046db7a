//! Bandwidth limits: `--limit-upload` and `--limit-download` pace transfers; 0 is refused.

use super::{env_with_repo, s};
use coffer_testkit::tree::write_random_file;
use std::time::Instant;

#[test]
fn upload_and_download_limits_pace_the_transfers() {
    let env = env_with_repo();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // 4 MiB that does not compress: at 1 MiB/s, with one second of burst, at least 3 s.
    write_random_file(&src.join("blob"), 4 << 20, 7);
    let t = Instant::now();
    env.run(["--limit-upload", "1024", "backup", s(&src)])
        .assert_ok();
    let up = t.elapsed().as_secs_f64();
    assert!(
        up >= 2.5,
        "4 MiB went up in {up:.2} s despite a 1 MiB/s limit"
    );

    let target = env.path("restored");
    let t = Instant::now();
    env.run([
        "--limit-download",
        "1024",
        "restore",
        "latest",
        "--target",
        s(&target),
    ])
    .assert_ok();
    let down = t.elapsed().as_secs_f64();
    assert!(
        down >= 2.5,
        "4 MiB came down in {down:.2} s despite a 1 MiB/s limit"
    );
    assert_eq!(
        std::fs::read(target.join("blob")).unwrap(),
        std::fs::read(src.join("blob")).unwrap()
    );
}

#[test]
fn a_zero_limit_is_a_usage_error() {
    let env = env_with_repo();
    env.run(["--limit-upload", "0", "snapshots"])
        .assert_code(2)
        .assert_mentions("--limit-upload");
}

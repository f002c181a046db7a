//! A low limit on open files: the backup queues fewer files ahead of its readers (each queued
//! file is held open) and still reads every file, instead of failing to open some.

use coffer_testkit::cli::CofferEnv;
use std::os::unix::process::CommandExt;

use crate::s;

/// Soft and hard limit on open files for the backup: far below the 512 files it would otherwise
/// open ahead.
const LIMIT: libc::rlim_t = 96;

#[test]
fn backup_under_a_low_open_file_limit_reads_every_file() {
    let env = CofferEnv::new(env!("CARGO_BIN_EXE_coffer"));
    env.init();
    let src = env.path("src");
    for i in 0..700 {
        let dir = src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let mut cmd = env.cmd(["--json", "backup", s(&src)]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = env.run_cmd(cmd).assert_ok();
    let summary = out.json();
    assert_eq!(summary["files"], 700, "{out}");
    assert_eq!(summary["files_read"], 700, "{out}");
    assert_eq!(
        summary["unreadable"].as_array().map(Vec::len),
        Some(0),
        "{out}"
    );

    let target = env.path("restored");
    env.run(["restore", "latest", "--target", s(&target)])
        .assert_ok();
    for i in [0, 1, 350, 699] {
        let got = std::fs::read_to_string(target.join(format!("d{}/f{i}.txt", i % 4))).unwrap();
        assert_eq!(got, format!("file {i}\n"));
    }
}

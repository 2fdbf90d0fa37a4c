//! The set-up checks of `scripts/lib.sh` that decide what `scripts/test` and `scripts/serve`
//! install: run over sample `ldconfig -p` listings and directory contents, not over this machine.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn lib_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib.sh")
}

/// Runs `. scripts/lib.sh; <script>` with `input` on stdin; true when it exits 0.
fn run(script: &str, input: &str) -> bool {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; . '{}'; {script}", lib_sh().display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bash runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "{script}: killed by a signal");
    status.success()
}

fn ldconfig_line(name: &str) -> String {
    format!("\t{name} (libc6,x86-64) => /lib/x86_64-linux-gnu/{name}\n")
}

fn ldconfig_listing(names: &[&str]) -> String {
    let mut out = format!("{} libs found in cache `/etc/ld.so.cache'\n", names.len() + 2);
    out += &ldconfig_line("libc.so.6");
    for name in names {
        out += &ldconfig_line(name);
    }
    out += &ldconfig_line("libz.so.1");
    out
}

#[test]
fn libclang_cpp_alone_is_missing() {
    // A fresh bookworm machine with Rust: only libclang-cpp14, which bindgen cannot use.
    assert!(!run("libclang_in_ldconfig", &ldconfig_listing(&["libclang-cpp.so.14"])));
    assert!(!run("libclang_in_ldconfig", &ldconfig_listing(&["libclang-cpp.so"])));
    assert!(!run("libclang_in_ldconfig", &ldconfig_listing(&[])));
    assert!(!run("libclang_in_ldconfig", ""));
}

#[test]
fn every_name_bindgen_loads_is_found() {
    for name in [
        "libclang.so",
        "libclang-14.so",
        "libclang-14.0.so",
        "libclang.so.1",
        "libclang.so.14.0.6",
        "libclang-14.so.1",
        "libclang-14.0.6.so.14",
    ] {
        assert!(run("libclang_in_ldconfig", &ldconfig_listing(&[name])), "{name} is libclang");
        assert!(run("libclang_name_in", &format!("/usr/lib/llvm-14/lib/{name}\n")), "{name} is libclang");
        // Beside libclang-cpp, as on a machine that has both.
        assert!(run("libclang_in_ldconfig", &ldconfig_listing(&["libclang-cpp.so.14", name])));
    }
}

#[test]
fn names_that_only_look_like_libclang_are_not() {
    for name in [
        "libclang-cpp.so.14",
        "libclang-cpp.so",
        "libclangBasic.a",
        "libclang_rt.asan-x86_64.so",
        "libclang.a",
        "libclang.so.bak",
        "libclang-14.so.1.old",
        "xlibclang.so",
        "libclang-.so",
        "liblibclang.so",
    ] {
        assert!(!run("libclang_in_ldconfig", &ldconfig_listing(&[name])), "{name} is not libclang");
        assert!(!run("libclang_name_in", &format!("{name}\n")), "{name} is not libclang");
    }
}

#[test]
fn clang_headers_are_looked_for_under_each_prefix() {
    let root = std::env::temp_dir().join(format!("mailbox-prereqs-{}", std::process::id()));
    let with = root.join("llvm-14");
    let without = root.join("llvm-15");
    fs::create_dir_all(with.join("lib/clang/14.0.6/include")).unwrap();
    fs::create_dir_all(without.join("lib/clang/15/include")).unwrap();
    let check = |dirs: &[&Path]| {
        let args: Vec<String> = dirs.iter().map(|d| format!("'{}'", d.display())).collect();
        run(&format!("clang_headers_in {}", args.join(" ")), "")
    };
    // The directory is there but stddef.h is not: libclang1 without libclang-common-dev.
    assert!(!check(&[&without]));
    assert!(!check(&[]));
    fs::write(with.join("lib/clang/14.0.6/include/stddef.h"), "").unwrap();
    assert!(check(&[&with]));
    assert!(check(&[&without, &with]));
    // The /usr/lib/clang/<version>/include layout of other distributions.
    let usr_lib = root.join("usr-lib");
    fs::create_dir_all(usr_lib.join("clang/16/include")).unwrap();
    assert!(!check(&[&usr_lib]));
    fs::write(usr_lib.join("clang/16/include/stddef.h"), "").unwrap();
    assert!(check(&[&usr_lib]));
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn versions_are_compared_as_numbers_from_the_tools_own_lines() {
    let at_least = |want: &str, line: &str| run(&format!("version_at_least '{want}' '{line}'"), "");
    // The lines these tools print.
    assert!(at_least("1.88", "rustc 1.95.0 (59807616e 2026-04-14)"));
    assert!(at_least("1.88", "rustc 1.88.0 (6b00bc388 2025-06-23)"));
    assert!(!at_least("1.88", "rustc 1.87.1 (17067e9ac 2025-05-09)"));
    assert!(at_least("1.88", "rustc 1.100.0"), "1.100 is after 1.88, not before");
    assert!(at_least("7.0", "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1"));
    assert!(!at_least("7.0", "Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"));
    assert!(at_least("3.11", "Python 3.11.2"));
    assert!(at_least("3.11", "Python 3.12.0"));
    assert!(!at_least("3.11", "Python 3.9.18"));
    assert!(!at_least("3.11", "Python 3.10.12"));
    // No version in the line: not taken for a new enough one.
    assert!(!at_least("1.88", "rustc: command not found"));
    assert!(!at_least("3.11", ""));
}

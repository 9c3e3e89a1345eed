//! Build script: the git commit `elbe --version` shows.
//!
//! Rule: the build never fails for want of git. A checkout with git gives `git rev-parse --short HEAD`; a tarball,
//! a checkout without git installed, or a git that refuses the folder gives "unknown". `ELBE_GIT_COMMIT`, when
//! set, wins (a packager building from a tarball knows the commit).
//!
//! Trade-off: the script re-runs when HEAD or the branch it points at moves, so the version is never stale; the
//! cost is that a commit rebuilds the elbe crate once even when no source changed.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ELBE_GIT_COMMIT");
    let commit = std::env::var("ELBE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ELBE_GIT_COMMIT={}", commit.trim());
    for file in watched_git_files() {
        println!("cargo:rerun-if-changed={file}");
    }
}

/// `git rev-parse --short HEAD`, or `None` when git is missing or this is not a git checkout.
fn git_commit() -> Option<String> {
    git(&["rev-parse", "--short", "HEAD"])
}

/// The files whose change means HEAD moved: HEAD itself (a checkout), the branch it names (a commit) and
/// packed-refs (a `git gc`). Only existing files: cargo re-runs a script on every build for a missing one.
fn watched_git_files() -> Vec<String> {
    let mut files = Vec::new();
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for path in paths {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            if Path::new(&file).exists() {
                files.push(file);
            }
        }
    }
    files
}

/// Runs git in the package folder; its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

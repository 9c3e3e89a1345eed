#!/usr/bin/env bash
# CI's fuzz step: builds every cargo-fuzz target and runs each for a short bounded time on its seed corpus, so the
# targets keep building and the seeds (which include every input a past run found) keep passing.
#
#   bash fuzz/ci.sh                 # 20 s per target
#   FUZZ_SECONDS=600 bash fuzz/ci.sh  # a real run (issue 12 asks for at least 10 CPU-minutes per target)
#
# Needs: cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` when missing), a C++ compiler (libFuzzer
# is C++: Debian's g++), and RUSTC_BOOTSTRAP=1 on a stable toolchain (set here: cargo-fuzz passes -Zsanitizer and
# -Cpasses flags that are nightly-only; the ASan runtime ships with rustc's standard library for x86_64 Linux).
# New inputs libFuzzer finds go to a scratch directory, not into fuzz/corpus/; a crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"

if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz/ci.sh: no C++ compiler: libFuzzer is built from C++ (install it: apt-get install g++)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)" >&2
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz/ci.sh: could not install cargo-fuzz; install it by hand: cargo install cargo-fuzz" >&2
        exit 1
    fi
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for target in $(cargo fuzz list); do
    dict=()
    if [ -f "fuzz/dicts/$target.dict" ]; then
        dict=("-dict=fuzz/dicts/$target.dict")
    fi
    mkdir -p "$scratch/$target"
    echo "fuzz/ci.sh: $target for ${seconds}s"
    # New inputs go to the scratch directory (the first one named); the committed seeds are only read.
    if cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 "${dict[@]}" \
        >"$scratch/$target.log" 2>&1; then
        grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs)' "$scratch/$target.log" | tail -1 || true
    else
        failed=1
        echo "fuzz/ci.sh: $target FAILED; its log:" >&2
        tail -60 "$scratch/$target.log" >&2
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz/ci.sh: a target failed: its input is in fuzz/artifacts/<target>/ (cargo fuzz run <target> <file>)" >&2
    exit 1
fi
echo "fuzz/ci.sh: every target ran ${seconds}s without a finding"

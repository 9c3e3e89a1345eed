#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (`cargo install cargo-deb` once): the release binary, then the man
# pages and shell completions it generates (target/assets), then target/debian/elbe_<version>_<arch>.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
# ELBE_FEATURES=cluster packaging/deb.sh: a package with cluster mode (needs protoc: protobuf-compiler).
cargo build --release --locked --bin elbe --features "${ELBE_FEATURES:-}"
mkdir -p target/assets
target/release/elbe man --dir target/assets
target/release/elbe completions bash >target/assets/elbe.bash
target/release/elbe completions zsh >target/assets/_elbe
target/release/elbe completions fish >target/assets/elbe.fish
cargo deb --no-build --locked "$@"

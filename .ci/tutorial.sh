#!/usr/bin/env bash
# Runs docs/TUTORIAL.md: every ```sh block, in order, in a fresh directory,
# with the checkout's chroma on the PATH. Then the mistakes the tutorial
# shows, checked to fail with their messages, and a contract that does not
# compile. Needs a Wasm toolchain (.ci/run installs Debian's).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
(cd "$root" && cargo build --locked --bin chroma)
export PATH="$root/target/debug:$PATH"
# The new crate's test build reuses the checkout's compiled dependencies.
export CARGO_TARGET_DIR="$root/target"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

script="$work/tutorial-commands.sh"
awk '/^```sh$/ {run=1; next} /^```/ {run=0} run' "$root/docs/TUTORIAL.md" > "$script"
echo "== running the $(grep -c . "$script") commands of docs/TUTORIAL.md in $work"
(cd "$work" && bash -euxo pipefail "$script")

# What the tutorial shows failing must fail, with the message it shows.
expect_failure() {
  local message=$1; shift
  local out
  if out=$("$@" 2>&1); then echo "expected failure: $*" >&2; exit 1; fi
  grep -qF -- "$message" <<<"$out" || { echo "expected '$message' from: $*; got: $out" >&2; exit 1; }
}
cd "$work/hello-counter"
expect_failure "only the owner can reset" chroma call hello reset --from bob
expect_failure 'has no method "incremnt"' chroma call hello incremnt --arg by=1
expect_failure 'cannot read "-1" as u128' chroma call hello increment --arg by=-1
cd "$work"
expect_failure "already exists" chroma new hello-counter
expect_failure "not a valid contract name" chroma new Bad_Name

# A contract that does not compile: the compiler's message, a failure status.
chroma new broken >/dev/null
echo 'pub fn oops() -> u32 { "not a number" }' >> broken/src/lib.rs
expect_failure "does not compile" chroma build broken
expect_failure "mismatched types" chroma build broken
echo "== tutorial: ok"

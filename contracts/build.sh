#!/usr/bin/env bash
# Builds every example contract to contracts/wasm/<name>.wasm, reproducibly.
#
#   contracts/build.sh            build and write contracts/wasm/*.wasm and BUILD_INFO
#   contracts/build.sh --check    build and fail if any committed .wasm differs byte for byte
#
# Toolchain, first that works:
#   1. rustup's wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`);
#   2. Debian's rustc-web (`apt-get install rustc-web cargo-web rust-web-src lld`), which
#      builds core/alloc from source (-Zbuild-std) and links with wasm-ld.
# CHROMA_WASM_TOOLCHAIN=rustup|debian forces one. Byte-identical output needs the same
# compiler as the committed build: --check uses the toolchain named in wasm/BUILD_INFO.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out_dir="$here/wasm"
target_dir="$root/target/wasm-contracts"
target=wasm32-unknown-unknown
check=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

# Every directory under contracts/ with a Cargo.toml is a contract.
contracts=()
for manifest in "$here"/*/Cargo.toml; do
  contracts+=("$(basename "$(dirname "$manifest")")")
done

rustup_ok() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"
}
debian_ok() {
  [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] \
    && command -v wasm-ld >/dev/null 2>&1
}
toolchain_version() {
  case "$1" in
    rustup) rustc -V ;;
    debian) /usr/bin/rustc -V ;;
  esac
}

recorded=""
[ -f "$out_dir/BUILD_INFO" ] && recorded=$(sed -n 's/^rustc: //p' "$out_dir/BUILD_INFO")

choose() {
  local candidates=()
  if [ -n "${CHROMA_WASM_TOOLCHAIN:-}" ]; then
    candidates=("$CHROMA_WASM_TOOLCHAIN")
  else
    candidates=(rustup debian)
  fi
  local fallback=""
  for t in "${candidates[@]}"; do
    case "$t" in
      rustup) rustup_ok || continue ;;
      debian) debian_ok || continue ;;
      *) echo "build.sh: CHROMA_WASM_TOOLCHAIN must be rustup or debian, not '$t'" >&2; exit 2 ;;
    esac
    # When checking, the toolchain that made the committed files is the one that can match them.
    if [ "$check" = 0 ] || [ -z "$recorded" ] || [ "$(toolchain_version "$t")" = "$recorded" ]; then
      echo "$t"; return 0
    fi
    fallback=${fallback:-$t}
  done
  if [ -n "$fallback" ]; then
    echo "build.sh: the committed Wasm was built with '$recorded', but the available toolchain is" \
         "'$(toolchain_version "$fallback")'; a byte-for-byte check needs the same compiler." >&2
    echo "  On Debian: apt-get install rustc-web cargo-web rust-web-src lld" >&2
    exit 3
  fi
  cat >&2 <<MSG
build.sh: no toolchain can build wasm32-unknown-unknown here. Install one of:
  - rustup's target:  rustup target add wasm32-unknown-unknown
  - Debian's packages: apt-get install rustc-web cargo-web rust-web-src lld
MSG
  exit 3
}

toolchain=$(choose)
version=$(toolchain_version "$toolchain")

# Paths that would otherwise be embedded (panic locations, std sources) are
# remapped so the output does not depend on where the checkout or caches live.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
flags=(
  "--remap-path-prefix=$root=/chroma"
  "--remap-path-prefix=$cargo_home=/cargo"
  # Small contract memories: 64 KiB of shadow stack instead of 1 MiB.
  "-C" "link-arg=-zstack-size=65536"
)
env_vars=()
build_args=(build --locked --profile contract --target "$target" --target-dir "$target_dir")
case "$toolchain" in
  rustup)
    cargo_bin=cargo
    ;;
  debian)
    cargo_bin=/usr/bin/cargo
    flags+=("--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc-src")
    env_vars+=(RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
               CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld)
    build_args+=(-Zbuild-std=core,alloc,panic_abort)
    ;;
esac
for c in "${contracts[@]}"; do build_args+=(-p "$c"); done

encoded=$(IFS=$'\x1f'; echo "${flags[*]}")
echo "building ${#contracts[@]} contracts (${contracts[*]}) with $toolchain toolchain: $version" >&2
(cd "$root" && env "${env_vars[@]}" CARGO_ENCODED_RUSTFLAGS="$encoded" "$cargo_bin" "${build_args[@]}")

built_dir="$target_dir/$target/contract"
status=0
info="# Written by contracts/build.sh; --check rebuilds with this compiler and compares.
rustc: $version
toolchain: $toolchain"
for c in "${contracts[@]}"; do
  built="$built_dir/$c.wasm"
  sum=$(sha256sum "$built" | cut -d' ' -f1)
  size=$(stat -c %s "$built")
  info+=$'\n'"sha256 $c.wasm $sum"
  if [ "$check" = 1 ]; then
    if [ ! -f "$out_dir/$c.wasm" ]; then
      echo "MISSING  $c.wasm is not committed" >&2; status=1
    elif cmp -s "$built" "$out_dir/$c.wasm"; then
      echo "ok       $c.wasm  $size bytes  sha256 $sum" >&2
    else
      echo "DIFFERS  $c.wasm: fresh build sha256 $sum, committed $(sha256sum "$out_dir/$c.wasm" | cut -d' ' -f1)" >&2
      status=1
    fi
  else
    mkdir -p "$out_dir"
    cp "$built" "$out_dir/$c.wasm.tmp" && mv "$out_dir/$c.wasm.tmp" "$out_dir/$c.wasm"
    echo "wrote    contracts/wasm/$c.wasm  $size bytes  sha256 $sum" >&2
  fi
done
if [ "$check" = 1 ]; then
  if [ "$status" != 0 ]; then
    echo "build.sh --check: committed Wasm does not match its source; run contracts/build.sh and commit contracts/wasm/." >&2
  else
    echo "build.sh --check: all ${#contracts[@]} contracts are byte-identical to a fresh build." >&2
  fi
  exit "$status"
fi
printf '%s\n' "$info" > "$out_dir/BUILD_INFO.tmp" && mv "$out_dir/BUILD_INFO.tmp" "$out_dir/BUILD_INFO"

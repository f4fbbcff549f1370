//! # chroma-build
//!
//! Builds a contract crate to Wasm with whatever toolchain works on the
//! machine, for `chroma build` and for contract tests (`chroma-testing`):
//!
//! 1. rustup's `wasm32-unknown-unknown` target (`rustup target add wasm32-unknown-unknown`);
//! 2. Debian's `rustc-web` (`apt-get install rustc-web cargo-web rust-web-src lld`), which
//!    builds `core` and `alloc` from source (`-Zbuild-std`) and links with `wasm-ld`.
//!
//! `CHROMA_WASM_TOOLCHAIN=rustup|debian` forces one. The example contracts
//! have their own reproducible build (`contracts/build.sh`); this one is
//! for authors' crates, with the same flags.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Wasm target contracts are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Where builds go, below the crate: apart from the crate's own `target/`,
/// so that a build started from the crate's tests (which hold a lock on
/// `target/`) does not wait for itself.
pub const TARGET_DIR: &str = "target/chroma";

/// Contracts keep a small shadow stack (64 KiB instead of rustc's 1 MiB), so
/// their memories stay small and cheap to reset.
const STACK_SIZE_FLAG: &str = "link-arg=-zstack-size=65536";

/// A toolchain that can build `wasm32-unknown-unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    Rustup,
    Debian,
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Toolchain::Rustup => "rustup (wasm32-unknown-unknown target)",
            Toolchain::Debian => "Debian rustc-web (-Zbuild-std)",
        })
    }
}

/// Why a contract did not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no toolchain here can build {TARGET}. Install one of:\n  \
         - rustup's target:   rustup target add {TARGET}\n  \
         - Debian's packages: apt-get install rustc-web cargo-web rust-web-src lld"
    )]
    NoToolchain,
    #[error(
        "CHROMA_WASM_TOOLCHAIN={0:?} cannot build {TARGET} here (rustup needs `rustup target add {TARGET}`, \
         debian needs `apt-get install rustc-web cargo-web rust-web-src lld`); unset it to use whichever works"
    )]
    ForcedToolchainMissing(String),
    #[error("{0} has no Cargo.toml: give the directory of a contract crate (`chroma new` makes one)")]
    NotACrate(PathBuf),
    #[error("cannot read {path}: {error}")]
    Manifest { path: PathBuf, error: String },
    #[error("cannot run {program}: {error}")]
    Spawn { program: String, error: std::io::Error },
    #[error("the contract does not compile ({toolchain}); cargo said:\n{stderr}")]
    Compile { toolchain: Toolchain, stderr: String },
    #[error("the build produced no {0}: is the crate's [lib] crate-type \"cdylib\"?")]
    NoOutput(PathBuf),
}

fn rustup_ok() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == TARGET))
}

fn debian_ok() -> bool {
    Path::new("/usr/bin/cargo").is_file()
        && Path::new("/usr/bin/rustc").is_file()
        && Path::new("/usr/lib/rustlib/src/rust/library").is_dir()
        && Command::new("wasm-ld").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The toolchain to build with: the forced one, else the first that works.
pub fn choose_toolchain() -> Result<Toolchain, BuildError> {
    match std::env::var("CHROMA_WASM_TOOLCHAIN").ok().as_deref() {
        Some("rustup") if rustup_ok() => Ok(Toolchain::Rustup),
        Some("debian") if debian_ok() => Ok(Toolchain::Debian),
        Some(forced) if !forced.is_empty() => Err(BuildError::ForcedToolchainMissing(forced.to_string())),
        _ if rustup_ok() => Ok(Toolchain::Rustup),
        _ if debian_ok() => Ok(Toolchain::Debian),
        _ => Err(BuildError::NoToolchain),
    }
}

/// A built contract.
#[derive(Debug, Clone)]
pub struct Built {
    /// The crate's package name.
    pub name: String,
    pub wasm: PathBuf,
    pub toolchain: Toolchain,
}

/// The package name in `manifest` (the `name` under `[package]`).
fn package_name(manifest: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(manifest).map_err(|e| BuildError::Manifest { path: manifest.into(), error: e.to_string() })?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let (true, Some(rest)) = (in_package, line.strip_prefix("name")) {
            if let Some(value) = rest.trim_start().strip_prefix('=') {
                return Ok(value.trim().trim_matches('"').to_string());
            }
        }
    }
    Err(BuildError::Manifest { path: manifest.into(), error: "no name under [package]".into() })
}

/// Builds the contract crate in `dir` (release profile) and returns its Wasm.
/// Compiler output goes to the error when the build fails.
pub fn build(dir: &Path) -> Result<Built, BuildError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NotACrate(dir.to_path_buf()));
    }
    let name = package_name(&manifest)?;
    let toolchain = choose_toolchain()?;
    let dir = dir.canonicalize().map_err(|e| BuildError::Manifest { path: dir.into(), error: e.to_string() })?;
    let target_dir = dir.join(TARGET_DIR);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let mut flags = vec![
        format!("--remap-path-prefix={}=/contract", dir.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        "-C".to_string(),
        STACK_SIZE_FLAG.to_string(),
    ];
    let mut command = match toolchain {
        Toolchain::Rustup => Command::new("cargo"),
        Toolchain::Debian => {
            flags.push("--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc-src".into());
            let mut c = Command::new("/usr/bin/cargo");
            c.env("RUSTC", "/usr/bin/rustc")
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld");
            c
        }
    };
    command
        .current_dir(&dir)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        // A build started from `cargo test` inherits variables meant for the
        // test's own build and run: its flags, target, target directory, and a
        // library path into rustup's toolchain, with which Debian's rustc
        // loads the wrong libraries and fails.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("CARGO");
    if toolchain == Toolchain::Debian {
        command.env_remove("RUSTUP_TOOLCHAIN").arg("-Zbuild-std=core,alloc,panic_abort");
    }
    let program = format!("{:?}", command.get_program());
    let out = command.output().map_err(|error| BuildError::Spawn { program, error })?;
    if !out.status.success() {
        return Err(BuildError::Compile { toolchain, stderr: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    let wasm = target_dir.join(TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        return Err(BuildError::NoOutput(wasm));
    }
    Ok(Built { name, wasm, toolchain })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_name_is_read_from_the_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[lib]\nname = \"not_this\"\n\n[package]\nname = \"my-token\"\nversion = \"0.1.0\"\n").expect("write");
        assert_eq!(package_name(&manifest).expect("name"), "my-token");
        std::fs::write(&manifest, "[dependencies]\nname = \"x\"\n").expect("write");
        assert!(package_name(&manifest).is_err());
    }

    #[test]
    fn a_directory_without_a_crate_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = build(dir.path()).expect_err("no crate");
        assert!(matches!(error, BuildError::NotACrate(_)));
        assert!(error.to_string().contains("chroma new"), "{error}");
    }

    #[test]
    fn a_forced_toolchain_that_is_missing_says_what_to_install() {
        // Force whichever toolchain this machine lacks (rustup's target, on these machines).
        let missing = match (rustup_ok(), debian_ok()) {
            (false, _) => "rustup",
            (true, false) => "debian",
            (true, true) => return eprintln!("both toolchains are installed: nothing to refuse here"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").expect("write");
        std::env::set_var("CHROMA_WASM_TOOLCHAIN", missing);
        let error = build(dir.path()).expect_err("the forced toolchain is missing");
        std::env::remove_var("CHROMA_WASM_TOOLCHAIN");
        assert!(matches!(error, BuildError::ForcedToolchainMissing(ref t) if t == missing), "{error}");
        let message = error.to_string();
        assert!(message.contains("rustup target add wasm32-unknown-unknown") && message.contains("apt-get install rustc-web"), "{message}");
    }
}

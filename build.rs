//! Embeds what the binary serves: the migrations (by `sqlx::migrate!`) and the control panel's
//! files under `web/`, listed here with a version that changes whenever any of them does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    collect(&root.join("web"), &mut files);
    files.sort();
    // FNV-1a over every name and content: enough to tell one build's files from another's.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut list = String::new();
    for path in &files {
        let name = path
            .strip_prefix(root.join("web"))
            .expect("under web/")
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(path).expect("readable panel file");
        for b in name.bytes().chain([0]).chain(bytes.iter().copied()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            list,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("string");
    }
    let out = format!(
        "/// The panel's files, by path under `web/`.\n\
         pub const FILES: &[(&str, &[u8])] = &[\n{list}];\n\
         /// Changes whenever a file does: part of every asset's URL, so assets may be cached for good.\n\
         pub const VERSION: &str = \"{hash:016x}\";\n"
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("web_files.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

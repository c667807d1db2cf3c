//! What every target shares: the bytes go to a file (the readers take paths, as the CLI
//! does), one per process, in memory when /dev/shm exists.

use std::path::PathBuf;

/// This process's scratch file, `name` naming the target.
pub fn scratch(name: &str) -> PathBuf {
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => PathBuf::from("/dev/shm"),
        false => std::env::temp_dir(),
    };
    dir.join(format!("nrpm-fuzz-{name}-{}", std::process::id()))
}

/// Writes `data` to the scratch file and returns its path.
pub fn file_with(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, data).expect("scratch file is writable");
    path
}

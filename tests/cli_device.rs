//! `--device` on the command line: an unusable CUDA device fails early with one clear line
//! (built without the cuda feature / libcuda not found / no CUDA device), in every build.

use std::process::Command;

use nrpm::Device;

/// Prints a skip notice past libtest's output capture (straight to stderr), so a plain
/// `cargo test` shows it.
fn say(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn nrpm(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .args(args)
        .output()
        .expect("nrpm runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_on_an_unusable_cuda_device_prints_one_line() {
    if let Ok(name) = Device::Cuda(0).open() {
        say(&format!(
            "eval_on_an_unusable_cuda_device_prints_one_line: skipped: CUDA works here ({name})"
        ));
        return;
    }
    let (code, stderr) = nrpm(&["eval", "--device", "cuda"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: CUDA unavailable: "), "{stderr}");
    let why = [
        "built without the cuda feature",
        "libcuda not found",
        "libnvrtc not found",
        "no CUDA device",
    ];
    assert!(why.iter().any(|w| stderr.contains(w)), "{stderr}");
    if cfg!(not(feature = "cuda")) {
        assert!(
            stderr.contains("built without the cuda feature"),
            "{stderr}"
        );
    }
}

#[test]
fn an_unknown_device_is_named() {
    let (code, stderr) = nrpm(&["eval", "--device", "tpu"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: unknown device 'tpu' (expected one of: cpu, cuda, cuda:N)"
    );
}

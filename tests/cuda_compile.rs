//! Every kernel file in `cuda/` compiles with NVRTC for `compute_90` (Hopper), with the options
//! the run-time path uses, and the PTX holds every kernel the launcher loads. Needs no GPU,
//! only libnvrtc: `.ci/run` installs it from the `nvidia-cuda-nvrtc` wheel into `.nvrtc/` and
//! puts it on `LD_LIBRARY_PATH`. Without libnvrtc the test prints why and passes as skipped.
//!
//! With `NRPM_PTX_DIR=<folder>` it also writes the PTX there (for `ptxas -v` resource reports).
#![cfg(feature = "cuda")]

use nrpm::cuda::{compile, nvrtc_present, Build, SOURCES};

#[test]
fn every_kernel_compiles_for_compute_90() {
    if !nvrtc_present() {
        nrpm::testing::skip(
            "nvrtc",
            "every_kernel_compiles_for_compute_90",
            "libnvrtc not found (install the nvidia-cuda-nvrtc wheel and put its lib folder on \
             LD_LIBRARY_PATH, as .ci/run does)",
        );
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".cu"))
        .map(|f| format!("cuda/{f}"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = SOURCES.iter().map(|s| s.0.to_string()).collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "a file in cuda/ is not embedded in SOURCES"
    );

    let ptx_dir = std::env::var_os("NRPM_PTX_DIR").map(std::path::PathBuf::from);
    let builds = Build::all();
    for (file, _) in SOURCES {
        assert!(
            builds.iter().any(|b| b.source.0 == file),
            "{file} is never built"
        );
    }
    for build in &builds {
        let file = build.source.0;
        let ptx = match compile(build, Some("compute_90")) {
            Ok(ptx) => ptx.to_src(),
            Err(e) => panic!("{} {:?}: {e}", file, build.defines),
        };
        assert!(
            ptx.contains(".target sm_90"),
            "{file}: not compiled for sm_90"
        );
        for kernel in &build.kernels {
            assert!(
                ptx.contains(&format!(".entry {kernel}(")),
                "{file} {:?}: no kernel {kernel} in the PTX",
                build.defines
            );
        }
        let name = format!(
            "{}{}.ptx",
            file.trim_start_matches("cuda/").trim_end_matches(".cu"),
            build.defines.concat().replace("-D", "_").replace('=', "")
        );
        if let Some(out) = &ptx_dir {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join(&name), &ptx).unwrap();
        }
        eprintln!(
            "{name}: {} kernels compiled for compute_90",
            build.kernels.len()
        );
    }
}

/// A syntax error comes back as `Error::Compile` with NVRTC's log, not a panic.
#[test]
fn a_bad_kernel_gives_the_compiler_log() {
    if !nvrtc_present() {
        nrpm::testing::skip(
            "nvrtc",
            "a_bad_kernel_gives_the_compiler_log",
            "libnvrtc not found",
        );
        return;
    }
    let bad = Build {
        source: (
            "cuda/bad.cu",
            "extern \"C\" __global__ void k() { int x = ; }",
        ),
        defines: Vec::new(),
        kernels: Vec::new(),
    };
    match compile(&bad, Some("compute_90")) {
        Err(nrpm::Error::Compile { kernel, log }) => {
            assert_eq!(kernel, "cuda/bad.cu");
            assert!(log.contains("error"), "{log}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

//! `nrpm apply`'s checks and computation on arbitrary bytes: the safetensors reader, then
//! `nrpm::apply::apply_file` (unknown names, mixed float types, ranks, shapes of bias and
//! grad_output, NaN/Inf, overflow) under a few operator configurations, on the fused and the
//! reference paths. Any error is fine; a panic, an abort or a timeout is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nrpm::apply::apply_file;
use nrpm::tensor_file::TensorFile;
use nrpm::{Exec, Norm, NrpmConfig};

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file_with("apply", data);
    let Ok(file) = TensorFile::read(&path) else {
        return;
    };
    let configs = [
        NrpmConfig::builder().k(1).lambda(0.5).build(),
        NrpmConfig::builder()
            .norm(Norm::Huber { delta: 0.1 })
            .k(3)
            .lambda(0.2)
            .groups(2)
            .build(),
        Ok(NrpmConfig::lpm()),
    ];
    for cfg in configs.into_iter().flatten() {
        for exec in [Exec::Fused, Exec::Reference] {
            let _ = apply_file(&file, &cfg, exec);
        }
    }
});

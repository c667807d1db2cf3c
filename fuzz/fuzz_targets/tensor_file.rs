//! The safetensors reader (checkpoints, `nrpm apply` inputs) on arbitrary bytes, then what
//! `nrpm apply` and checkpoint loading do with a file that parses: read each tensor as f32
//! and f64, with and without an expected shape, and load it into the authors' MLP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nrpm::tensor_file::TensorFile;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file_with("tensors", data);
    let Ok(file) = TensorFile::read(&path) else {
        return;
    };
    for key in ["x", "weight", "bias", "grad_output", "fc1.weight"] {
        let _ = file.array::<f32>(key, None);
        let _ = file.array::<f64>(key, Some(&[2, 3]));
    }
    let spec = nrpm::models::ModelSpec::from_name("mlp1", 1, 28).unwrap();
    let mut model = nrpm::models::Model::<f32>::new(spec);
    let _ = model.load_file(&path, false);
});

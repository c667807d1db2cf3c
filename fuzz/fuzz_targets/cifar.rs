//! The CIFAR-10 binary batch reader on arbitrary bytes: an error, or whole records with
//! labels 0..=9 and pixels in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file_with("cifar", data);
    if let Ok((images, labels)) = nrpm::data::cifar::read_batch(&path) {
        assert_eq!(images.shape(), &[labels.len(), 3, 32, 32]);
        assert!(labels.iter().all(|&l| l < 10));
        assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});

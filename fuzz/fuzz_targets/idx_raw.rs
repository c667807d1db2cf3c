//! The IDX reader on arbitrary bytes (gzip too when they start with 1f 8b): an error or a
//! result whose shape matches the header, never a panic or a header-sized allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file_with("idx-raw", data);
    if let Ok(images) = nrpm::data::idx::read_images_u8(&path) {
        assert!(images.len() <= data.len());
    }
    if let Ok(labels) = nrpm::data::idx::read_labels(&path) {
        assert!(labels.len() <= data.len() && labels.iter().all(|&l| l < 10));
    }
});

//! The IDX reader behind a valid gzip stream of arbitrary content (the decompressor always
//! succeeds, so the parser sees every input), and on the same stream cut short.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    let bytes = gz.finish().unwrap();
    let path = common::file_with("idx-gzip", &bytes);
    let _ = nrpm::data::idx::read_images(&path);
    let _ = nrpm::data::idx::read_labels(&path);
    let cut = bytes.len() * (data.first().copied().unwrap_or(0) as usize) / 256;
    let path = common::file_with("idx-gzip-cut", &bytes[..cut]);
    let _ = nrpm::data::idx::read_images(&path);
});

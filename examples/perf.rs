use ndarray::Array2;
use nrpm::{backward, forward, Norm, NrpmConfig};
use std::time::Instant;
fn main() {
    let (b, d, o, k) = (128, 784, 256, 3);
    let mut s = 1u32;
    let mut r = || { s = s.wrapping_mul(1664525).wrapping_add(1013904223); (s >> 8) as f32 / 16777216.0 - 0.5 };
    let x = Array2::from_shape_fn((b, d), |_| r());
    let w = Array2::from_shape_fn((o, d), |_| r() * 0.1);
    let gy = Array2::from_shape_fn((b, o), |_| r());
    let cfg = NrpmConfig::new(Norm::L1, k, 1e-3, 0.5).unwrap();
    let n = 20;
    let t = Instant::now();
    for _ in 0..n { let _ = forward(x.view(), w.view(), None, &cfg).unwrap(); }
    let fwd = t.elapsed().as_secs_f64() / n as f64;
    let (_, it) = forward(x.view(), w.view(), None, &cfg).unwrap();
    let t = Instant::now();
    for _ in 0..n { let _ = backward(x.view(), w.view(), &it, gy.view(), &cfg).unwrap(); }
    let bwd = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now();
    for _ in 0..n { let _ = x.dot(&w.t()); }
    let mm = t.elapsed().as_secs_f64() / n as f64;
    let ti = (b * d * o * k) as f64;
    println!("fwd {:.2} ms = {:.2} G ti/s ; bwd {:.2} ms ; (fwd+bwd)/fwd = {:.2} ; matmul {:.3} ms", fwd*1e3, ti/fwd/1e9, bwd*1e3, (fwd+bwd)/fwd, mm*1e3);
}

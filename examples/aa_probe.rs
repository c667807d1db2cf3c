use nrpm::attacks::*;
use nrpm::data::{Dataset, Split};
use nrpm::models::{Model, ModelSpec};
fn main() {
    let path = "../shared/models/mlp3_mnist.safetensors";
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28).unwrap());
    model.load_file(path, false).unwrap();
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1000);
    let eps: f64 = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(0.1);
    let data = Dataset::mnist_subset(Split::Test).unwrap().first(n);
    let t = std::time::Instant::now();
    let aa = Attack::strong("autoattack", eps, StrongSettings::default()).unwrap();
    let r = evaluate_autoattack(&model, &data, &[aa], &EvalOptions::default(), &mut nrpm::progress::Silent).unwrap();
    println!("{:?} total {:.2}s", r[0].stages, t.elapsed().as_secs_f64());
    for name in ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square"] {
        let t = std::time::Instant::now();
        let a = Attack::strong(name, eps, StrongSettings::default()).unwrap();
        let r = evaluate(&model, &data, &a, 100, 0, &mut nrpm::progress::Silent).unwrap();
        println!("{name}: {} in {:.2}s", r.robust_correct, t.elapsed().as_secs_f64());
    }
}

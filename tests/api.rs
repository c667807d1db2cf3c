//! The library API holds its invariants (issue 16): what deserialises is validated, fields
//! that could break a layer are private behind checked setters, construction is by name,
//! backward refuses inputs its forward pass did not see, getters take `&self`, foreign crates
//! are re-exported, names and traits are consistent, custom layers and networks plug into
//! training and attacks, and bad numbers are typed errors, never panics.

use nrpm::attacks::{perturb, Attack, PgdSettings, StepSize};
use nrpm::models::{Classifier, LayerSelection, Model, ModelSpec};
use nrpm::ndarray::{array, Array1, Array2, Array4, ArrayD, IxDyn};
use nrpm::nn::{
    Cache, Ctx, LambdaParam, Layer, Linear, Module, Param, ParamGrads, ParamMut, Role, Sequential,
};
use nrpm::seeds::{stream, ImageRngs};
use nrpm::train::{Paradigm, Sgd, SgdConfig};
use nrpm::{conv, Conv2dGeometry, Error, Norm, NrpmConfig};

fn rejects<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str, needle: &str) {
    let err = serde_json::from_str::<T>(json).expect_err(json).to_string();
    assert!(err.contains(needle), "{json}: {err}");
}

/// Item 1: deserialising runs the same checks as the constructors.
#[test]
fn deserialising_validates_every_type_with_invariants() {
    let ok = NrpmConfig::builder()
        .k(1)
        .eps(5e-5)
        .lambda(0.7)
        .build()
        .unwrap();
    let text = serde_json::to_string(&ok).unwrap();
    assert_eq!(serde_json::from_str::<NrpmConfig>(&text).unwrap(), ok);
    rejects::<NrpmConfig>(&text.replace("0.00005", "-1.0"), "eps");
    rejects::<NrpmConfig>(&text.replace("\"groups\":1", "\"groups\":0"), "groups");
    rejects::<Norm>(r#"{"kind":"hm","gamma":3.0,"delta":4.0}"#, "gamma > delta");
    rejects::<Conv2dGeometry>(
        r#"{"stride":[0,1],"padding":[0,0],"dilation":[1,1]}"#,
        "at least 1",
    );
    rejects::<SgdConfig>(
        r#"{"lr":0.1,"momentum":1.5,"weight_decay":0.0}"#,
        "momentum",
    );
    rejects::<Attack>(
        r#"{"PgdLinf":{"eps":0.1,"alpha":0.01,"steps":0,"random_start":true}}"#,
        "steps",
    );
    rejects::<Attack>(r#"{"Fgsm":{"eps":-0.1}}"#, "eps");
    rejects::<nrpm::attacks::EvalOptions>(
        r#"{"batch_size":0,"seed":0,"targeted":false}"#,
        "batch size",
    );
    let spec = serde_json::to_string(&ModelSpec::from_name("mlp2", 1, 28).unwrap()).unwrap();
    rejects::<ModelSpec>(&spec.replace("\"classes\":10", "\"classes\":0"), "class");
    rejects::<ModelSpec>(&spec.replace("[784,64,10]", "[784,0,10]"), "MLP widths");
}

/// Item 2: tensors cannot take a shape their layer cannot use; a network that does not end in
/// logits is an error, not a panic.
#[test]
fn shapes_cannot_be_broken_and_bad_networks_are_errors() {
    let mut l = Linear::<f32>::new(3, 2, true);
    assert!(matches!(
        l.set_weight(Array2::zeros((2, 4))),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        l.set_bias(Array1::zeros(3)),
        Err(Error::Shape { .. })
    ));
    assert!(Linear::<f32>::from_parts(Array2::zeros((2, 3)), Some(Array1::zeros(5))).is_err());
    l.set_weight(Array2::ones((2, 3))).unwrap();
    assert_eq!(l.weight(), Array2::<f32>::ones((2, 3)));
    // Visitors change values, never shapes.
    let mut layer = Layer::Linear(l);
    layer.visit_mut("l", &mut |mut p: ParamMut<'_, f32>| p.value.fill(0.5));
    let conv_tail = Sequential::<f32>::new().push(
        "conv",
        Layer::Conv2d(nrpm::nn::Conv2d::new(
            1,
            2,
            3,
            Conv2dGeometry::default(),
            false,
        )),
    );
    let err = Model::custom(conv_tail, [1, 5, 5], 2).unwrap_err();
    assert!(err.to_string().contains("logits"), "{err}");
    // A model whose layers were changed to end in a conv: the forward pass says so.
    let mut m = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
    m.net_mut().layers.clear();
    let err = m.logits(Array4::zeros((1, 1, 4, 4)).view()).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

/// Item 3: construction by name; λ lives in the config only.
#[test]
fn construction_is_by_name() {
    let cfg = NrpmConfig::builder()
        .norm(Norm::huber(2.0).unwrap())
        .k(1)
        .eps(5e-5)
        .lambda(0.7)
        .build()
        .unwrap();
    assert_eq!((cfg.k(), cfg.eps(), cfg.lambda()), (1, 5e-5, 0.7));
    assert_eq!(
        NrpmConfig::default(),
        NrpmConfig::builder().build().unwrap()
    );
    assert!(
        Norm::hm(3.0, 4.0).is_err(),
        "a swapped γ, δ pair breaks γ > δ"
    );
    let pgd = Attack::pgd_linf(
        0.1,
        PgdSettings {
            steps: 10,
            step_size: StepSize::Relative(0.25),
            random_start: false,
        },
    )
    .unwrap();
    assert_eq!(
        pgd,
        Attack::PgdLinf {
            eps: 0.1,
            alpha: 0.025,
            steps: 10,
            random_start: false
        }
    );
    let mut m = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 4).unwrap());
    m.reprogram(&LayerSelection::All, cfg, LambdaParam::Raw)
        .unwrap();
    assert!(m.lambdas().iter().all(|(_, l)| (l - 0.7).abs() < 1e-6));
}

/// Item 4: backward cannot be given other inputs or another configuration.
#[test]
fn backward_refuses_what_its_forward_did_not_see() {
    let x = array![[0.2_f64, 0.4, 0.1, 9.0]];
    let w = array![[1.0_f64, 1.0, 1.0, 1.0], [0.5, -1.0, 0.25, 2.0]];
    let cfg = NrpmConfig::builder().k(2).lambda(0.3).build().unwrap();
    let (_, saved) = nrpm::forward(x.view(), w.view(), None, &cfg).unwrap();
    assert_eq!(saved.config(), &cfg);
    let gy = array![[1.0, 1.0]];
    let other_x = array![[0.2_f64, 0.4, 0.1, 9.5]];
    let err = nrpm::backward(other_x.view(), w.view(), &saved, gy.view()).unwrap_err();
    assert!(
        matches!(err, Error::Stale { .. }) && err.to_string().contains("x holds other values"),
        "{err}"
    );
    let err = nrpm::backward(x.view(), w.view(), &saved, array![[1.0]].view()).unwrap_err();
    assert!(
        err.to_string()
            .contains("nrpm::fused::backward: grad_output must have shape [1, 2], got [1, 1]"),
        "{err}"
    );
    // Conv: another geometry than the forward pass's.
    let xc = Array4::<f64>::ones((1, 1, 4, 4));
    let wc = Array4::<f64>::ones((1, 1, 2, 2));
    let g = Conv2dGeometry::default();
    let (y, saved) = conv::forward(xc.view(), wc.view(), None, &g, &cfg).unwrap();
    let err = conv::backward(
        xc.view(),
        wc.view(),
        &saved,
        Array4::ones(y.raw_dim()).view(),
        &Conv2dGeometry::new(2, 0),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Stale { .. }), "{err}");
}

/// Item 6: read-only getters take `&self`.
#[test]
fn getters_take_shared_references() {
    let m = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 4).unwrap());
    let shared = &m;
    assert_eq!(shared.matching_layers().len(), 2);
    assert!(shared.lambdas().is_empty());
    assert_eq!(shared.param_shapes(&[Role::Weight]).len(), 2);
    assert!(shared.state_dict().tensors.contains_key("fc1.weight"));
    let mut keys = Vec::new();
    shared.visit(&mut |p: Param<'_, f32>| keys.push(p.key));
    assert_eq!(keys, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
}

/// Items 7 and 8: foreign crates come from nrpm; names are consistent; FromStr, Display and
/// Default round-trip.
#[test]
fn re_exports_names_and_string_forms() {
    let mut rng = ImageRngs::for_images(0, stream::ATTACK, [0, 1]);
    let mut m = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
    m.init(0);
    let x = Array4::<f32>::from_elem((2, 1, 4, 4), 0.5);
    let attack = Attack::fgsm(0.1).unwrap();
    assert!(perturb(&m, x.view(), &[1, 2], &attack, None, &mut rng).is_ok());
    for text in [
        "l1",
        "huber(delta=2)",
        "hm(gamma=5,delta=1)",
        "mcp(gamma=3)",
        "lpm",
    ] {
        let n: Norm = text.parse().unwrap();
        assert_eq!(n.to_string().parse::<Norm>().unwrap(), n);
    }
    let cfg: NrpmConfig = "hm(gamma=5,delta=1), k=2, eps=0.01, lambda=0.25, groups=2"
        .parse()
        .unwrap();
    assert_eq!(cfg.to_string().parse::<NrpmConfig>().unwrap(), cfg);
    assert_eq!(Norm::default(), Norm::L1);
    let _: nrpm::LinearGrads<f64> = nrpm::backward(
        array![[1.0]].view(),
        array![[1.0]].view(),
        &nrpm::forward(
            array![[1.0]].view(),
            array![[1.0]].view(),
            None,
            &cfg.with_groups(1).unwrap(),
        )
        .unwrap()
        .1,
        array![[1.0]].view(),
    )
    .unwrap();
    let _: nrpm::ConvGrads<f64>;
    let _: ParamGrads<f64> = ParamGrads::default();
}

/// A user's layer: y = 2x, with one scale parameter kept under `key.scale`.
#[derive(Clone, Debug)]
struct Double {
    scale: Array1<f32>,
}

impl Module<f32> for Double {
    fn forward(&self, x: ArrayD<f32>, _: &mut Ctx) -> nrpm::Result<(ArrayD<f32>, Cache<f32>)> {
        Ok((&x * self.scale[0], Cache::Custom(std::sync::Arc::new(x))))
    }
    fn backward(
        &self,
        key: &str,
        cache: &Cache<f32>,
        dy: ArrayD<f32>,
        grads: &mut ParamGrads<f32>,
    ) -> nrpm::Result<ArrayD<f32>> {
        let Cache::Custom(x) = cache else {
            return Err(Error::WrongCache { layer: "Double" });
        };
        let x = x
            .downcast_ref::<ArrayD<f32>>()
            .ok_or(Error::WrongCache { layer: "Double" })?;
        grads.add(
            format!("{key}.scale"),
            ArrayD::from_elem(IxDyn(&[1]), (&dy * x).sum()),
        );
        Ok(dy * self.scale[0])
    }
    fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, f32>)) {
        f(Param::new(
            format!("{key}.scale"),
            Role::Weight,
            self.scale.view().into_dyn(),
        ));
    }
    fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, f32>)) {
        f(ParamMut::new(
            format!("{key}.scale"),
            Role::Weight,
            self.scale.view_mut().into_dyn(),
        ));
    }
    fn box_clone(&self) -> Box<dyn Module<f32>> {
        Box::new(self.clone())
    }
}

/// Item 9: a user's layer goes into a Sequential; the optimiser steps it through
/// `Parameters`; attacks run on the custom network through `Classifier`; labels are usize.
#[test]
fn custom_layers_train_and_are_attacked() {
    let net = Sequential::new()
        .push("", Layer::Flatten)
        .push(
            "double",
            Layer::Custom(Box::new(Double {
                scale: Array1::from_elem(1, 2.0),
            })),
        )
        .push("head", Layer::Linear(Linear::new(16, 3, true)));
    let mut model = Model::custom(net, [1, 4, 4], 3).unwrap();
    model.init(1);
    let x =
        Array4::<f32>::from_shape_fn((2, 1, 4, 4), |(b, _, h, w)| ((b + h + w) % 3) as f32 / 3.0);
    let (loss, _, _) = model.loss_input_grad(x.view(), &[0, 2]).unwrap();
    assert!(loss.is_finite());
    let (logits, caches) = model.forward(x.view(), &mut Ctx::eval()).unwrap();
    let (_, dlogits) = nrpm::nn::loss::cross_entropy(logits.view(), &[0, 2]).unwrap();
    let (_, grads) = model.backward(&caches, dlogits).unwrap();
    assert!(grads.get("double.scale").is_some());
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
    })
    .unwrap();
    assert_eq!(
        sgd.step(&mut model, &grads, 0.1, Paradigm::Scratch)
            .unwrap(),
        3
    );
    let mut scale = 0.0;
    model.visit(&mut |p| {
        if p.key == "double.scale" {
            scale = p.value[[0]]
        }
    });
    assert_ne!(scale, 2.0, "the custom parameter was stepped");
    let classifier: &dyn Classifier<f32> = &model;
    assert_eq!(
        (classifier.input_shape(), classifier.classes()),
        ([1, 4, 4], 3)
    );
    let mut rng = ImageRngs::for_images(0, stream::ATTACK, [0, 1]);
    let adv = perturb(
        &model,
        x.view(),
        &[0, 2],
        &Attack::pgd_linf(0.1, PgdSettings::default()).unwrap(),
        None,
        &mut rng,
    )
    .unwrap();
    assert!(adv
        .iter()
        .zip(x.iter())
        .all(|(a, b)| (a - b).abs() <= 0.1 + 1e-6));
    let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test).unwrap();
    let first: usize = data.labels()[0];
    assert_eq!(first, 7);
    // A record of a custom network cannot be rebuilt by guessing.
    assert!(model.record().build::<f32>().is_err());
}

/// Item 10: non-finite logits and overflowing geometry are typed errors.
#[test]
fn bad_numbers_are_typed_errors() {
    let z = array![[1.0_f32, f32::NAN]];
    assert!(matches!(
        nrpm::nn::loss::cross_entropy(z.view(), &[0]),
        Err(Error::NonFinite { .. })
    ));
    let g = Conv2dGeometry {
        stride: [1, 1],
        padding: [usize::MAX / 2 + 1, 0],
        dilation: [1, 1],
    };
    assert!(matches!(
        g.output_size(4, 4, 3, 3),
        Err(Error::Config { .. })
    ));
    let g = Conv2dGeometry {
        stride: [1, 1],
        padding: [0, 0],
        dilation: [usize::MAX, 1],
    };
    assert!(matches!(
        g.output_size(4, 4, 3, 3),
        Err(Error::Config { .. })
    ));
}

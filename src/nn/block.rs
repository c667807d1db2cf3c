//! Residual blocks of ResNets (He et al.; the authors' `models/tinyrobnet.py`):
//!
//! ```text
//! BasicBlock  (expansion 1): main = conv3×3(stride) → bn1 → relu → conv3×3 → bn2
//! Bottleneck  (expansion 4): main = conv1×1 → bn1 → relu → conv3×3(stride) → bn2 → relu
//!                                   → conv1×1 → bn3
//! shortcut = identity, or conv1×1(stride) → bn when the stride or width changes
//! y = relu(main(x) + shortcut(x))
//! ```
//!
//! Keys: `conv1`, `bn1`, `conv2`, `bn2` (`conv3`, `bn3`), `shortcut.0`, `shortcut.1`.

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::nn::{
    act, join, BatchNorm2d, Cache, Conv2d, Ctx, Layer, Param, ParamGrads, ParamMut, Sequential,
};
use crate::nrpm::conv::Conv2dGeometry;
use crate::real::Real;

/// Which residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlockKind {
    /// Two 3×3 convolutions, expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convolutions, expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per `planes`.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A residual block.
#[derive(Clone, Debug)]
pub struct Residual<T: Real> {
    /// Basic or bottleneck.
    pub kind: BlockKind,
    /// The main path.
    pub main: Sequential<T>,
    /// The projection shortcut (`None` = identity).
    pub shortcut: Option<Sequential<T>>,
}

fn conv<T: Real>(c: usize, o: usize, k: usize, stride: usize) -> Layer<T> {
    Layer::Conv2d(Conv2d::new(
        c,
        o,
        k,
        Conv2dGeometry::new(stride, k / 2),
        false,
    ))
}

fn bn<T: Real>(c: usize) -> Layer<T> {
    Layer::BatchNorm2d(BatchNorm2d::new(c))
}

impl<T: Real> Residual<T> {
    /// A block from `in_planes` channels to `planes·expansion`, first conv with `stride`
    /// (zero-initialised convolutions, PyTorch-initialised BatchNorms).
    pub fn new(kind: BlockKind, in_planes: usize, planes: usize, stride: usize) -> Self {
        let out = planes * kind.expansion();
        let main = match kind {
            BlockKind::Basic => Sequential::new()
                .push("conv1", conv(in_planes, planes, 3, stride))
                .push("bn1", bn(planes))
                .push("", Layer::Relu)
                .push("conv2", conv(planes, planes, 3, 1))
                .push("bn2", bn(planes)),
            BlockKind::Bottleneck => Sequential::new()
                .push("conv1", conv(in_planes, planes, 1, 1))
                .push("bn1", bn(planes))
                .push("", Layer::Relu)
                .push("conv2", conv(planes, planes, 3, stride))
                .push("bn2", bn(planes))
                .push("", Layer::Relu)
                .push("conv3", conv(planes, out, 1, 1))
                .push("bn3", bn(out)),
        };
        let shortcut = (stride != 1 || in_planes != out).then(|| {
            Sequential::new()
                .push("0", conv(in_planes, out, 1, stride))
                .push("1", bn(out))
        });
        Self {
            kind,
            main,
            shortcut,
        }
    }

    /// Forward pass.
    ///
    /// # Errors
    /// Errors of the inner layers, or main/shortcut shapes that differ.
    pub fn forward(&self, x: ArrayD<T>, ctx: &mut Ctx) -> Result<(ArrayD<T>, Cache<T>)> {
        let (sc, sc_caches) = match &self.shortcut {
            Some(s) => s
                .forward(x.clone(), ctx)
                .map_err(|e| e.in_layer("shortcut"))?,
            None => (x.clone(), Vec::new()),
        };
        let (out, main) = self.main.forward(x, ctx)?;
        if out.shape() != sc.shape() {
            return Err(Error::shape(
                "nn::Residual::forward",
                "shortcut output",
                out.shape(),
                sc.shape(),
            ));
        }
        let (y, mask) = act::relu_forward(out + sc);
        let Cache::Mask(mask) = mask else {
            unreachable!("relu caches a mask")
        };
        Ok((
            y,
            Cache::Residual {
                main,
                shortcut: sc_caches,
                mask,
            },
        ))
    }

    /// Backward pass.
    ///
    /// # Errors
    /// A cache of another layer, or shape mismatches.
    pub fn backward(
        &self,
        key: &str,
        cache: &Cache<T>,
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>> {
        let Cache::Residual {
            main,
            shortcut,
            mask,
        } = cache
        else {
            return Err(Error::WrongCache {
                layer: "nn::Residual",
            });
        };
        let d = act::mask_backward(mask, dy)?;
        let dx_main = self.main.backward(key, main, d.clone(), grads)?;
        let dx_sc = match &self.shortcut {
            Some(s) => s
                .backward(&join(key, "shortcut"), shortcut, d, grads)
                .map_err(|e| e.in_layer("shortcut"))?,
            None => d,
        };
        Ok(dx_main + dx_sc)
    }

    /// Visits parameters and buffers, read-only.
    pub fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        self.main.visit(key, f);
        if let Some(s) = &self.shortcut {
            s.visit(&join(key, "shortcut"), f);
        }
    }

    /// Visits parameters and buffers.
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        self.main.visit_mut(key, f);
        if let Some(s) = &mut self.shortcut {
            s.visit_mut(&join(key, "shortcut"), f);
        }
    }

    /// Visits the leaf layers read-only (main path, then shortcut).
    pub fn visit_layers(&self, key: &str, f: &mut dyn FnMut(&str, &Layer<T>)) {
        self.main.visit_layers(key, f);
        if let Some(s) = &self.shortcut {
            s.visit_layers(&join(key, "shortcut"), f);
        }
    }

    /// Visits the leaf layers (main path, then shortcut).
    pub fn visit_layers_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, &mut Layer<T>)) {
        self.main.visit_layers_mut(key, f);
        if let Some(s) = &mut self.shortcut {
            s.visit_layers_mut(&join(key, "shortcut"), f);
        }
    }
}

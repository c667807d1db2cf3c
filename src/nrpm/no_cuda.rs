//! Stand-in for `cuda.rs` in a build without the cargo feature `cuda`: the same crate-internal
//! entry points, each returning [`Error::NoCuda`], so [`crate::nrpm::Exec::Cuda`] and
//! [`crate::nrpm::Device::Cuda`] exist in every build and fail cleanly.

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView4};

use crate::error::{Error, Result};
use crate::nrpm::conv::{Conv2dGeometry, ConvGrads};
use crate::nrpm::{Iterates, LinearGrads, NrpmConfig};
use crate::real::Real;

fn off() -> Error {
    Error::NoCuda("nrpm was built without the cuda feature (rebuild with `--features cuda`)".into())
}

pub(crate) fn open(_ordinal: usize) -> Result<String> {
    Err(off())
}

pub(crate) fn forward<T: Real>(
    _ordinal: usize,
    _x: ArrayView2<T>,
    _weight: ArrayView2<T>,
    _bias: Option<ArrayView1<T>>,
    _cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    Err(off())
}

pub(crate) fn backward<T: Real>(
    _ordinal: usize,
    _x: ArrayView2<T>,
    _weight: ArrayView2<T>,
    _iterates: &Iterates<T>,
    _grad_output: ArrayView2<T>,
    _cfg: &NrpmConfig,
) -> Result<LinearGrads<T>> {
    Err(off())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_forward<T: Real>(
    _ordinal: usize,
    _x: ArrayView4<T>,
    _w_flat: ArrayView2<T>,
    _bias: Option<ArrayView1<T>>,
    _kh: usize,
    _kw: usize,
    _geom: &Conv2dGeometry,
    _cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    Err(off())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward<T: Real>(
    _ordinal: usize,
    _x: ArrayView4<T>,
    _w_flat: ArrayView2<T>,
    _iterates: &Iterates<T>,
    _gy_rows: ArrayView2<T>,
    _kh: usize,
    _kw: usize,
    _geom: &Conv2dGeometry,
    _cfg: &NrpmConfig,
) -> Result<ConvGrads<T>> {
    Err(off())
}

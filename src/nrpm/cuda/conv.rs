//! NRPM conv2d on the device: unfold and fold kernels around the linear kernels.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4};

use super::linear::{linear_backward, linear_forward};
use super::{driver, ConvParams, CudaNrpm, DeviceReal};
use crate::error::{Error, Result};
use crate::nrpm::conv::{Conv2dGeometry, ConvGrads};
use crate::nrpm::{bias_and_lambda_grads, check_finite, check_forward, Dims, Iterates, NrpmConfig};
use crate::real::Real;

/// A convolution's linear problem: `(dims of the patch problem, kernel geometry)`.
#[allow(clippy::too_many_arguments)]
fn conv_problem<T: Real>(
    op: &'static str,
    x: &ArrayView4<T>,
    w_flat: &ArrayView2<T>,
    bias: Option<&ArrayView1<T>>,
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
    cfg: &NrpmConfig,
) -> Result<(Dims, ConvParams)> {
    let (b, c, h, w) = x.dim();
    let (ho, wo) = geom.output_size(h, w, kh, kw)?;
    let no_rows = Array2::<T>::zeros((0, c * kh * kw));
    let mut dims = check_forward(op, &no_rows.view(), w_flat, bias, cfg)?;
    check_finite("input x", x)?;
    dims.b = b * ho * wo;
    let u = |name: &'static str, v: usize| {
        u32::try_from(v).map_err(|_| Error::config(name, v, "must be below 2³² on the CUDA path"))
    };
    let cp = ConvParams {
        batch: u("B", b)?,
        channels: u("C", c)?,
        height: u("H", h)?,
        width: u("W", w)?,
        kh: u("kh", kh)?,
        kw: u("kw", kw)?,
        out_h: u("Ho", ho)?,
        out_w: u("Wo", wo)?,
        stride_h: u("stride", geom.stride[0])?,
        stride_w: u("stride", geom.stride[1])?,
        pad_h: u("padding", geom.padding[0])?,
        pad_w: u("padding", geom.padding[1])?,
        dil_h: u("dilation", geom.dilation[0])?,
        dil_w: u("dilation", geom.dilation[1])?,
        reserved0: 0,
        reserved1: 0,
    };
    Ok((dims, cp))
}

/// NRPM conv2d forward on a CUDA device, patches unfolded on the device: `x [B, C, H, W]`,
/// `w_flat [O, C·kh·kw]` → `y` rows `[B·Ho·Wo, O]` and the iterates.
///
/// # Errors
/// As [`crate::nrpm::conv::forward`], plus the CUDA errors of [`forward`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_forward<T: Real>(
    ordinal: usize,
    x: ArrayView4<T>,
    w_flat: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let op = "nrpm::cuda::conv_forward";
    let (dims, cp) = conv_problem(op, &x, &w_flat, bias.as_ref(), kh, kw, geom, cfg)?;
    let dev = CudaNrpm::shared(ordinal)?;
    let none = None::<std::iter::Empty<T>>;
    if T::DTYPE == "f32" {
        linear_forward::<T, f32>(&dev, op, &dims, none, Some((x, cp)), w_flat, bias, cfg)
    } else {
        linear_forward::<T, f64>(&dev, op, &dims, none, Some((x, cp)), w_flat, bias, cfg)
    }
}

/// NRPM conv2d backward on a CUDA device, from `grad_output` rows `[B·Ho·Wo, O]`.
///
/// # Errors
/// As [`crate::nrpm::conv::backward`], plus the CUDA errors of [`forward`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward<T: Real>(
    ordinal: usize,
    x: ArrayView4<T>,
    w_flat: ArrayView2<T>,
    iterates: &Iterates<T>,
    gy_rows: ArrayView2<T>,
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
    cfg: &NrpmConfig,
) -> Result<ConvGrads<T>> {
    let op = "nrpm::cuda::conv_backward";
    let (dims, cp) = conv_problem(op, &x, &w_flat, None, kh, kw, geom, cfg)?;
    let want = [dims.b, dims.o, dims.n, cfg.steps() + 1];
    if iterates.z.shape() != want {
        return Err(Error::shape(op, "iterates", &want, iterates.z.shape()));
    }
    if gy_rows.dim() != (dims.b, dims.o) {
        return Err(Error::shape(
            op,
            "grad_output",
            &[dims.b, dims.o],
            gy_rows.shape(),
        ));
    }
    check_finite("grad_output", &gy_rows)?;
    let dev = CudaNrpm::shared(ordinal)?;
    let none = None::<std::iter::Empty<T>>;
    let img = Some((x, cp));
    let (gx, gw) = if T::DTYPE == "f32" {
        linear_backward::<T, f32>(&dev, &dims, none, img, w_flat, iterates, gy_rows, cfg)?
    } else {
        linear_backward::<T, f64>(&dev, &dims, none, img, w_flat, iterates, gy_rows, cfg)?
    };
    let (bias, lambda) = bias_and_lambda_grads(iterates, &gy_rows);
    let c = x.dim().1;
    Ok(ConvGrads {
        x: Array4::from_shape_vec(x.raw_dim(), gx).expect("B·C·H·W values"),
        weight: Array4::from_shape_vec((dims.o, c, kh, kw), gw).expect("O·C·kh·kw values"),
        bias,
        lambda,
    })
}

impl CudaNrpm {
    fn elementwise(&self, total: usize) -> LaunchConfig {
        let blocks = total
            .div_ceil(256)
            .clamp(1, self.multiprocessors as usize * 32);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Uploads an image and unfolds it into `cols` (`[B·Ho·Wo, C·kh·kw]`).
    pub(super) fn unfold<U: DeviceReal>(
        &self,
        image: &[U],
        cp: &ConvParams,
        cols: &mut CudaSlice<U>,
    ) -> Result<()> {
        let total = cp.batch as usize
            * (cp.out_h * cp.out_w) as usize
            * (cp.channels * cp.kh * cp.kw) as usize;
        if total == 0 {
            return Ok(());
        }
        let img = self.upload(image, "upload image")?;
        let mut launch = self.stream.launch_builder(&self.conv_kernels::<U>().unfold);
        launch.arg(&img).arg(cols).arg(cp);
        // SAFETY: arguments match nrpm_unfold(const T* x, T* cols, ConvParams); img holds
        // B·C·H·W values, cols B·Ho·Wo·C·kh·kw (DeviceLinear's x); the grid-stride loop stops
        // at that count and source coordinates are checked against H and W.
        unsafe { launch.launch(self.elementwise(total)) }.map_err(driver("launch nrpm_unfold"))?;
        self.count_launch();
        Ok(())
    }

    /// Folds `cols` back into an image (the adjoint of unfold).
    pub(super) fn fold<U: DeviceReal>(
        &self,
        cols: &CudaSlice<U>,
        cp: &ConvParams,
        image: &mut CudaSlice<U>,
    ) -> Result<()> {
        let total = (cp.batch * cp.channels * cp.height * cp.width) as usize;
        if total == 0 {
            return Ok(());
        }
        let mut launch = self.stream.launch_builder(&self.conv_kernels::<U>().fold);
        launch.arg(cols).arg(image).arg(cp);
        // SAFETY: arguments match nrpm_fold(const T* cols, T* x, ConvParams); the image holds
        // B·C·H·W values (the loop's bound) and every patch index is checked against Ho, Wo.
        unsafe { launch.launch(self.elementwise(total)) }.map_err(driver("launch nrpm_fold"))?;
        self.count_launch();
        Ok(())
    }
}

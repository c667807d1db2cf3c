//! The linear NRPM on the device: buffers, kernel launches, and the host-array entry points.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4};

use super::{
    driver, params, ConvParams, CudaNrpm, DeviceReal, NrpmParams, GRAD_ROWS, GRAD_THREADS, TILES,
    TILE_THREADS,
};
use crate::error::{Error, Result};
use crate::nrpm::{
    bias_and_lambda_grads, check_backward, check_forward, check_overflow, Dims, Iterates,
    LinearGrads, NrpmConfig,
};
use crate::real::Real;

/// A linear NRPM problem on the device: inputs, outputs and backward scratch, all `U`.
///
/// Built by [`CudaNrpm::upload_linear`]; [`CudaNrpm::launch_forward`] and
/// [`CudaNrpm::launch_backward`] only queue kernels, so a benchmark can time them alone.
pub struct DeviceLinear<U: DeviceReal> {
    prm: NrpmParams,
    /// `[B, D]`.
    pub x: CudaSlice<U>,
    /// `[O, D]`.
    pub w: CudaSlice<U>,
    bias: CudaSlice<U>,
    /// `[B, O]`.
    pub y: CudaSlice<U>,
    /// The iterates, `[B, O, N, K+1]`.
    pub z: CudaSlice<U>,
    /// ȳ, `[B, O]` (zeros unless given to [`CudaNrpm::upload_linear`]).
    pub gy: CudaSlice<U>,
    sq: CudaSlice<U>,
    rec: CudaSlice<U>,
    /// x̄, `[B, D]`.
    pub gx: CudaSlice<U>,
    /// W̄, `[O, D]`.
    pub gw: CudaSlice<U>,
}

impl<U: DeviceReal> DeviceLinear<U> {
    /// The kernels' parameters.
    pub fn params(&self) -> &NrpmParams {
        &self.prm
    }
}

impl CudaNrpm {
    /// Puts a linear problem on the device. `x` is `[B, D]` row-major, or `None` to leave it to
    /// the caller (the convolution unfolds into it); `gy` may be empty (zeros).
    ///
    /// # Errors
    /// [`Error::Config`] for sizes beyond the kernels' u32 indices; [`Error::Cuda`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn linear<U: DeviceReal>(
        &self,
        dims: &Dims,
        cfg: &NrpmConfig,
        x: Option<&[U]>,
        w: &[U],
        bias: Option<&[U]>,
        z: Option<&[U]>,
        gy: &[U],
    ) -> Result<DeviceLinear<U>> {
        let prm = params(dims, cfg, bias.is_some())?;
        let (b, o, n, k) = (dims.b, dims.o, dims.n, cfg.steps());
        let outs = b * o * n;
        Ok(DeviceLinear {
            prm,
            x: match x {
                Some(x) => self.upload(x, "upload x")?,
                None => self.zeros(b * dims.d, "allocate patches")?,
            },
            w: self.upload(w, "upload weight")?,
            bias: self.upload(bias.unwrap_or(&[]), "upload bias")?,
            y: self.zeros(b * o, "allocate y")?,
            z: match z {
                Some(z) => self.upload(z, "upload iterates")?,
                None => self.zeros(outs * (k + 1), "allocate iterates")?,
            },
            gy: if gy.is_empty() {
                self.zeros(b * o, "allocate grad_output")?
            } else {
                self.upload(gy, "upload grad_output")?
            },
            sq: self.zeros(outs * k * 2, "allocate adjoint sums")?,
            rec: self.zeros(outs * (k + 1) * 2, "allocate adjoint records")?,
            gx: self.zeros(b * dims.d, "allocate grad x")?,
            gw: self.zeros(o * dims.d, "allocate grad weight")?,
        })
    }

    /// Puts a linear problem on the device for repeated launches of
    /// [`CudaNrpm::launch_forward`] and [`CudaNrpm::launch_backward`] (benchmarks, or callers
    /// that keep tensors on the device). `grad_output` `[B, O]` may be `None` (zeros).
    ///
    /// # Errors
    /// As [`crate::nrpm::forward`] for the shapes and values; [`Error::Cuda`] for the copies.
    pub fn upload_linear<U: DeviceReal>(
        &self,
        x: ArrayView2<U>,
        weight: ArrayView2<U>,
        bias: Option<ArrayView1<U>>,
        grad_output: Option<ArrayView2<U>>,
        cfg: &NrpmConfig,
    ) -> Result<DeviceLinear<U>> {
        let dims = check_forward("nrpm::cuda::upload_linear", &x, &weight, bias.as_ref(), cfg)?;
        let gy: Vec<U> = match grad_output {
            Some(g) if g.dim() == (dims.b, dims.o) => g.iter().copied().collect(),
            Some(g) => {
                return Err(Error::shape(
                    "nrpm::cuda::upload_linear",
                    "grad_output",
                    &[dims.b, dims.o],
                    g.shape(),
                ))
            }
            None => Vec::new(),
        };
        let xs: Vec<U> = x.iter().copied().collect();
        let ws: Vec<U> = weight.iter().copied().collect();
        let bs: Option<Vec<U>> = bias.map(|b| b.iter().copied().collect());
        self.linear(&dims, cfg, Some(&xs), &ws, bs.as_deref(), None, &gy)
    }

    /// Grid and block of the tiled kernels, and the tile index.
    fn tiled_launch<U: DeviceReal>(&self, prm: &NrpmParams) -> Result<(LaunchConfig, usize)> {
        let i = self.tile::<U>(prm.batch as usize, prm.outputs as usize);
        let t = TILE_THREADS * TILES[i];
        let grid = (prm.batch.div_ceil(t), prm.outputs.div_ceil(t), 1);
        if grid.1 > 65_535 {
            return Err(Error::config(
                "O",
                prm.outputs,
                "too many outputs for one CUDA launch (at most 65535·16)",
            ));
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (TILE_THREADS, TILE_THREADS, 1),
            shared_mem_bytes: 0,
        };
        Ok((cfg, i))
    }

    /// Queues the forward kernel: `y` and `z` from `x`, `w`, bias.
    ///
    /// # Errors
    /// [`Error::Cuda`] if the launch fails; [`Error::Config`] for grids beyond the limits.
    pub fn launch_forward<U: DeviceReal>(&self, p: &mut DeviceLinear<U>) -> Result<()> {
        if p.prm.batch == 0 || p.prm.outputs == 0 {
            return Ok(());
        }
        let (cfg, i) = self.tiled_launch::<U>(&p.prm)?;
        let k = self.linear_kernels::<U>(p.prm.norm)?;
        let mut launch = self.stream.launch_builder(&k.fwd[i]);
        launch
            .arg(&p.x)
            .arg(&p.w)
            .arg(&p.bias)
            .arg(&mut p.y)
            .arg(&mut p.z)
            .arg(&p.prm);
        // SAFETY: arguments match nrpm_linear_fwd_t*(const T* x, const T* w, const T* bias,
        // T* y, T* z, NrpmParams) in order and type; x holds B·D values, w O·D, bias O when
        // has_bias (else unread), y B·O, z B·O·N·(K+1) (DeviceLinear's allocations); the
        // kernel guards every row and column index against B, O and the group's D range.
        unsafe { launch.launch(cfg) }.map_err(driver("launch nrpm_linear_fwd"))?;
        self.count_launch();
        Ok(())
    }

    /// Queues the backward kernels: `gx`, `gw` from `x`, `w`, `z`, `gy`.
    ///
    /// # Errors
    /// As [`CudaNrpm::launch_forward`].
    pub fn launch_backward<U: DeviceReal>(&self, p: &mut DeviceLinear<U>) -> Result<()> {
        if p.prm.batch == 0 || p.prm.outputs == 0 {
            return Ok(());
        }
        let k = self.linear_kernels::<U>(p.prm.norm)?;
        let (cfg, i) = self.tiled_launch::<U>(&p.prm)?;
        let mut launch = self.stream.launch_builder(&k.coef[i]);
        launch
            .arg(&p.x)
            .arg(&p.w)
            .arg(&p.z)
            .arg(&p.gy)
            .arg(&mut p.sq)
            .arg(&mut p.rec)
            .arg(&p.prm);
        // SAFETY: arguments match nrpm_linear_bwd_coef_t*(const T* x, const T* w, const T* z,
        // const T* gy, T* sq, T* rec, NrpmParams); sq holds B·O·N·K·2 values (at least 1),
        // rec B·O·N·(K+1)·2, the others as in launch_forward; indices are guarded as there.
        unsafe { launch.launch(cfg) }.map_err(driver("launch nrpm_linear_bwd_coef"))?;
        self.count_launch();

        let threads = p.prm.terms.next_multiple_of(32).min(GRAD_THREADS);
        let d_blocks = p.prm.terms.div_ceil(threads);
        if d_blocks > 65_535 {
            return Err(Error::config(
                "D",
                p.prm.terms,
                "too many terms for one CUDA launch",
            ));
        }
        let grad = |rows: u32| LaunchConfig {
            grid_dim: (rows.div_ceil(GRAD_ROWS), d_blocks, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(&k.bwd_x);
        launch
            .arg(&p.x)
            .arg(&p.w)
            .arg(&p.rec)
            .arg(&mut p.gx)
            .arg(&p.prm);
        // SAFETY: arguments match nrpm_linear_bwd_x(const T* x, const T* w, const T* rec,
        // T* gx, NrpmParams); blockDim.x ≤ 128 (its launch bounds); threads with d ≥ D return
        // at once, rows ≥ B are clamped for reading and never written; gx holds B·D values.
        unsafe { launch.launch(grad(p.prm.batch)) }.map_err(driver("launch nrpm_linear_bwd_x"))?;
        self.count_launch();
        let mut launch = self.stream.launch_builder(&k.bwd_w);
        launch
            .arg(&p.x)
            .arg(&p.w)
            .arg(&p.rec)
            .arg(&mut p.gw)
            .arg(&p.prm);
        // SAFETY: as above for nrpm_linear_bwd_w(const T* x, const T* w, const T* rec, T* gw,
        // NrpmParams), rows being outputs o < O; gw holds O·D values.
        unsafe { launch.launch(grad(p.prm.outputs)) }
            .map_err(driver("launch nrpm_linear_bwd_w"))?;
        self.count_launch();
        Ok(())
    }
}

/// `T` values as `U` (the identity when `T` is `U`: f32 → f64 → f32 is exact).
fn to_dev<T: Real, U: DeviceReal>(a: impl IntoIterator<Item = T>) -> Vec<U> {
    a.into_iter().map(|v| U::of(v.f64())).collect()
}

fn from_dev<T: Real, U: DeviceReal>(a: Vec<U>) -> Vec<T> {
    a.into_iter().map(|v| T::of(v.f64())).collect()
}

/// Forward pass on a CUDA device. Same contract as [`crate::nrpm::forward`].
///
/// # Errors
/// As [`crate::nrpm::forward`], plus [`Error::NoCuda`], [`Error::Compile`], [`Error::Cuda`].
pub fn forward<T: Real>(
    ordinal: usize,
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let op = "nrpm::cuda::forward";
    let dims = check_forward(op, &x, &weight, bias.as_ref(), cfg)?;
    let dev = CudaNrpm::shared(ordinal)?;
    let rows = Some(x.iter().copied());
    let (y, it) = if T::DTYPE == "f32" {
        linear_forward::<T, f32>(&dev, op, &dims, rows, None, weight, bias, cfg)?
    } else {
        linear_forward::<T, f64>(&dev, op, &dims, rows, None, weight, bias, cfg)?
    };
    Ok((y, it.into_linear(&x, &weight)))
}

/// The forward of [`forward`] and of the convolution: `x` rows, or an image to unfold.
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_forward<T: Real, U: DeviceReal>(
    dev: &CudaNrpm,
    op: &'static str,
    dims: &Dims,
    x: Option<impl IntoIterator<Item = T>>,
    image: Option<(ArrayView4<T>, ConvParams)>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let (b, o, n, k) = (dims.b, dims.o, dims.n, cfg.steps());
    let _serial = dev.lock.lock().unwrap_or_else(|e| e.into_inner());
    let xs: Option<Vec<U>> = x.map(to_dev);
    let ws: Vec<U> = to_dev(weight.iter().copied());
    let bs: Option<Vec<U>> = bias.map(|b| to_dev(b.iter().copied()));
    let mut p = dev.linear::<U>(dims, cfg, xs.as_deref(), &ws, bs.as_deref(), None, &[])?;
    if let Some((img, cp)) = image {
        dev.unfold::<U>(&to_dev(img.iter().copied()), &cp, &mut p.x)?;
    }
    dev.launch_forward(&mut p)?;
    dev.synchronize()?;
    let y =
        Array2::from_shape_vec((b, o), from_dev(dev.download(&p.y, b * o)?)).expect("B·O values");
    let z = Array4::from_shape_vec(
        (b, o, n, k + 1),
        from_dev(dev.download(&p.z, b * o * n * (k + 1))?),
    )
    .expect("B·O·N·(K+1) values");
    check_overflow(op, &y)?;
    check_overflow(op, &z)?;
    Ok((y, Iterates::pending(z, *cfg)))
}

/// Backward pass on a CUDA device. Same contract as [`crate::nrpm::backward`].
///
/// # Errors
/// As [`crate::nrpm::backward`], plus [`Error::NoCuda`], [`Error::Compile`], [`Error::Cuda`].
pub fn backward<T: Real>(
    ordinal: usize,
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
    cfg: &NrpmConfig,
) -> Result<LinearGrads<T>> {
    let op = "nrpm::cuda::backward";
    let dims = check_backward(op, &x, &weight, iterates, &grad_output)?;
    let dev = CudaNrpm::shared(ordinal)?;
    let x = Some(x.iter().copied());
    let (gx, gw) = if T::DTYPE == "f32" {
        linear_backward::<T, f32>(&dev, &dims, x, None, weight, iterates, grad_output, cfg)?
    } else {
        linear_backward::<T, f64>(&dev, &dims, x, None, weight, iterates, grad_output, cfg)?
    };
    let (bias, lambda) = bias_and_lambda_grads(iterates, &grad_output);
    Ok(LinearGrads {
        x: Array2::from_shape_vec((dims.b, dims.d), gx).expect("B·D values"),
        weight: Array2::from_shape_vec((dims.o, dims.d), gw).expect("O·D values"),
        bias,
        lambda,
    })
}

/// x̄ (`[B, D]`, or the folded image `[B, C, H, W]` for a convolution) and W̄ `[O, D]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_backward<T: Real, U: DeviceReal>(
    dev: &CudaNrpm,
    dims: &Dims,
    x: Option<impl IntoIterator<Item = T>>,
    image: Option<(ArrayView4<T>, ConvParams)>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
    cfg: &NrpmConfig,
) -> Result<(Vec<T>, Vec<T>)> {
    let _serial = dev.lock.lock().unwrap_or_else(|e| e.into_inner());
    let xs: Option<Vec<U>> = x.map(to_dev);
    let ws: Vec<U> = to_dev(weight.iter().copied());
    let zs: Vec<U> = to_dev(iterates.z.iter().copied());
    let gys: Vec<U> = to_dev(grad_output.iter().copied());
    let mut p = dev.linear::<U>(dims, cfg, xs.as_deref(), &ws, None, Some(&zs), &gys)?;
    if let Some((img, cp)) = &image {
        dev.unfold::<U>(&to_dev(img.iter().copied()), cp, &mut p.x)?;
    }
    dev.launch_backward(&mut p)?;
    let gx = match &image {
        Some((img, cp)) => {
            let mut folded = dev.zeros::<U>(img.len(), "allocate grad image")?;
            dev.fold(&p.gx, cp, &mut folded)?;
            dev.synchronize()?;
            dev.download(&folded, img.len())?
        }
        None => {
            dev.synchronize()?;
            dev.download(&p.gx, dims.b * dims.d)?
        }
    };
    let gw = dev.download(&p.gw, dims.o * dims.d)?;
    Ok((from_dev(gx), from_dev(gw)))
}

//! Where the network's ops run: the one place that routes each op the layers use to its CPU
//! function or to its kernel launcher (candle's manner: a storage that is host or device
//! memory, and one implementation of the same operations per backend).
//!
//! The layers of [`super::layers`] and the wiring of [`super::encoder`], [`super::decoder`] and
//! [`super::transcriber`] are generic over a [`Backend`] and written once:
//! - [`Cpu`] calls the fast functions of `crate::ops` on pooled host [`Storage`]; parameters are
//!   [`Param`]s owned by their layers (what checkpoints read and write). Its internals (rayon
//!   over batch items, the storage pool, BatchNorm fused with the leaky ReLU) are those the
//!   layer structs called before this file existed.
//! - [`Kernels`] calls the `*_launch` functions on an `emu` or `cuda` device. Parameters,
//!   gradients and the BatchNorm running statistics live in one [`DeviceArena`] each (llm.c's
//!   allocate-once), so zeroing the gradients is one launch, and clipping and Adam
//!   (`model::device_training`) are one launch each over the whole arena; a layer holds only
//!   its tensors' indices. Activations come from a pool of device buffers by length, so a step
//!   of an already seen shape allocates nothing; each layer keeps its op's workspace for the
//!   next pass. Nothing comes back to the host within a pass except the loss.
//!
//! Every op takes its shapes explicitly and returns or fills storage of its backend; errors are
//! the device's (the CPU never fails).
//!
//! Why a trait with associated types rather than an enum over both memories: the CPU keeps
//! exactly its types (`Transcriber` is `Transcriber<Cpu>`, a zero-sized backend, so the golden
//! tests, checkpoints and every caller see the network they saw before, at the same speed),
//! while the device's parameters can be indices into arenas instead of owned buffers, and
//! neither backend can be handed the other's memory. A device model is built by the same
//! constructors as the CPU one (`Transcriber::build`), taking each parameter, in order and
//! checked by name, from the CPU model it uploads ([`Transcriber::upload`]).
// The ops take their shapes as arguments, so some signatures are long on purpose.
#![allow(clippy::too_many_arguments)]

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::device::{DeviceArena, DeviceBuffer, DeviceError, KernelDevice};
use crate::ops::activation::{
    sigmoid_backward, sigmoid_backward_launch, sigmoid_forward, sigmoid_forward_launch,
};
use crate::ops::batchnorm::{
    batchnorm_backward_from_output_applies, batchnorm_backward_launch,
    batchnorm_forward_eval_launch, batchnorm_forward_train_launch,
    batchnorm_leaky_relu_backward_from_output, batchnorm_leaky_relu_backward_overwrite,
    batchnorm_leaky_relu_forward_eval, batchnorm_leaky_relu_forward_train, BatchNormWorkspace,
    BATCHNORM_EPS, BATCHNORM_MOMENTUM,
};
use crate::ops::clamp::{clamp_in_place, clamp_in_place_launch};
use crate::ops::concat::{
    concat_channels_backward, concat_channels_backward_launch, concat_channels_forward,
    concat_channels_forward_launch,
};
use crate::ops::conv2d::{
    conv2d_backward, conv2d_backward_fresh, conv2d_backward_launch, conv2d_forward,
    conv2d_forward_finished, conv2d_forward_launch, ConvFinish, ConvWorkspace, DeviceConvGeometry,
};
use crate::ops::conv_transpose2d::{
    conv_transpose2d_backward, conv_transpose2d_backward_fresh, conv_transpose2d_backward_launch,
    conv_transpose2d_forward, conv_transpose2d_forward_finished, conv_transpose2d_forward_launch,
};
use crate::ops::elementwise::{add_forward_launch, add_in_place_launch, fill_launch};
use crate::ops::linear::{
    linear_backward, linear_backward_launch, linear_backward_scratch_len, linear_forward,
    linear_forward_launch,
};
use crate::ops::loss::{
    bce_backward, bce_backward_launch, bce_forward, bce_forward_launch, bce_partials_len,
};
use crate::ops::lstm::{
    lstm_backward, lstm_backward_launch, lstm_forward, lstm_forward_launch, DeviceLstmGradients,
    DeviceLstmWeights, LstmGradients, LstmShape, LstmWeights, LstmWorkspace,
};

use super::storage::Storage;
use super::tensor::{Buffer, Mode, Param, StateEntry, Tensor};
use super::transcriber::Transcriber;
use super::ModelError;

type Result<T> = std::result::Result<T, DeviceError>;

/// Storage that knows how many float32 values it holds.
pub trait Elements {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Elements for Storage {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
}

/// A state_dict entry's name.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for Param {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Buffer {
    fn name(&self) -> &str {
        &self.name
    }
}

/// One convolution layer's call: a Conv2d of its device geometry (`n` images of (c_in, h, w)
/// to (c_out, h_out, w_out)), or a ConvTranspose2d as the adjoint of the convolution `adjoint`
/// (from the transposed convolution's output back to its input), with the output paddings that
/// reach its output size. Both backends read the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvShape {
    Conv2d(DeviceConvGeometry),
    Transposed {
        adjoint: DeviceConvGeometry,
        output_padding: (usize, usize),
    },
}

impl ConvShape {
    /// (c_out, h_out, w_out) of each output image.
    pub fn output_dims(&self) -> (usize, usize, usize) {
        match self {
            ConvShape::Conv2d(g) => (g.c_out, g.h_out, g.w_out),
            ConvShape::Transposed { adjoint: a, .. } => (a.c_in, a.h, a.w),
        }
    }

    fn out_len(&self) -> usize {
        let (c, h, w) = self.output_dims();
        self.device_geometry().n * c * h * w
    }

    /// The convolution the kernels run: for a transposed one, the one whose adjoint it is.
    fn device_geometry(&self) -> DeviceConvGeometry {
        match *self {
            ConvShape::Conv2d(g) | ConvShape::Transposed { adjoint: g, .. } => g,
        }
    }
}

/// (n, c, h·w) of a BatchNorm's input.
pub type BatchNormDims = (usize, usize, usize);

/// A BatchNorm2d layer's parameters, running statistics and workspace, for
/// [`Backend::conv_batchnorm_leaky_relu_eval`].
pub struct BatchNormRefs<'a, B: Backend> {
    pub ws: &'a mut B::BatchNormWorkspace,
    pub weight: &'a B::Param,
    pub bias: &'a B::Param,
    pub running_mean: &'a mut B::Stat,
    pub running_var: &'a mut B::Stat,
}

/// One LSTM direction's parameters: w_ih, w_hh, b_ih, b_hh.
pub type LstmParams<'a, P> = [&'a P; 4];
/// One LSTM direction's parameters, their gradients to be added into.
pub type LstmParamsMut<'a, P> = [&'a mut P; 4];
/// What the LSTM's forward kept for its backward: input, output, gate activations (the backward
/// may overwrite them) and cell states.
pub type LstmSavedRefs<'a, S> = (&'a S, &'a S, &'a mut S, &'a S);

/// The ops of the network on one kind of memory; see the module doc. Backward ops add into the
/// parameters' gradients; `*_into` ops also add into the input gradient they are given.
pub trait Backend: Sized {
    /// An activation's or gradient's values.
    type Storage: Elements;
    /// A trainable tensor and its gradient.
    type Param: Named;
    /// A BatchNorm running statistic.
    type Stat: Named;
    /// What a layer keeps of its op between passes (device workspaces, saved statistics).
    type ConvWorkspace: Default;
    type BatchNormWorkspace: Default;
    type LinearWorkspace: Default;
    type LstmWorkspace: Default;

    /// The parameter `name` of `shape`, valued `init()` unless the backend takes its values
    /// from elsewhere (a model being uploaded).
    fn param(
        &mut self,
        name: String,
        shape: Vec<usize>,
        init: impl FnOnce() -> Vec<f32>,
    ) -> Result<Self::Param>;
    /// The running statistic `name` of `len` values, each `fill` unless taken from elsewhere.
    fn stat(&mut self, name: String, len: usize, fill: f32) -> Result<Self::Stat>;
    /// Zeroes the gradients of `params`, which are all of the model's.
    fn zero_grads<'p>(
        &mut self,
        params: impl IntoIterator<Item = &'p mut Self::Param>,
    ) -> Result<()>
    where
        Self::Param: 'p;

    /// `len` zeros, for gradients that backward passes add into.
    fn zeros(&mut self, len: usize) -> Result<Self::Storage>;
    fn clamp(&mut self, values: &mut Self::Storage, min: f32, max: f32) -> Result<()>;
    /// `a + b`, in `a`'s storage when nothing else holds it.
    fn add(&mut self, a: Tensor<Self::Storage>, b: &Self::Storage) -> Result<Self::Storage>;

    /// Conv2d or ConvTranspose2d, as `g` says, with bias.
    fn conv_forward(
        &mut self,
        ws: &mut Self::ConvWorkspace,
        x: &Self::Storage,
        weight: &Self::Param,
        bias: &Self::Param,
        g: &ConvShape,
    ) -> Result<Self::Storage>;
    fn conv_backward_into(
        &mut self,
        ws: &mut Self::ConvWorkspace,
        d_x: Option<&mut Self::Storage>,
        weight: &mut Self::Param,
        bias: &mut Self::Param,
        d_out: &Self::Storage,
        x: &Self::Storage,
        g: &ConvShape,
    ) -> Result<()>;

    /// The convolution's backward with a fresh input gradient, returned: the same values as
    /// [`Backend::conv_backward_into`] into zeros (this default), which a backend may write
    /// without the zeros (the CPU does).
    fn conv_backward(
        &mut self,
        ws: &mut Self::ConvWorkspace,
        weight: &mut Self::Param,
        bias: &mut Self::Param,
        d_out: &Self::Storage,
        x: &Self::Storage,
        g: &ConvShape,
    ) -> Result<Self::Storage> {
        let mut d_x = self.zeros(x.len())?;
        self.conv_backward_into(ws, Some(&mut d_x), weight, bias, d_out, x, g)?;
        Ok(d_x)
    }

    /// Evaluation mode: `lrelu(bn(conv(x)))` of a convolution and the BatchNorm2d after it,
    /// added to `residual` when given: the same values as [`Backend::conv_forward`],
    /// [`Backend::batchnorm_leaky_relu_forward`] and [`Backend::add`] one after the other (this
    /// default), which a backend may compute in fewer passes (the CPU stores the convolution's
    /// sums finished).
    fn conv_batchnorm_leaky_relu_eval(
        &mut self,
        conv_ws: &mut Self::ConvWorkspace,
        x: &Self::Storage,
        weight: &Self::Param,
        bias: &Self::Param,
        g: &ConvShape,
        bn: BatchNormRefs<'_, Self>,
        slope: f32,
        residual: Option<Tensor<Self::Storage>>,
    ) -> Result<Self::Storage> {
        let y = self.conv_forward(conv_ws, x, weight, bias, g)?;
        let (c, h, w) = g.output_dims();
        let y = self.batchnorm_leaky_relu_forward(
            bn.ws,
            &y,
            bn.weight,
            bn.bias,
            bn.running_mean,
            bn.running_var,
            (g.device_geometry().n, c, h * w),
            slope,
            Mode::Eval,
        )?;
        match residual {
            Some(residual) => self.add(residual, &y),
            None => Ok(y),
        }
    }

    /// BatchNorm2d followed by leaky ReLU of `slope`, in one pass. Training mode normalises by
    /// the batch statistics (kept in `ws` for the backward) and moves the running ones.
    fn batchnorm_leaky_relu_forward(
        &mut self,
        ws: &mut Self::BatchNormWorkspace,
        x: &Self::Storage,
        weight: &Self::Param,
        bias: &Self::Param,
        running_mean: &mut Self::Stat,
        running_var: &mut Self::Stat,
        dims: BatchNormDims,
        slope: f32,
        mode: Mode,
    ) -> Result<Self::Storage>;
    /// Whether [`Backend::batchnorm_leaky_relu_backward`] needs the forward's input `x` beside
    /// its output, for a layer of this `weight` and `bias` (asked after the forward, before the
    /// step moves them); when not, the layer does not keep `x`. Yes by default.
    fn batchnorm_backward_needs_input(
        &self,
        _weight: &Self::Param,
        _bias: &Self::Param,
        _slope: f32,
    ) -> bool {
        true
    }
    /// The input gradient of a training-mode [`Backend::batchnorm_leaky_relu_forward`] of `x`
    /// that gave `y`; `x` is there where [`Backend::batchnorm_backward_needs_input`] said so.
    fn batchnorm_leaky_relu_backward(
        &mut self,
        ws: &mut Self::BatchNormWorkspace,
        weight: &mut Self::Param,
        bias: &mut Self::Param,
        d_out: &Self::Storage,
        y: &Self::Storage,
        x: Option<&Self::Storage>,
        dims: BatchNormDims,
        slope: f32,
    ) -> Result<Self::Storage>;

    fn sigmoid_forward(&mut self, x: &Self::Storage) -> Result<Self::Storage>;
    /// From the sigmoid's output `y`.
    fn sigmoid_backward(
        &mut self,
        d_out: &Self::Storage,
        y: &Self::Storage,
    ) -> Result<Self::Storage>;

    /// `b` after `a` on the channel axis: (n, c_a, hw) and (n, c_b, hw) → (n, c_a + c_b, hw).
    fn concat_channels_forward(
        &mut self,
        a: &Self::Storage,
        b: &Self::Storage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<Self::Storage>;
    /// The gradients of `a` and `b` from the concatenation's.
    fn concat_channels_backward(
        &mut self,
        d_out: &Self::Storage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<(Self::Storage, Self::Storage)>;

    fn linear_forward(
        &mut self,
        x: &Self::Storage,
        weight: &Self::Param,
        bias: &Self::Param,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self::Storage>;
    fn linear_backward(
        &mut self,
        ws: &mut Self::LinearWorkspace,
        weight: &mut Self::Param,
        bias: &mut Self::Param,
        d_out: &Self::Storage,
        x: &Self::Storage,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self::Storage>;

    /// The bidirectional LSTM: (output, gate activations, cell states).
    fn lstm_forward(
        &mut self,
        ws: &mut Self::LstmWorkspace,
        x: &Self::Storage,
        weights: [LstmParams<'_, Self::Param>; 2],
        shape: LstmShape,
    ) -> Result<(Self::Storage, Self::Storage, Self::Storage)>;
    /// `saved` is what the forward returned beside the output: its input, its output, the gate
    /// activations (which the backward may overwrite: the CPU's keeps its gate gradients
    /// there) and the cell states.
    fn lstm_backward(
        &mut self,
        ws: &mut Self::LstmWorkspace,
        params: [LstmParamsMut<'_, Self::Param>; 2],
        d_out: &Self::Storage,
        saved: LstmSavedRefs<'_, Self::Storage>,
        shape: LstmShape,
    ) -> Result<Self::Storage>;

    /// Mean binary cross-entropy of `probs` against `targets`, on the host, and its gradient.
    fn bce(
        &mut self,
        probs: &Self::Storage,
        targets: &Self::Storage,
    ) -> Result<(f32, Self::Storage)>;
}

// ---- the CPU ---------------------------------------------------------------------------------

/// The fast CPU functions of `crate::ops` on pooled host [`Storage`]; see the module doc.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

/// A CPU BatchNorm's batch statistics, from its training-mode forward for its backward.
#[derive(Debug, Default)]
pub struct SavedStatistics {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

impl Backend for Cpu {
    type Storage = Storage;
    type Param = Param;
    type Stat = Buffer;
    type ConvWorkspace = ();
    type BatchNormWorkspace = SavedStatistics;
    type LinearWorkspace = ();
    type LstmWorkspace = ();

    fn param(
        &mut self,
        name: String,
        shape: Vec<usize>,
        init: impl FnOnce() -> Vec<f32>,
    ) -> Result<Param> {
        Ok(Param::new(name, shape, init()))
    }

    fn stat(&mut self, name: String, len: usize, fill: f32) -> Result<Buffer> {
        Ok(Buffer {
            name,
            shape: vec![len],
            value: vec![fill; len],
        })
    }

    fn zero_grads<'p>(&mut self, params: impl IntoIterator<Item = &'p mut Param>) -> Result<()> {
        for p in params {
            p.grad.fill(0.0);
        }
        Ok(())
    }

    fn zeros(&mut self, len: usize) -> Result<Storage> {
        Ok(Storage::zeroed(len))
    }

    fn clamp(&mut self, values: &mut Storage, min: f32, max: f32) -> Result<()> {
        clamp_in_place(values, min, max);
        Ok(())
    }

    fn add(&mut self, a: Tensor, b: &Storage) -> Result<Storage> {
        let mut sum = a.into_storage();
        // In parallel blocks: one thread leaves the other core idle through a memory-bound pass.
        const BLOCK: usize = 1 << 14;
        sum.par_chunks_mut(BLOCK)
            .zip(b.par_chunks(BLOCK))
            .for_each(|(s, v)| s.iter_mut().zip(v).for_each(|(s, &v)| *s += v));
        Ok(sum)
    }

    fn conv_forward(
        &mut self,
        _: &mut (),
        x: &Storage,
        weight: &Param,
        bias: &Param,
        g: &ConvShape,
    ) -> Result<Storage> {
        let mut out = Storage::for_overwrite(g.out_len());
        let (w, b) = (&weight.value, Some(&bias.value[..]));
        match *g {
            ConvShape::Conv2d(g) => conv2d_forward(
                &mut out, x, w, b, g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride, g.pad,
            ),
            // The transposed convolution's input is its adjoint's output, and so on.
            ConvShape::Transposed {
                adjoint: a,
                output_padding: (pad_h, pad_w),
            } => conv_transpose2d_forward(
                &mut out, x, w, b, a.n, a.c_out, a.h_out, a.w_out, a.c_in, a.k, a.stride, a.pad,
                pad_h, pad_w,
            ),
        }
        Ok(out)
    }

    fn conv_batchnorm_leaky_relu_eval(
        &mut self,
        _: &mut (),
        x: &Storage,
        weight: &Param,
        bias: &Param,
        g: &ConvShape,
        bn: BatchNormRefs<'_, Self>,
        slope: f32,
        residual: Option<Tensor>,
    ) -> Result<Storage> {
        let finish = ConvFinish::batchnorm_leaky_relu(
            &bn.weight.value,
            &bn.bias.value,
            &bn.running_mean.value,
            &bn.running_var.value,
            BATCHNORM_EPS,
            slope,
            residual.is_some(),
        );
        let mut out = match residual {
            Some(residual) => residual.into_storage(),
            None => Storage::for_overwrite(g.out_len()),
        };
        let (w, b) = (&weight.value, Some(&bias.value[..]));
        match *g {
            ConvShape::Conv2d(g) => conv2d_forward_finished(
                &mut out, x, w, b, &finish, g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride, g.pad,
            ),
            ConvShape::Transposed {
                adjoint: a,
                output_padding: (pad_h, pad_w),
            } => conv_transpose2d_forward_finished(
                &mut out, x, w, b, &finish, a.n, a.c_out, a.h_out, a.w_out, a.c_in, a.k, a.stride,
                a.pad, pad_h, pad_w,
            ),
        }
        Ok(out)
    }

    fn conv_backward_into(
        &mut self,
        _: &mut (),
        d_x: Option<&mut Storage>,
        weight: &mut Param,
        bias: &mut Param,
        d_out: &Storage,
        x: &Storage,
        g: &ConvShape,
    ) -> Result<()> {
        let d_x = d_x.map(|d| &mut d[..]);
        let (w, d_w, d_b) = (&weight.value, &mut weight.grad, Some(&mut bias.grad[..]));
        match *g {
            ConvShape::Conv2d(g) => conv2d_backward(
                d_x, d_w, d_b, d_out, x, w, g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride, g.pad,
            ),
            ConvShape::Transposed {
                adjoint: a,
                output_padding: (pad_h, pad_w),
            } => conv_transpose2d_backward(
                d_x, d_w, d_b, d_out, x, w, a.n, a.c_out, a.h_out, a.w_out, a.c_in, a.k, a.stride,
                a.pad, pad_h, pad_w,
            ),
        }
        Ok(())
    }

    fn conv_backward(
        &mut self,
        _: &mut (),
        weight: &mut Param,
        bias: &mut Param,
        d_out: &Storage,
        x: &Storage,
        g: &ConvShape,
    ) -> Result<Storage> {
        // Every value is written: no zeros first.
        let mut d_x = Storage::for_overwrite(x.len());
        let (w, d_w, d_b) = (&weight.value, &mut weight.grad, Some(&mut bias.grad[..]));
        match *g {
            ConvShape::Conv2d(g) => conv2d_backward_fresh(
                &mut d_x, d_w, d_b, d_out, x, w, g.n, g.c_in, g.h, g.w, g.c_out, g.k, g.stride,
                g.pad,
            ),
            ConvShape::Transposed {
                adjoint: a,
                output_padding: (pad_h, pad_w),
            } => conv_transpose2d_backward_fresh(
                &mut d_x, d_w, d_b, d_out, x, w, a.n, a.c_out, a.h_out, a.w_out, a.c_in, a.k,
                a.stride, a.pad, pad_h, pad_w,
            ),
        }
        Ok(d_x)
    }

    fn batchnorm_leaky_relu_forward(
        &mut self,
        ws: &mut SavedStatistics,
        x: &Storage,
        weight: &Param,
        bias: &Param,
        running_mean: &mut Buffer,
        running_var: &mut Buffer,
        (n, c, hw): BatchNormDims,
        slope: f32,
        mode: Mode,
    ) -> Result<Storage> {
        let mut out = Storage::for_overwrite(x.len());
        match mode {
            Mode::Train => {
                ws.mean.resize(c, 0.0);
                ws.rstd.resize(c, 0.0);
                batchnorm_leaky_relu_forward_train(
                    &mut out,
                    &mut ws.mean,
                    &mut ws.rstd,
                    &mut running_mean.value,
                    &mut running_var.value,
                    x,
                    &weight.value,
                    &bias.value,
                    n,
                    c,
                    hw,
                    BATCHNORM_MOMENTUM,
                    BATCHNORM_EPS,
                    slope,
                );
            }
            Mode::Eval => batchnorm_leaky_relu_forward_eval(
                &mut out,
                x,
                &weight.value,
                &bias.value,
                &running_mean.value,
                &running_var.value,
                n,
                c,
                hw,
                BATCHNORM_EPS,
                slope,
            ),
        }
        Ok(out)
    }

    /// Only where γ is near zero: elsewhere the backward recovers the input from the output.
    fn batchnorm_backward_needs_input(&self, weight: &Param, bias: &Param, slope: f32) -> bool {
        !batchnorm_backward_from_output_applies(&weight.value, &bias.value, slope)
    }

    fn batchnorm_leaky_relu_backward(
        &mut self,
        ws: &mut SavedStatistics,
        weight: &mut Param,
        bias: &mut Param,
        d_out: &Storage,
        y: &Storage,
        x: Option<&Storage>,
        (n, c, hw): BatchNormDims,
        slope: f32,
    ) -> Result<Storage> {
        let mut d_x = Storage::for_overwrite(y.len());
        match x {
            Some(x) => batchnorm_leaky_relu_backward_overwrite(
                &mut d_x,
                &mut weight.grad,
                &mut bias.grad,
                d_out,
                y,
                x,
                &weight.value,
                &ws.mean,
                &ws.rstd,
                n,
                c,
                hw,
                slope,
            ),
            None if batchnorm_backward_from_output_applies(&weight.value, &bias.value, slope) => {
                batchnorm_leaky_relu_backward_from_output(
                    &mut d_x,
                    &mut weight.grad,
                    &mut bias.grad,
                    d_out,
                    y,
                    &weight.value,
                    &bias.value,
                    &ws.rstd,
                    n,
                    c,
                    hw,
                    slope,
                )
            }
            None => {
                return Err(invalid(
                    "a BatchNorm backward without its input, which a weight near zero needs".into(),
                ))
            }
        }
        Ok(d_x)
    }

    fn sigmoid_forward(&mut self, x: &Storage) -> Result<Storage> {
        let mut out = Storage::for_overwrite(x.len());
        sigmoid_forward(&mut out, x);
        Ok(out)
    }

    fn sigmoid_backward(&mut self, d_out: &Storage, y: &Storage) -> Result<Storage> {
        let mut d_x = Storage::zeroed(y.len());
        sigmoid_backward(&mut d_x, d_out, y);
        Ok(d_x)
    }

    fn concat_channels_forward(
        &mut self,
        a: &Storage,
        b: &Storage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<Storage> {
        let mut out = Storage::for_overwrite(n * (c_a + c_b) * hw);
        concat_channels_forward(&mut out, a, b, n, c_a, c_b, hw);
        Ok(out)
    }

    fn concat_channels_backward(
        &mut self,
        d_out: &Storage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<(Storage, Storage)> {
        let mut d_a = Storage::zeroed(n * c_a * hw);
        let mut d_b = Storage::zeroed(n * c_b * hw);
        concat_channels_backward(Some(&mut d_a), Some(&mut d_b), d_out, n, c_a, c_b, hw);
        Ok((d_a, d_b))
    }

    fn linear_forward(
        &mut self,
        x: &Storage,
        weight: &Param,
        bias: &Param,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Storage> {
        let mut out = Storage::for_overwrite(rows * out_features);
        linear_forward(
            &mut out,
            x,
            &weight.value,
            Some(&bias.value),
            rows,
            in_features,
            out_features,
        );
        Ok(out)
    }

    fn linear_backward(
        &mut self,
        _: &mut (),
        weight: &mut Param,
        bias: &mut Param,
        d_out: &Storage,
        x: &Storage,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<Storage> {
        let mut d_x = Storage::zeroed(x.len());
        linear_backward(
            Some(&mut d_x),
            &mut weight.grad,
            Some(&mut bias.grad),
            d_out,
            x,
            &weight.value,
            rows,
            in_features,
            out_features,
        );
        Ok(d_x)
    }

    fn lstm_forward(
        &mut self,
        _: &mut (),
        x: &Storage,
        weights: [LstmParams<'_, Param>; 2],
        s: LstmShape,
    ) -> Result<(Storage, Storage, Storage)> {
        let rows = s.batch * s.frames;
        let hid = s.hidden_size;
        let mut out = Storage::for_overwrite(rows * 2 * hid);
        let mut gates = Storage::for_overwrite(2 * rows * 4 * hid);
        let mut cells = Storage::for_overwrite(2 * rows * hid);
        let weights = weights.map(|[w_ih, w_hh, b_ih, b_hh]| LstmWeights {
            w_ih: &w_ih.value,
            w_hh: &w_hh.value,
            b_ih: &b_ih.value,
            b_hh: &b_hh.value,
        });
        lstm_forward(
            &mut out,
            &mut gates,
            &mut cells,
            x,
            &weights,
            s.batch,
            s.frames,
            s.input_size,
            hid,
        );
        Ok((out, gates, cells))
    }

    fn lstm_backward(
        &mut self,
        _: &mut (),
        params: [LstmParamsMut<'_, Param>; 2],
        d_out: &Storage,
        (x, out, gates, cells): LstmSavedRefs<'_, Storage>,
        s: LstmShape,
    ) -> Result<Storage> {
        let mut d_x = Storage::zeroed(x.len());
        let [[a, b, c, d], [e, f, g, h]] = params;
        let weights = [
            LstmWeights {
                w_ih: &a.value,
                w_hh: &b.value,
                b_ih: &c.value,
                b_hh: &d.value,
            },
            LstmWeights {
                w_ih: &e.value,
                w_hh: &f.value,
                b_ih: &g.value,
                b_hh: &h.value,
            },
        ];
        let mut grads = [
            LstmGradients {
                w_ih: &mut a.grad,
                w_hh: &mut b.grad,
                b_ih: &mut c.grad,
                b_hh: &mut d.grad,
            },
            LstmGradients {
                w_ih: &mut e.grad,
                w_hh: &mut f.grad,
                b_ih: &mut g.grad,
                b_hh: &mut h.grad,
            },
        ];
        lstm_backward(
            Some(&mut d_x),
            &mut grads,
            d_out,
            x,
            out,
            gates,
            cells,
            &weights,
            s.batch,
            s.frames,
            s.input_size,
            s.hidden_size,
        );
        Ok(d_x)
    }

    fn bce(&mut self, probs: &Storage, targets: &Storage) -> Result<(f32, Storage)> {
        let loss = bce_forward(probs, targets);
        let mut d_probs = Storage::zeroed(probs.len());
        bce_backward(&mut d_probs, probs, targets, 1.0);
        Ok((loss, d_probs))
    }
}

// ---- a kernel device -------------------------------------------------------------------------

/// Free device buffers by length, and how many were ever allocated.
#[derive(Default)]
struct BufferPool {
    free: Mutex<HashMap<usize, Vec<DeviceBuffer<f32>>>>,
    /// Bytes held in `free`.
    pooled_bytes: AtomicUsize,
    allocations: AtomicUsize,
}

/// At most this many bytes wait in a device pool, as on the host (`model::storage`): a model
/// that sees many shapes (whole recordings of every length) must not hoard device memory.
const DEVICE_POOL_CAP_BYTES: usize = 16 << 30;

/// A float32 device buffer that returns to its backend's pool when dropped: the device
/// counterpart of [`Storage`].
pub struct DeviceStorage {
    buffer: Option<DeviceBuffer<f32>>,
    pool: Arc<BufferPool>,
}

impl std::fmt::Debug for DeviceStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceStorage({} values)", self.len())
    }
}

impl Elements for DeviceStorage {
    fn len(&self) -> usize {
        self.buffer.as_ref().map_or(0, DeviceBuffer::len)
    }
}

impl Deref for DeviceStorage {
    type Target = DeviceBuffer<f32>;
    fn deref(&self) -> &DeviceBuffer<f32> {
        self.buffer.as_ref().expect("a live device storage")
    }
}

impl DerefMut for DeviceStorage {
    fn deref_mut(&mut self) -> &mut DeviceBuffer<f32> {
        self.buffer.as_mut().expect("a live device storage")
    }
}

impl Drop for DeviceStorage {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            let bytes = buffer.len() * 4;
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            // Under the lock, so that the count and the map agree; over the cap the buffer is
            // freed here instead.
            if self.pool.pooled_bytes.load(Ordering::Relaxed) + bytes <= DEVICE_POOL_CAP_BYTES {
                self.pool.pooled_bytes.fetch_add(bytes, Ordering::Relaxed);
                free.entry(buffer.len()).or_default().push(buffer);
            }
        }
    }
}

/// A parameter on a kernel device: its place in the parameter and gradient arenas.
#[derive(Debug)]
pub struct DeviceParam {
    pub name: String,
    pub shape: Vec<usize>,
    index: usize,
}

impl Named for DeviceParam {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A running statistic on a kernel device: its place in the statistics arena.
#[derive(Debug)]
pub struct DeviceStat {
    pub name: String,
    index: usize,
}

impl Named for DeviceStat {
    fn name(&self) -> &str {
        &self.name
    }
}

/// A device BatchNorm's workspace and batch statistics, for one input shape.
pub struct DeviceBatchNorm {
    ws: BatchNormWorkspace,
    mean: DeviceBuffer<f32>,
    rstd: DeviceBuffer<f32>,
}

/// The network's ops as kernel launches on an `emu` or `cuda` device; see the module doc.
pub struct Kernels<'d> {
    device: &'d KernelDevice,
    /// Parameters, their gradients and the running statistics, in `state_entries` order.
    params: DeviceArena,
    grads: DeviceArena,
    stats: DeviceArena,
    /// (name, shape) of each parameter and the name of each statistic, to hand out in order.
    param_names: Vec<(String, Vec<usize>)>,
    stat_names: Vec<String>,
    handed_out: (usize, usize),
    pool: Arc<BufferPool>,
    /// Workspaces allocated so far (the pool counts the activations).
    workspace_allocations: usize,
    /// The loss and its f64 partial sums, by the partials' length.
    loss: Option<(usize, LossBuffers)>,
}

/// The mean BCE loss (one value) and its f64 partial sums.
type LossBuffers = (DeviceBuffer<f32>, DeviceBuffer<f64>);

/// The workspace in `slot` if it was made for `key`, else a new one from `make`, counted in
/// `made`: each op keeps its workspace for the next pass of the same shape.
fn reuse_or_make<'w, K: PartialEq, W>(
    slot: &'w mut Option<(K, W)>,
    key: K,
    made: &mut usize,
    make: impl FnOnce() -> Result<W>,
) -> Result<&'w mut W> {
    let ws = match slot.take() {
        Some((old, ws)) if old == key => ws,
        _ => {
            *made += 1;
            make()?
        }
    };
    Ok(&mut slot.insert((key, ws)).1)
}

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "network on a kernel device",
        message,
    }
}

impl<'d> Kernels<'d> {
    /// A backend holding `model`'s parameters (zero gradients) and running statistics, each
    /// set in one arena; the device model built over it takes them in order.
    fn holding(device: &'d KernelDevice, model: &mut Transcriber) -> Result<Kernels<'d>> {
        let (mut param_names, mut values) = (Vec::new(), Vec::new());
        let (mut stat_names, mut stats) = (Vec::new(), Vec::new());
        for entry in model.state_entries() {
            match entry {
                StateEntry::Param(p) => {
                    param_names.push((p.name.clone(), p.shape.clone()));
                    values.push(p.value.clone());
                }
                StateEntry::Buffer(b) => {
                    stat_names.push(b.name.clone());
                    stats.push(b.value.clone());
                }
                StateEntry::Count { .. } => {}
            }
        }
        let lens: Vec<usize> = values.iter().map(Vec::len).collect();
        Ok(Kernels {
            device,
            params: DeviceArena::upload(device, &slices(&values))?,
            grads: DeviceArena::zeroed(device, &lens)?,
            stats: DeviceArena::upload(device, &slices(&stats))?,
            param_names,
            stat_names,
            handed_out: (0, 0),
            pool: Arc::default(),
            workspace_allocations: 0,
            loss: None,
        })
    }

    pub fn device(&self) -> &'d KernelDevice {
        self.device
    }

    /// The parameter and gradient arenas, for the optimizer's launches over all of them.
    pub fn params_and_grads(&mut self) -> (&mut DeviceArena, &mut DeviceArena) {
        (&mut self.params, &mut self.grads)
    }

    /// Device allocations made so far: a pass of an already seen shape makes none.
    pub fn allocations(&self) -> usize {
        self.pool.allocations.load(Ordering::Relaxed) + self.workspace_allocations
    }

    /// A pooled buffer of `len` values of unspecified content.
    fn take(&mut self, len: usize) -> Result<DeviceStorage> {
        let reused = {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            let reused = free.get_mut(&len).and_then(Vec::pop);
            if reused.is_some() {
                self.pool.pooled_bytes.fetch_sub(len * 4, Ordering::Relaxed);
            }
            reused
        };
        let buffer = match reused {
            Some(buffer) => buffer,
            None => {
                self.pool.allocations.fetch_add(1, Ordering::Relaxed);
                self.device.alloc(len)?
            }
        };
        Ok(DeviceStorage {
            buffer: Some(buffer),
            pool: Arc::clone(&self.pool),
        })
    }

    /// Host values into a pooled buffer.
    pub fn upload(&mut self, values: &[f32]) -> Result<DeviceStorage> {
        let mut storage = self.take(values.len())?;
        self.device.copy_to_device(values, &mut storage)?;
        Ok(storage)
    }

    pub fn download(&self, storage: &DeviceStorage) -> Result<Vec<f32>> {
        self.device.download(storage)
    }

    /// Parameters, gradients and running statistics, each downloaded in one transfer.
    pub fn download_state(&self) -> Result<[Vec<Vec<f32>>; 3]> {
        Ok([
            self.params.download(self.device)?,
            self.grads.download(self.device)?,
            self.stats.download(self.device)?,
        ])
    }

    fn conv_workspace<'w>(
        &mut self,
        ws: &'w mut Option<(DeviceConvGeometry, ConvWorkspace)>,
        g: DeviceConvGeometry,
    ) -> Result<&'w mut ConvWorkspace> {
        reuse_or_make(ws, g, &mut self.workspace_allocations, || {
            ConvWorkspace::new(self.device, &g)
        })
    }

    fn batchnorm_workspace<'w>(
        &mut self,
        ws: &'w mut Option<(BatchNormDims, DeviceBatchNorm)>,
        dims: BatchNormDims,
    ) -> Result<&'w mut DeviceBatchNorm> {
        let (n, c, hw) = dims;
        reuse_or_make(ws, dims, &mut self.workspace_allocations, || {
            Ok(DeviceBatchNorm {
                ws: BatchNormWorkspace::new(self.device, n, c, hw)?,
                mean: self.device.alloc(c)?,
                rstd: self.device.alloc(c)?,
            })
        })
    }
}

/// `conv2d_forward_launch` or `conv_transpose2d_forward_launch`: one signature.
type ConvForwardLaunch = fn(
    &KernelDevice,
    &mut ConvWorkspace,
    &mut DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    Option<&DeviceBuffer<f32>>,
    &DeviceConvGeometry,
) -> Result<()>;

/// `conv2d_backward_launch` or `conv_transpose2d_backward_launch`: one signature.
type ConvBackwardLaunch = fn(
    &KernelDevice,
    &mut ConvWorkspace,
    Option<&mut DeviceBuffer<f32>>,
    &mut DeviceBuffer<f32>,
    Option<&mut DeviceBuffer<f32>>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceConvGeometry,
) -> Result<()>;

pub(super) fn slices(v: &[Vec<f32>]) -> Vec<&[f32]> {
    v.iter().map(Vec::as_slice).collect()
}

impl Backend for Kernels<'_> {
    type Storage = DeviceStorage;
    type Param = DeviceParam;
    type Stat = DeviceStat;
    type ConvWorkspace = Option<(DeviceConvGeometry, ConvWorkspace)>;
    type BatchNormWorkspace = Option<(BatchNormDims, DeviceBatchNorm)>;
    type LinearWorkspace = Option<(usize, DeviceBuffer<f32>)>;
    type LstmWorkspace = Option<(LstmShape, LstmWorkspace)>;

    /// The next parameter of the uploaded model, which must be `name` of `shape`.
    fn param(
        &mut self,
        name: String,
        shape: Vec<usize>,
        _: impl FnOnce() -> Vec<f32>,
    ) -> Result<DeviceParam> {
        let index = self.handed_out.0;
        match self.param_names.get(index) {
            Some((held, held_shape)) if *held == name && *held_shape == shape => {
                self.handed_out.0 += 1;
                Ok(DeviceParam { name, shape, index })
            }
            held => Err(invalid(format!(
                "parameter {index} is {held:?}, the network asks for {name} {shape:?}"
            ))),
        }
    }

    fn stat(&mut self, name: String, _: usize, _: f32) -> Result<DeviceStat> {
        let index = self.handed_out.1;
        match self.stat_names.get(index) {
            Some(held) if *held == name => {
                self.handed_out.1 += 1;
                Ok(DeviceStat { name, index })
            }
            held => Err(invalid(format!(
                "statistic {index} is {held:?}, the network asks for {name}"
            ))),
        }
    }

    /// One launch over the whole gradient arena.
    fn zero_grads<'p>(&mut self, _: impl IntoIterator<Item = &'p mut DeviceParam>) -> Result<()> {
        fill_launch(self.device, self.grads.whole_mut(), 0.0)
    }

    fn zeros(&mut self, len: usize) -> Result<DeviceStorage> {
        let mut storage = self.take(len)?;
        fill_launch(self.device, &mut storage, 0.0)?;
        Ok(storage)
    }

    fn clamp(&mut self, values: &mut DeviceStorage, min: f32, max: f32) -> Result<()> {
        clamp_in_place_launch(self.device, values, min, max)
    }

    fn add(&mut self, a: Tensor<DeviceStorage>, b: &DeviceStorage) -> Result<DeviceStorage> {
        match a.try_into_storage() {
            Ok(mut sum) => {
                add_in_place_launch(self.device, &mut sum, b)?;
                Ok(sum)
            }
            Err(shared) => {
                let mut sum = self.take(b.len())?;
                add_forward_launch(self.device, &mut sum, shared.storage(), b)?;
                Ok(sum)
            }
        }
    }

    fn conv_forward(
        &mut self,
        ws: &mut Self::ConvWorkspace,
        x: &DeviceStorage,
        weight: &DeviceParam,
        bias: &DeviceParam,
        g: &ConvShape,
    ) -> Result<DeviceStorage> {
        let launch: ConvForwardLaunch = match g {
            ConvShape::Conv2d(_) => conv2d_forward_launch,
            ConvShape::Transposed { .. } => conv_transpose2d_forward_launch,
        };
        let geometry = g.device_geometry();
        let mut out = self.take(g.out_len())?;
        let ws = self.conv_workspace(ws, geometry)?;
        let (w, b) = (self.params.get(weight.index)?, self.params.get(bias.index)?);
        launch(self.device, ws, &mut out, x, w, Some(b), &geometry)?;
        Ok(out)
    }

    fn conv_backward_into(
        &mut self,
        ws: &mut Self::ConvWorkspace,
        d_x: Option<&mut DeviceStorage>,
        weight: &mut DeviceParam,
        bias: &mut DeviceParam,
        d_out: &DeviceStorage,
        x: &DeviceStorage,
        g: &ConvShape,
    ) -> Result<()> {
        let launch: ConvBackwardLaunch = match g {
            ConvShape::Conv2d(_) => conv2d_backward_launch,
            ConvShape::Transposed { .. } => conv_transpose2d_backward_launch,
        };
        let geometry = g.device_geometry();
        let ws = self.conv_workspace(ws, geometry)?;
        let [d_weight, d_bias] = self.grads.get_disjoint_mut([weight.index, bias.index])?;
        launch(
            self.device,
            ws,
            d_x.map(|d| &mut **d),
            d_weight,
            Some(d_bias),
            d_out,
            x,
            self.params.get(weight.index)?,
            &geometry,
        )
    }

    fn batchnorm_leaky_relu_forward(
        &mut self,
        ws: &mut Self::BatchNormWorkspace,
        x: &DeviceStorage,
        weight: &DeviceParam,
        bias: &DeviceParam,
        running_mean: &mut DeviceStat,
        running_var: &mut DeviceStat,
        dims: BatchNormDims,
        slope: f32,
        mode: Mode,
    ) -> Result<DeviceStorage> {
        let mut out = self.take(x.len())?;
        let bn = self.batchnorm_workspace(ws, dims)?;
        let (w, b) = (self.params.get(weight.index)?, self.params.get(bias.index)?);
        match mode {
            Mode::Train => {
                let [mean, var] = self
                    .stats
                    .get_disjoint_mut([running_mean.index, running_var.index])?;
                batchnorm_forward_train_launch(
                    self.device,
                    &mut bn.ws,
                    &mut out,
                    &mut bn.mean,
                    &mut bn.rstd,
                    mean,
                    var,
                    x,
                    w,
                    b,
                    BATCHNORM_MOMENTUM,
                    BATCHNORM_EPS,
                    Some(slope),
                )?
            }
            Mode::Eval => batchnorm_forward_eval_launch(
                self.device,
                &mut bn.ws,
                &mut out,
                x,
                w,
                b,
                self.stats.get(running_mean.index)?,
                self.stats.get(running_var.index)?,
                BATCHNORM_EPS,
                Some(slope),
            )?,
        }
        Ok(out)
    }

    /// The kernels recompute the activation's derivative from `x`, so `y` is not read.
    fn batchnorm_leaky_relu_backward(
        &mut self,
        ws: &mut Self::BatchNormWorkspace,
        weight: &mut DeviceParam,
        bias: &mut DeviceParam,
        d_out: &DeviceStorage,
        _y: &DeviceStorage,
        x: Option<&DeviceStorage>,
        dims: BatchNormDims,
        slope: f32,
    ) -> Result<DeviceStorage> {
        let x = x.ok_or_else(|| invalid("a BatchNorm backward without its input".into()))?;
        let mut d_x = self.zeros(x.len())?;
        let bn = ws
            .as_mut()
            .filter(|(made_for, _)| *made_for == dims)
            .map(|(_, bn)| bn)
            .ok_or_else(|| invalid("a BatchNorm backward without its forward".into()))?;
        let [d_weight, d_bias] = self.grads.get_disjoint_mut([weight.index, bias.index])?;
        batchnorm_backward_launch(
            self.device,
            &mut bn.ws,
            Some(&mut d_x),
            d_weight,
            d_bias,
            d_out,
            x,
            self.params.get(weight.index)?,
            &bn.mean,
            &bn.rstd,
            Some(slope),
        )?;
        Ok(d_x)
    }

    fn sigmoid_forward(&mut self, x: &DeviceStorage) -> Result<DeviceStorage> {
        let mut out = self.take(x.len())?;
        sigmoid_forward_launch(self.device, &mut out, x)?;
        Ok(out)
    }

    fn sigmoid_backward(
        &mut self,
        d_out: &DeviceStorage,
        y: &DeviceStorage,
    ) -> Result<DeviceStorage> {
        let mut d_x = self.zeros(y.len())?;
        sigmoid_backward_launch(self.device, &mut d_x, d_out, y)?;
        Ok(d_x)
    }

    fn concat_channels_forward(
        &mut self,
        a: &DeviceStorage,
        b: &DeviceStorage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<DeviceStorage> {
        let mut out = self.take(n * (c_a + c_b) * hw)?;
        concat_channels_forward_launch(self.device, &mut out, a, b, n, c_a, c_b, hw)?;
        Ok(out)
    }

    fn concat_channels_backward(
        &mut self,
        d_out: &DeviceStorage,
        n: usize,
        c_a: usize,
        c_b: usize,
        hw: usize,
    ) -> Result<(DeviceStorage, DeviceStorage)> {
        let mut d_a = self.zeros(n * c_a * hw)?;
        let mut d_b = self.zeros(n * c_b * hw)?;
        concat_channels_backward_launch(
            self.device,
            Some(&mut d_a),
            Some(&mut d_b),
            d_out,
            n,
            c_a,
            c_b,
            hw,
        )?;
        Ok((d_a, d_b))
    }

    fn linear_forward(
        &mut self,
        x: &DeviceStorage,
        weight: &DeviceParam,
        bias: &DeviceParam,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<DeviceStorage> {
        let mut out = self.take(rows * out_features)?;
        linear_forward_launch(
            self.device,
            &mut out,
            x,
            self.params.get(weight.index)?,
            Some(self.params.get(bias.index)?),
            rows,
            in_features,
            out_features,
        )?;
        Ok(out)
    }

    fn linear_backward(
        &mut self,
        ws: &mut Self::LinearWorkspace,
        weight: &mut DeviceParam,
        bias: &mut DeviceParam,
        d_out: &DeviceStorage,
        x: &DeviceStorage,
        rows: usize,
        in_features: usize,
        out_features: usize,
    ) -> Result<DeviceStorage> {
        let mut d_x = self.zeros(x.len())?;
        let scratch_len = linear_backward_scratch_len(rows, in_features, out_features);
        let scratch = reuse_or_make(ws, scratch_len, &mut self.workspace_allocations, || {
            self.device.alloc(scratch_len)
        })?;
        let [d_weight, d_bias] = self.grads.get_disjoint_mut([weight.index, bias.index])?;
        linear_backward_launch(
            self.device,
            Some(&mut d_x),
            d_weight,
            Some(d_bias),
            d_out,
            x,
            self.params.get(weight.index)?,
            rows,
            in_features,
            out_features,
            scratch,
        )?;
        Ok(d_x)
    }

    fn lstm_forward(
        &mut self,
        ws: &mut Self::LstmWorkspace,
        x: &DeviceStorage,
        weights: [LstmParams<'_, DeviceParam>; 2],
        s: LstmShape,
    ) -> Result<(DeviceStorage, DeviceStorage, DeviceStorage)> {
        let rows = s.batch * s.frames;
        let hid = s.hidden_size;
        let mut out = self.take(rows * 2 * hid)?;
        let mut gates = self.take(2 * rows * 4 * hid)?;
        let mut cells = self.take(2 * rows * hid)?;
        let ws = reuse_or_make(ws, s, &mut self.workspace_allocations, || {
            LstmWorkspace::new(self.device, s)
        })?;
        let params = &self.params;
        let direction = |[w_ih, w_hh, b_ih, b_hh]: LstmParams<'_, DeviceParam>| {
            Ok::<_, DeviceError>(DeviceLstmWeights {
                w_ih: params.get(w_ih.index)?,
                w_hh: params.get(w_hh.index)?,
                b_ih: params.get(b_ih.index)?,
                b_hh: params.get(b_hh.index)?,
            })
        };
        let [forward, reverse] = weights;
        lstm_forward_launch(
            self.device,
            ws,
            &mut out,
            &mut gates,
            &mut cells,
            x,
            [direction(forward)?, direction(reverse)?],
        )?;
        Ok((out, gates, cells))
    }

    fn lstm_backward(
        &mut self,
        ws: &mut Self::LstmWorkspace,
        params: [LstmParamsMut<'_, DeviceParam>; 2],
        d_out: &DeviceStorage,
        (x, out, gates, cells): LstmSavedRefs<'_, DeviceStorage>,
        s: LstmShape,
    ) -> Result<DeviceStorage> {
        let mut d_x = self.zeros(x.len())?;
        let (_, ws) = ws
            .as_mut()
            .filter(|(old, _)| *old == s)
            .ok_or_else(|| invalid("an LSTM backward without its forward".into()))?;
        let [[a, b, c, d], [e, f, g, h]] = params.map(|p| p.map(|p| p.index));
        let values = &self.params;
        let direction = |[w_ih, w_hh, b_ih, b_hh]: [usize; 4]| {
            Ok::<_, DeviceError>(DeviceLstmWeights {
                w_ih: values.get(w_ih)?,
                w_hh: values.get(w_hh)?,
                b_ih: values.get(b_ih)?,
                b_hh: values.get(b_hh)?,
            })
        };
        let weights = [direction([a, b, c, d])?, direction([e, f, g, h])?];
        let [ga, gb, gc, gd, ge, gf, gg, gh] =
            self.grads.get_disjoint_mut([a, b, c, d, e, f, g, h])?;
        let grads = [
            DeviceLstmGradients {
                w_ih: ga,
                w_hh: gb,
                b_ih: gc,
                b_hh: gd,
            },
            DeviceLstmGradients {
                w_ih: ge,
                w_hh: gf,
                b_ih: gg,
                b_hh: gh,
            },
        ];
        lstm_backward_launch(
            self.device,
            ws,
            Some(&mut d_x),
            grads,
            d_out,
            x,
            out,
            gates,
            cells,
            weights,
        )?;
        Ok(d_x)
    }

    /// The loss is the one value that comes back to the host.
    fn bce(
        &mut self,
        probs: &DeviceStorage,
        targets: &DeviceStorage,
    ) -> Result<(f32, DeviceStorage)> {
        let partials_len = bce_partials_len(probs.len());
        let mut d_probs = self.zeros(probs.len())?;
        let (loss, partials) = reuse_or_make(
            &mut self.loss,
            partials_len,
            &mut self.workspace_allocations,
            || Ok((self.device.alloc(1)?, self.device.alloc(partials_len)?)),
        )?;
        bce_forward_launch(self.device, loss, partials, probs, targets)?;
        bce_backward_launch(self.device, &mut d_probs, probs, targets, 1.0)?;
        Ok((self.device.download(loss)?[0], d_probs))
    }
}

impl<'d> Transcriber<Kernels<'d>> {
    /// `model` on `device`: its parameters, running statistics and BatchNorm counters uploaded
    /// once, the same network built over them.
    pub fn upload(
        device: &'d KernelDevice,
        model: &mut Transcriber,
    ) -> std::result::Result<Self, ModelError> {
        let backend = Kernels::holding(device, model)?;
        let mut on_device = Transcriber::build(backend, 0)?;
        on_device.set_mode(model.mode());
        let counts: Vec<i64> = model
            .state_entries()
            .into_iter()
            .filter_map(|entry| match entry {
                StateEntry::Count { value, .. } => Some(*value),
                _ => None,
            })
            .collect();
        let device_counts = on_device
            .state_entries()
            .into_iter()
            .filter_map(|entry| match entry {
                StateEntry::Count { value, .. } => Some(value),
                _ => None,
            });
        for (count, value) in device_counts.zip(counts) {
            *count = value;
        }
        Ok(on_device)
    }

    /// Writes the parameters, their gradients, the running statistics and the BatchNorm
    /// counters back into `model` (for a checkpoint, validation or a comparison).
    pub fn download_into(
        &mut self,
        model: &mut Transcriber,
    ) -> std::result::Result<(), ModelError> {
        let [values, grads, stats] = self.backend().download_state()?;
        let counts: Vec<i64> = self
            .state_entries()
            .into_iter()
            .filter_map(|entry| match entry {
                StateEntry::Count { value, .. } => Some(*value),
                _ => None,
            })
            .collect();
        let (mut p, mut s, mut c) = (0, 0, 0);
        for entry in model.state_entries() {
            match entry {
                StateEntry::Param(param) => {
                    param.value.clone_from(&values[p]);
                    param.grad.clone_from(&grads[p]);
                    p += 1;
                }
                StateEntry::Buffer(buffer) => {
                    buffer.value.clone_from(&stats[s]);
                    s += 1;
                }
                StateEntry::Count { value, .. } => {
                    *value = counts[c];
                    c += 1;
                }
            }
        }
        Ok(())
    }

    /// spec (batch, frames, 176) on the host → piano roll probabilities (batch, frames, 88) on
    /// the host, in the model's mode; nothing else crosses between the two.
    pub fn forward_host(
        &mut self,
        spec: &[f32],
        shape: &[usize],
    ) -> std::result::Result<Vec<f32>, ModelError> {
        let expected: usize = shape.iter().product();
        if spec.len() != expected {
            return Err(ModelError::InputShape {
                shape: shape.to_vec(),
            });
        }
        let storage = self.backend_mut().upload(spec)?;
        let roll = self.forward(&Tensor::from_storage(shape.to_vec(), storage))?;
        Ok(self.backend().download(roll.storage())?)
    }
}

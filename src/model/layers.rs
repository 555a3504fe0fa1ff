//! The network's layers as structs holding their parameters and gradients (llm.c style), over
//! the ops of a [`Backend`] (the CPU functions of `crate::ops` or their kernel launchers, see
//! [`super::backend`]): `forward` keeps what `backward` needs (in training mode only);
//! `backward_into` takes the output gradient and ADDS the input gradient into a buffer the
//! caller owns (a tensor read by two layers collects both), while adding into the parameter
//! gradients; `backward` is the same into a fresh zeroed buffer.
// The ops take their shapes as arguments, so some calls are long on purpose.
#![allow(clippy::too_many_arguments)]

use crate::device::DeviceError;
use crate::ops::activation::LEAKY_RELU_SLOPE;
use crate::ops::conv2d::DeviceConvGeometry;
use crate::ops::conv_transpose2d::{
    conv_transpose2d_adjoint_geometry, conv_transpose2d_output_padding,
};
use crate::ops::lstm::LstmShape;

use super::backend::{Backend, BatchNormRefs, ConvShape, Cpu, LstmParams, LstmParamsMut};
use super::init::uniform_symmetric;
use super::profile;
use super::tensor::{Mode, StateEntry, Tensor};

const NOT_TRAINED: &str = "backward needs a training-mode forward first";

type Result<T> = std::result::Result<T, DeviceError>;

/// An activation in backend `B`'s storage.
pub type Activation<B> = Tensor<<B as Backend>::Storage>;

/// A weight and a bias drawn from PyTorch's default U(±1/√fan_in).
fn default_weight_and_bias<B: Backend>(
    backend: &mut B,
    name: &str,
    weight_shape: Vec<usize>,
    bias_len: usize,
    fan_in: usize,
    seed: u64,
) -> Result<(B::Param, B::Param)> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let weight_name = format!("{name}.weight");
    let bias_name = format!("{name}.bias");
    let count = weight_shape.iter().product();
    let weight = backend.param(weight_name.clone(), weight_shape, || {
        uniform_symmetric(seed, &weight_name, count, bound)
    })?;
    let bias = backend.param(bias_name.clone(), vec![bias_len], || {
        uniform_symmetric(seed, &bias_name, bias_len, bound)
    })?;
    Ok((weight, bias))
}

/// What Conv2d and ConvTranspose2d share: the weight and bias, the kept input with the call's
/// shape, and the backend's workspace.
pub struct ConvCore<B: Backend> {
    weight: B::Param,
    bias: B::Param,
    /// The op kind and the weight's name, labelling the layer in profiles.
    kind: &'static str,
    label: String,
    input: Option<(Activation<B>, ConvShape)>,
    ws: B::ConvWorkspace,
}

impl<B: Backend> ConvCore<B> {
    fn new(
        backend: &mut B,
        kind: &'static str,
        name: &str,
        weight_shape: Vec<usize>,
        c_out: usize,
        fan_in: usize,
        seed: u64,
    ) -> Result<Self> {
        let (weight, bias) =
            default_weight_and_bias(backend, name, weight_shape, c_out, fan_in, seed)?;
        Ok(Self {
            weight,
            bias,
            kind,
            label: format!("{name}.weight"),
            input: None,
            ws: B::ConvWorkspace::default(),
        })
    }

    fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        g: ConvShape,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope(self.kind, &self.label, "forward");
        let out = backend.conv_forward(&mut self.ws, x.storage(), &self.weight, &self.bias, &g)?;
        self.input = (mode == Mode::Train).then(|| (x.clone(), g));
        let (c, h, w) = g.output_dims();
        Ok(Tensor::from_storage(vec![x.shape()[0], c, h, w], out))
    }

    /// Evaluation mode: `lrelu(bn(conv(x)))` [+ residual], in one op of the backend.
    fn forward_batchnorm_leaky_relu_eval(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        g: ConvShape,
        bn: &mut BatchNorm2d<B>,
        residual: Option<Activation<B>>,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope(self.kind, &self.label, "forward");
        let (c, h, w) = g.output_dims();
        assert_eq!(c, bn.c, "{}: channels", bn.label);
        let shape = vec![x.shape()[0], c, h, w];
        if let Some(residual) = &residual {
            assert_eq!(residual.shape(), shape, "{}: residual", self.label);
        }
        let refs = BatchNormRefs {
            ws: &mut bn.ws,
            weight: &bn.weight,
            bias: &bn.bias,
            running_mean: &mut bn.running_mean,
            running_var: &mut bn.running_var,
        };
        let out = backend.conv_batchnorm_leaky_relu_eval(
            &mut self.ws,
            x.storage(),
            &self.weight,
            &self.bias,
            &g,
            refs,
            LEAKY_RELU_SLOPE,
            residual,
        )?;
        self.input = None;
        bn.saved = None;
        Ok(Tensor::from_storage(shape, out))
    }

    fn backward_into(
        &mut self,
        backend: &mut B,
        d_out: &B::Storage,
        d_inp: Option<&mut B::Storage>,
    ) -> Result<()> {
        let _timer = profile::scope(self.kind, &self.label, "backward");
        let (x, g) = self.input.take().expect(NOT_TRAINED);
        backend.conv_backward_into(
            &mut self.ws,
            d_inp,
            &mut self.weight,
            &mut self.bias,
            d_out,
            x.storage(),
            &g,
        )
    }

    fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        let _timer = profile::scope(self.kind, &self.label, "backward");
        let (x, g) = self.input.take().expect(NOT_TRAINED);
        backend.conv_backward(
            &mut self.ws,
            &mut self.weight,
            &mut self.bias,
            d_out,
            x.storage(),
            &g,
        )
    }

    fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
    }
}

/// `torch.nn.Conv2d(c_in, c_out, k, stride, padding)` with bias.
pub struct Conv2d<B: Backend = Cpu> {
    core: ConvCore<B>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl<B: Backend> Conv2d<B> {
    pub fn new(
        backend: &mut B,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    ) -> Result<Self> {
        let weight_shape = vec![c_out, c_in, k, k];
        let core = ConvCore::new(
            backend,
            "conv2d",
            name,
            weight_shape,
            c_out,
            c_in * k * k,
            seed,
        )?;
        Ok(Self {
            core,
            c_in,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// (n, c_in, h, w) → (n, c_out, h_out, w_out).
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let g = self.shape(x);
        self.core.forward(backend, x, g, mode)
    }

    fn shape(&self, x: &Activation<B>) -> ConvShape {
        let (n, c, h, w) = x.dims4();
        assert_eq!(c, self.c_in, "{}: input channels", self.core.label);
        let (c_out, k, stride, pad) = (self.c_out, self.k, self.stride, self.pad);
        ConvShape::Conv2d(DeviceConvGeometry::conv2d(
            n, c, h, w, c_out, k, stride, pad,
        ))
    }

    pub fn backward_into(
        &mut self,
        backend: &mut B,
        d_out: &B::Storage,
        d_inp: Option<&mut B::Storage>,
    ) -> Result<()> {
        self.core.backward_into(backend, d_out, d_inp)
    }

    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        self.core.backward(backend, d_out)
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.core.entries(out);
    }
}

/// `torch.nn.ConvTranspose2d(c_in, c_out, k, stride, padding)` with bias, called with an
/// optional `output_size` as PyTorch's `forward(x, output_size)`.
pub struct ConvTranspose2d<B: Backend = Cpu> {
    core: ConvCore<B>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl<B: Backend> ConvTranspose2d<B> {
    pub fn new(
        backend: &mut B,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    ) -> Result<Self> {
        // PyTorch's fan_in is weight.size(1)·k·k, and the weight is (c_in, c_out, k, k).
        let weight_shape = vec![c_in, c_out, k, k];
        let fan_in = c_out * k * k;
        let core = ConvCore::new(
            backend,
            "conv_transpose2d",
            name,
            weight_shape,
            c_out,
            fan_in,
            seed,
        )?;
        Ok(Self {
            core,
            c_in,
            c_out,
            k,
            stride,
            pad,
        })
    }

    /// (n, c_in, h, w) → (n, c_out, h_out, w_out); `output_size` picks the output padding
    /// that reaches that (h_out, w_out), as PyTorch does.
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        output_size: Option<(usize, usize)>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let g = self.shape(x, output_size);
        self.core.forward(backend, x, g, mode)
    }

    fn shape(&self, x: &Activation<B>, output_size: Option<(usize, usize)>) -> ConvShape {
        let (n, c, h, w) = x.dims4();
        let label = &self.core.label;
        assert_eq!(c, self.c_in, "{label}: input channels");
        let (c_out, k, stride, pad) = (self.c_out, self.k, self.stride, self.pad);
        let padding_for = |size: usize, requested: Option<usize>| match requested {
            None => 0,
            Some(requested) => conv_transpose2d_output_padding(size, requested, k, stride, pad)
                .unwrap_or_else(|err| panic!("{label}: {err}")),
        };
        let (pad_h, pad_w) = (
            padding_for(h, output_size.map(|s| s.0)),
            padding_for(w, output_size.map(|s| s.1)),
        );
        ConvShape::Transposed {
            adjoint: conv_transpose2d_adjoint_geometry(
                n, c, h, w, c_out, k, stride, pad, pad_h, pad_w,
            ),
            output_padding: (pad_h, pad_w),
        }
    }

    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        self.core.backward(backend, d_out)
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.core.entries(out);
    }
}

/// A convolution layer a BatchNorm2d can follow: its op and the shape of its call on `x`
/// (a transposed one without `output_size`).
pub trait ConvLayer<B: Backend> {
    fn core_and_shape(&mut self, x: &Activation<B>) -> (&mut ConvCore<B>, ConvShape);
    fn forward(&mut self, backend: &mut B, x: &Activation<B>, mode: Mode) -> Result<Activation<B>>;
}

impl<B: Backend> ConvLayer<B> for Conv2d<B> {
    fn core_and_shape(&mut self, x: &Activation<B>) -> (&mut ConvCore<B>, ConvShape) {
        let g = self.shape(x);
        (&mut self.core, g)
    }

    fn forward(&mut self, backend: &mut B, x: &Activation<B>, mode: Mode) -> Result<Activation<B>> {
        Conv2d::forward(self, backend, x, mode)
    }
}

impl<B: Backend> ConvLayer<B> for ConvTranspose2d<B> {
    fn core_and_shape(&mut self, x: &Activation<B>) -> (&mut ConvCore<B>, ConvShape) {
        let g = self.shape(x, None);
        (&mut self.core, g)
    }

    fn forward(&mut self, backend: &mut B, x: &Activation<B>, mode: Mode) -> Result<Activation<B>> {
        ConvTranspose2d::forward(self, backend, x, None, mode)
    }
}

/// `lrelu(bn(conv(x)))`, plus `residual` (a tensor of the output's shape) when given. Training
/// mode runs the layers one after the other, each keeping what its backward needs; evaluation
/// mode runs them as one op of the backend, which gives the same values (on the CPU one pass
/// over the output: the convolution stores its sums normalised and activated).
pub fn conv_batchnorm_leaky_relu<B: Backend>(
    backend: &mut B,
    conv: &mut impl ConvLayer<B>,
    bn: &mut BatchNorm2d<B>,
    x: &Activation<B>,
    residual: Option<Activation<B>>,
    mode: Mode,
) -> Result<Activation<B>> {
    if mode == Mode::Eval {
        let (core, g) = conv.core_and_shape(x);
        return core.forward_batchnorm_leaky_relu_eval(backend, x, g, bn, residual);
    }
    let y = conv.forward(backend, x, mode)?;
    let y = bn.forward(backend, &y, mode)?;
    let Some(residual) = residual else {
        return Ok(y);
    };
    // Summed into the residual's storage: bn keeps its own output for backward.
    let _timer = profile::scope("add", "residual sums", "forward");
    let shape = residual.shape().to_vec();
    Ok(Tensor::from_storage(
        shape,
        backend.add(residual, y.storage())?,
    ))
}

/// `torch.nn.BatchNorm2d(c)` (momentum 0.1, eps 1e-5, affine, tracking running statistics)
/// followed by `F.leaky_relu` with PyTorch's slope 0.01, in one pass over the output: in this
/// network every BatchNorm feeds a leaky ReLU. It keeps its output for the backward pass (with
/// a positive slope `out > 0` exactly when the normalised value is, so the output gives the
/// activation's derivative), and its input only where the backend's backward needs it: the
/// kernels' do; the CPU's recovers the input from the output
/// (`ops::batchnorm::batchnorm_leaky_relu_backward_from_output`) unless a weight is near zero.
/// The normalised tensor in between is never kept.
pub struct BatchNorm2d<B: Backend = Cpu> {
    pub weight: B::Param,
    pub bias: B::Param,
    pub running_mean: B::Stat,
    pub running_var: B::Stat,
    pub num_batches_tracked: i64,
    count_name: String,
    label: String,
    c: usize,
    /// The training-mode forward's input (where the backend's backward needs it) and output.
    saved: Option<(Option<Activation<B>>, Activation<B>)>,
    ws: B::BatchNormWorkspace,
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(backend: &mut B, name: &str, c: usize) -> Result<Self> {
        Ok(Self {
            weight: backend.param(format!("{name}.weight"), vec![c], || vec![1.0; c])?,
            bias: backend.param(format!("{name}.bias"), vec![c], || vec![0.0; c])?,
            running_mean: backend.stat(format!("{name}.running_mean"), c, 0.0)?,
            running_var: backend.stat(format!("{name}.running_var"), c, 1.0)?,
            num_batches_tracked: 0,
            count_name: format!("{name}.num_batches_tracked"),
            label: format!("{name}.weight"),
            c,
            saved: None,
            ws: B::BatchNormWorkspace::default(),
        })
    }

    /// `lrelu(bn(x))`: batch statistics in training mode (moving the running ones), the
    /// running statistics in evaluation mode.
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope("batchnorm+leaky_relu", &self.label, "forward");
        let (n, c, h, w) = x.dims4();
        assert_eq!(c, self.c, "{}: channels", self.label);
        let out = backend.batchnorm_leaky_relu_forward(
            &mut self.ws,
            x.storage(),
            &self.weight,
            &self.bias,
            &mut self.running_mean,
            &mut self.running_var,
            (n, c, h * w),
            LEAKY_RELU_SLOPE,
            mode,
        )?;
        let out = Tensor::from_storage(x.shape().to_vec(), out);
        self.saved = match mode {
            Mode::Train => {
                self.num_batches_tracked += 1;
                let keep_input = backend.batchnorm_backward_needs_input(
                    &self.weight,
                    &self.bias,
                    LEAKY_RELU_SLOPE,
                );
                Some((keep_input.then(|| x.clone()), out.clone()))
            }
            Mode::Eval => None,
        };
        Ok(out)
    }

    /// The gradient of the forward's input, given its output's.
    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        let _timer = profile::scope("batchnorm+leaky_relu", &self.label, "backward");
        let (x, y) = self.saved.take().expect(NOT_TRAINED);
        let (n, c, h, w) = y.dims4();
        backend.batchnorm_leaky_relu_backward(
            &mut self.ws,
            &mut self.weight,
            &mut self.bias,
            d_out,
            y.storage(),
            x.as_ref().map(|x| x.storage()),
            (n, c, h * w),
            LEAKY_RELU_SLOPE,
        )
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
        out.push(StateEntry::Buffer(&mut self.running_mean));
        out.push(StateEntry::Buffer(&mut self.running_var));
        out.push(StateEntry::Count {
            name: &self.count_name,
            value: &mut self.num_batches_tracked,
        });
    }
}

/// `torch.sigmoid`; backward reads the output, as PyTorch's does.
pub struct Sigmoid<B: Backend = Cpu> {
    name: String,
    output: Option<Activation<B>>,
}

impl<B: Backend> Sigmoid<B> {
    /// `name` labels it in profiles.
    pub fn new(name: String) -> Self {
        Self { name, output: None }
    }

    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope("sigmoid", &self.name, "forward");
        let out = Tensor::from_storage(x.shape().to_vec(), backend.sigmoid_forward(x.storage())?);
        self.output = (mode == Mode::Train).then(|| out.clone());
        Ok(out)
    }

    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        let _timer = profile::scope("sigmoid", &self.name, "backward");
        let y = self.output.take().expect(NOT_TRAINED);
        backend.sigmoid_backward(d_out, y.storage())
    }
}

/// `torch.nn.Linear(in_features, out_features)` on the last axis.
pub struct Linear<B: Backend = Cpu> {
    pub weight: B::Param,
    pub bias: B::Param,
    label: String,
    in_features: usize,
    out_features: usize,
    input: Option<Activation<B>>,
    ws: B::LinearWorkspace,
}

impl<B: Backend> Linear<B> {
    pub fn new(
        backend: &mut B,
        name: &str,
        in_features: usize,
        out_features: usize,
        seed: u64,
    ) -> Result<Self> {
        let (weight, bias) = default_weight_and_bias(
            backend,
            name,
            vec![out_features, in_features],
            out_features,
            in_features,
            seed,
        )?;
        Ok(Self {
            weight,
            bias,
            label: format!("{name}.weight"),
            in_features,
            out_features,
            input: None,
            ws: B::LinearWorkspace::default(),
        })
    }

    /// (…, in_features) → (…, out_features).
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope("linear", &self.label, "forward");
        assert_eq!(
            x.shape().last(),
            Some(&self.in_features),
            "{}: input features",
            self.label
        );
        let rows = x.len() / self.in_features;
        let out = backend.linear_forward(
            x.storage(),
            &self.weight,
            &self.bias,
            rows,
            self.in_features,
            self.out_features,
        )?;
        self.input = (mode == Mode::Train).then(|| x.clone());
        let mut shape = x.shape().to_vec();
        *shape.last_mut().unwrap() = self.out_features;
        Ok(Tensor::from_storage(shape, out))
    }

    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        let _timer = profile::scope("linear", &self.label, "backward");
        let x = self.input.take().expect(NOT_TRAINED);
        let rows = x.len() / self.in_features;
        backend.linear_backward(
            &mut self.ws,
            &mut self.weight,
            &mut self.bias,
            d_out,
            x.storage(),
            rows,
            self.in_features,
            self.out_features,
        )
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
    }
}

/// One direction's parameters, PyTorch's `weight_ih_l0{suffix}` etc.
struct LstmDirection<B: Backend> {
    w_ih: B::Param,
    w_hh: B::Param,
    b_ih: B::Param,
    b_hh: B::Param,
}

impl<B: Backend> LstmDirection<B> {
    fn params(&self) -> LstmParams<'_, B::Param> {
        [&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh]
    }

    fn params_mut(&mut self) -> LstmParamsMut<'_, B::Param> {
        [
            &mut self.w_ih,
            &mut self.w_hh,
            &mut self.b_ih,
            &mut self.b_hh,
        ]
    }
}

/// What the LSTM's backward pass needs.
struct LstmSaved<B: Backend> {
    input: Activation<B>,
    output: Activation<B>,
    gates: B::Storage,
    cells: B::Storage,
}

/// `torch.nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)`, one layer,
/// zero initial state.
pub struct Lstm<B: Backend = Cpu> {
    name: String,
    directions: [LstmDirection<B>; 2],
    input_size: usize,
    hidden_size: usize,
    saved: Option<LstmSaved<B>>,
    ws: B::LstmWorkspace,
}

impl<B: Backend> Lstm<B> {
    pub fn new(
        backend: &mut B,
        name: &str,
        input_size: usize,
        hidden_size: usize,
        seed: u64,
    ) -> Result<Self> {
        // PyTorch draws every LSTM parameter from U(±1/√hidden_size).
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let mut param = |field: &str, suffix: &str, shape: Vec<usize>| {
            let full = format!("{name}.{field}_l0{suffix}");
            let count = shape.iter().product();
            backend.param(full.clone(), shape, || {
                uniform_symmetric(seed, &full, count, bound)
            })
        };
        let mut direction = |suffix: &str| -> Result<LstmDirection<B>> {
            Ok(LstmDirection {
                w_ih: param("weight_ih", suffix, vec![4 * hidden_size, input_size])?,
                w_hh: param("weight_hh", suffix, vec![4 * hidden_size, hidden_size])?,
                b_ih: param("bias_ih", suffix, vec![4 * hidden_size])?,
                b_hh: param("bias_hh", suffix, vec![4 * hidden_size])?,
            })
        };
        let directions = [direction("")?, direction("_reverse")?];
        Ok(Self {
            name: name.to_string(),
            directions,
            input_size,
            hidden_size,
            saved: None,
            ws: B::LstmWorkspace::default(),
        })
    }

    /// (batch, frames, input_size) → (batch, frames, 2·hidden_size).
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Activation<B>,
        mode: Mode,
    ) -> Result<Activation<B>> {
        let _timer = profile::scope("lstm", &self.name, "forward");
        let (batch, frames) = match x.shape() {
            &[b, t, c] if c == self.input_size => (b, t),
            shape => panic!(
                "lstm: expected (batch, frames, {}), got {shape:?}",
                self.input_size
            ),
        };
        let shape = self.shape(batch, frames);
        let [forward, reverse] = &self.directions;
        let (out, gates, cells) = backend.lstm_forward(
            &mut self.ws,
            x.storage(),
            [forward.params(), reverse.params()],
            shape,
        )?;
        let out = Tensor::from_storage(vec![batch, frames, 2 * self.hidden_size], out);
        self.saved = (mode == Mode::Train).then(|| LstmSaved {
            input: x.clone(),
            output: out.clone(),
            gates,
            cells,
        });
        Ok(out)
    }

    fn shape(&self, batch: usize, frames: usize) -> LstmShape {
        LstmShape {
            batch,
            frames,
            input_size: self.input_size,
            hidden_size: self.hidden_size,
        }
    }

    pub fn backward(&mut self, backend: &mut B, d_out: &B::Storage) -> Result<B::Storage> {
        let _timer = profile::scope("lstm", &self.name, "backward");
        let mut saved = self.saved.take().expect(NOT_TRAINED);
        let x = &saved.input;
        let shape = self.shape(x.shape()[0], x.shape()[1]);
        let [forward, reverse] = &mut self.directions;
        backend.lstm_backward(
            &mut self.ws,
            [forward.params_mut(), reverse.params_mut()],
            d_out,
            (
                x.storage(),
                saved.output.storage(),
                &mut saved.gates,
                &saved.cells,
            ),
            shape,
        )
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        for d in &mut self.directions {
            out.push(StateEntry::Param(&mut d.w_ih));
            out.push(StateEntry::Param(&mut d.w_hh));
            out.push(StateEntry::Param(&mut d.b_ih));
            out.push(StateEntry::Param(&mut d.b_hh));
        }
    }
}

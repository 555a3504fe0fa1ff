//! The network's layers as structs holding their parameters and gradients (llm.c style, over
//! the ops of `crate::ops`): `forward` keeps what `backward` needs (in training mode only);
//! `backward_into` takes the output gradient and ADDS the input gradient into a buffer the
//! caller owns (a tensor read by two layers collects both), while adding into the parameter
//! gradients; `backward` is the same into a fresh zeroed buffer.
// The ops take their shapes as arguments, so some calls are long on purpose.
#![allow(clippy::too_many_arguments)]

use crate::ops::{activation, batchnorm, conv2d, conv_transpose2d, linear, lstm};

use super::init::uniform_symmetric;
use super::profile;
use super::storage::Storage;
use super::tensor::{Buffer, Mode, Param, StateEntry, Tensor};

const NOT_TRAINED: &str = "backward needs a training-mode forward first";

/// A weight and a bias drawn from PyTorch's default U(±1/√fan_in).
fn default_weight_and_bias(
    name: &str,
    weight_shape: Vec<usize>,
    bias_len: usize,
    fan_in: usize,
    seed: u64,
) -> (Param, Param) {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let weight_name = format!("{name}.weight");
    let bias_name = format!("{name}.bias");
    let count = weight_shape.iter().product();
    let weight_value = uniform_symmetric(seed, &weight_name, count, bound);
    let bias_value = uniform_symmetric(seed, &bias_name, bias_len, bound);
    (
        Param::new(weight_name, weight_shape, weight_value),
        Param::new(bias_name, vec![bias_len], bias_value),
    )
}

/// `torch.nn.Conv2d(c_in, c_out, k, stride, padding)` with bias.
pub struct Conv2d {
    pub weight: Param,
    pub bias: Param,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    input: Option<Tensor>,
}

impl Conv2d {
    pub fn new(
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    ) -> Self {
        let (weight, bias) =
            default_weight_and_bias(name, vec![c_out, c_in, k, k], c_out, c_in * k * k, seed);
        Self {
            weight,
            bias,
            c_in,
            c_out,
            k,
            stride,
            pad,
            input: None,
        }
    }

    /// (n, c_in, h, w) → (n, c_out, h_out, w_out).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let _timer = profile::scope("conv2d", &self.weight.name, "forward");
        let (n, c, h, w) = x.dims4();
        assert_eq!(c, self.c_in, "{}: input channels", self.weight.name);
        let h_out = conv2d::conv2d_output_size(h, self.k, self.stride, self.pad);
        let w_out = conv2d::conv2d_output_size(w, self.k, self.stride, self.pad);
        let mut out = Storage::for_overwrite(n * self.c_out * h_out * w_out);
        conv2d::conv2d_forward(
            &mut out,
            x.data(),
            &self.weight.value,
            Some(&self.bias.value),
            n,
            c,
            h,
            w,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
        );
        self.input = (mode == Mode::Train).then(|| x.clone());
        Tensor::new(vec![n, self.c_out, h_out, w_out], out)
    }

    pub fn backward_into(&mut self, d_out: &[f32], d_inp: Option<&mut [f32]>) {
        let _timer = profile::scope("conv2d", &self.weight.name, "backward");
        let x = self.input.take().expect(NOT_TRAINED);
        let (n, c, h, w) = x.dims4();
        conv2d::conv2d_backward(
            d_inp,
            &mut self.weight.grad,
            Some(&mut self.bias.grad),
            d_out,
            x.data(),
            &self.weight.value,
            n,
            c,
            h,
            w,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
        );
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let mut d_inp = Storage::zeroed(self.input.as_ref().expect(NOT_TRAINED).len());
        self.backward_into(d_out, Some(&mut d_inp));
        d_inp
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
    }
}

/// `torch.nn.ConvTranspose2d(c_in, c_out, k, stride, padding)` with bias, called with an
/// optional `output_size` as PyTorch's `forward(x, output_size)`.
pub struct ConvTranspose2d {
    pub weight: Param,
    pub bias: Param,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// The forward's input and its (h, w) output paddings.
    input: Option<(Tensor, usize, usize)>,
}

impl ConvTranspose2d {
    pub fn new(
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    ) -> Self {
        // PyTorch's fan_in is weight.size(1)·k·k, and the weight is (c_in, c_out, k, k).
        let (weight, bias) =
            default_weight_and_bias(name, vec![c_in, c_out, k, k], c_out, c_out * k * k, seed);
        Self {
            weight,
            bias,
            c_in,
            c_out,
            k,
            stride,
            pad,
            input: None,
        }
    }

    /// (n, c_in, h, w) → (n, c_out, h_out, w_out); `output_size` picks the output padding
    /// that reaches that (h_out, w_out), as PyTorch does.
    pub fn forward(
        &mut self,
        x: &Tensor,
        output_size: Option<(usize, usize)>,
        mode: Mode,
    ) -> Tensor {
        let _timer = profile::scope("conv_transpose2d", &self.weight.name, "forward");
        let (n, c, h, w) = x.dims4();
        assert_eq!(c, self.c_in, "{}: input channels", self.weight.name);
        let padding_for = |size: usize, requested: Option<usize>| match requested {
            None => 0,
            Some(requested) => conv_transpose2d::conv_transpose2d_output_padding(
                size,
                requested,
                self.k,
                self.stride,
                self.pad,
            )
            .unwrap_or_else(|err| panic!("{}: {err}", self.weight.name)),
        };
        let output_padding_h = padding_for(h, output_size.map(|s| s.0));
        let output_padding_w = padding_for(w, output_size.map(|s| s.1));
        let h_out = conv_transpose2d::conv_transpose2d_output_size(
            h,
            self.k,
            self.stride,
            self.pad,
            output_padding_h,
        );
        let w_out = conv_transpose2d::conv_transpose2d_output_size(
            w,
            self.k,
            self.stride,
            self.pad,
            output_padding_w,
        );
        let mut out = Storage::for_overwrite(n * self.c_out * h_out * w_out);
        conv_transpose2d::conv_transpose2d_forward(
            &mut out,
            x.data(),
            &self.weight.value,
            Some(&self.bias.value),
            n,
            c,
            h,
            w,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
            output_padding_h,
            output_padding_w,
        );
        self.input = (mode == Mode::Train).then(|| (x.clone(), output_padding_h, output_padding_w));
        Tensor::new(vec![n, self.c_out, h_out, w_out], out)
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("conv_transpose2d", &self.weight.name, "backward");
        let (x, output_padding_h, output_padding_w) = self.input.take().expect(NOT_TRAINED);
        let (n, c, h, w) = x.dims4();
        let mut d_inp = Storage::zeroed(x.len());
        conv_transpose2d::conv_transpose2d_backward(
            Some(&mut d_inp),
            &mut self.weight.grad,
            Some(&mut self.bias.grad),
            d_out,
            x.data(),
            &self.weight.value,
            n,
            c,
            h,
            w,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
            output_padding_h,
            output_padding_w,
        );
        d_inp
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
    }
}

/// `torch.nn.BatchNorm2d(c)`: momentum 0.1, eps 1e-5, affine, tracking running statistics.
pub struct BatchNorm2d {
    pub weight: Param,
    pub bias: Param,
    pub running_mean: Buffer,
    pub running_var: Buffer,
    pub num_batches_tracked: i64,
    count_name: String,
    c: usize,
    input: Option<Tensor>,
    save_mean: Vec<f32>,
    save_rstd: Vec<f32>,
}

impl BatchNorm2d {
    pub fn new(name: &str, c: usize) -> Self {
        let buffer = |field: &str, fill: f32| Buffer {
            name: format!("{name}.{field}"),
            shape: vec![c],
            value: vec![fill; c],
        };
        Self {
            weight: Param::new(format!("{name}.weight"), vec![c], vec![1.0; c]),
            bias: Param::new(format!("{name}.bias"), vec![c], vec![0.0; c]),
            running_mean: buffer("running_mean", 0.0),
            running_var: buffer("running_var", 1.0),
            num_batches_tracked: 0,
            count_name: format!("{name}.num_batches_tracked"),
            c,
            input: None,
            save_mean: vec![0.0; c],
            save_rstd: vec![0.0; c],
        }
    }

    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let name = self.weight.name.clone();
        let _timer = profile::scope("batchnorm", &name, "forward");
        self.forward_then(x, None, mode)
    }

    /// `act.forward(&self.forward(x, mode), mode)` in one pass over the output (the same values,
    /// bit for bit), without the normalised tensor in between.
    pub fn forward_leaky(&mut self, x: &Tensor, act: &mut LeakyRelu, mode: Mode) -> Tensor {
        let name = self.weight.name.clone();
        let _timer = profile::scope("batchnorm+leaky_relu", &name, "forward");
        let out = self.forward_then(x, Some(activation::LEAKY_RELU_SLOPE), mode);
        act.output = (mode == Mode::Train).then(|| out.clone());
        out
    }

    /// The gradient of [`forward_leaky`](Self::forward_leaky)'s input, given its output's:
    /// `self.backward(&act.backward(d_out))`, the activation's gradient formed on the fly.
    pub fn backward_leaky(&mut self, act: &mut LeakyRelu, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("batchnorm+leaky_relu", &self.weight.name, "backward");
        let y = act.output.take().expect(NOT_TRAINED);
        let x = self.input.take().expect(NOT_TRAINED);
        let (n, c, h, w) = x.dims4();
        let mut d_inp = Storage::zeroed(x.len());
        batchnorm::batchnorm_leaky_relu_backward(
            Some(&mut d_inp),
            &mut self.weight.grad,
            &mut self.bias.grad,
            d_out,
            y.data(),
            x.data(),
            &self.weight.value,
            &self.save_mean,
            &self.save_rstd,
            n,
            c,
            h * w,
            activation::LEAKY_RELU_SLOPE,
        );
        d_inp
    }

    /// The forward, followed in the same pass by leaky ReLU of this slope when `Some`.
    fn forward_then(&mut self, x: &Tensor, leaky: Option<f32>, mode: Mode) -> Tensor {
        let (n, c, h, w) = x.dims4();
        assert_eq!(c, self.c, "{}: channels", self.weight.name);
        let mut out = Storage::for_overwrite(x.len());
        match (mode, leaky) {
            (Mode::Train, Some(slope)) => {
                batchnorm::batchnorm_leaky_relu_forward_train(
                    &mut out,
                    &mut self.save_mean,
                    &mut self.save_rstd,
                    &mut self.running_mean.value,
                    &mut self.running_var.value,
                    x.data(),
                    &self.weight.value,
                    &self.bias.value,
                    n,
                    c,
                    h * w,
                    batchnorm::BATCHNORM_MOMENTUM,
                    batchnorm::BATCHNORM_EPS,
                    slope,
                );
                self.num_batches_tracked += 1;
                self.input = Some(x.clone());
            }
            (Mode::Eval, Some(slope)) => {
                batchnorm::batchnorm_leaky_relu_forward_eval(
                    &mut out,
                    x.data(),
                    &self.weight.value,
                    &self.bias.value,
                    &self.running_mean.value,
                    &self.running_var.value,
                    n,
                    c,
                    h * w,
                    batchnorm::BATCHNORM_EPS,
                    slope,
                );
                self.input = None;
            }
            (Mode::Train, None) => {
                batchnorm::batchnorm_forward_train(
                    &mut out,
                    &mut self.save_mean,
                    &mut self.save_rstd,
                    &mut self.running_mean.value,
                    &mut self.running_var.value,
                    x.data(),
                    &self.weight.value,
                    &self.bias.value,
                    n,
                    c,
                    h * w,
                    batchnorm::BATCHNORM_MOMENTUM,
                    batchnorm::BATCHNORM_EPS,
                );
                self.num_batches_tracked += 1;
                self.input = Some(x.clone());
            }
            (Mode::Eval, None) => {
                batchnorm::batchnorm_forward_eval(
                    &mut out,
                    x.data(),
                    &self.weight.value,
                    &self.bias.value,
                    &self.running_mean.value,
                    &self.running_var.value,
                    n,
                    c,
                    h * w,
                    batchnorm::BATCHNORM_EPS,
                );
                self.input = None;
            }
        }
        Tensor::new(x.shape().to_vec(), out)
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("batchnorm", &self.weight.name, "backward");
        let x = self.input.take().expect(NOT_TRAINED);
        let (n, c, h, w) = x.dims4();
        let mut d_inp = Storage::zeroed(x.len());
        batchnorm::batchnorm_backward(
            Some(&mut d_inp),
            &mut self.weight.grad,
            &mut self.bias.grad,
            d_out,
            x.data(),
            &self.weight.value,
            &self.save_mean,
            &self.save_rstd,
            n,
            c,
            h * w,
        );
        d_inp
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
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

/// `F.leaky_relu` with PyTorch's slope 0.01. It keeps its output, not its input, for the
/// backward pass: with a positive slope `out > 0` exactly when `inp > 0`, so the derivative is
/// the same, and the output is what the next layer keeps anyway, so the input (the BatchNorm's
/// output) is freed at once. PyTorch keeps both.
pub struct LeakyRelu {
    name: String,
    output: Option<Tensor>,
}

impl LeakyRelu {
    /// `name` labels it in profiles (the activation has no state_dict entry).
    pub fn new(name: String) -> Self {
        Self { name, output: None }
    }

    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let _timer = profile::scope("leaky_relu", &self.name, "forward");
        let mut out = Storage::for_overwrite(x.len());
        activation::leaky_relu_forward(&mut out, x.data(), activation::LEAKY_RELU_SLOPE);
        let out = Tensor::new(x.shape().to_vec(), out);
        self.output = (mode == Mode::Train).then(|| out.clone());
        out
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("leaky_relu", &self.name, "backward");
        let y = self.output.take().expect(NOT_TRAINED);
        let mut d_inp = Storage::zeroed(y.len());
        // The op tests `inp > 0`; the output has the input's sign.
        activation::leaky_relu_backward(&mut d_inp, d_out, y.data(), activation::LEAKY_RELU_SLOPE);
        d_inp
    }
}

/// `torch.sigmoid`; backward reads the output, as PyTorch's does.
pub struct Sigmoid {
    name: String,
    output: Option<Tensor>,
}

impl Sigmoid {
    /// `name` labels it in profiles.
    pub fn new(name: String) -> Self {
        Self { name, output: None }
    }

    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let _timer = profile::scope("sigmoid", &self.name, "forward");
        let mut out = Storage::for_overwrite(x.len());
        activation::sigmoid_forward(&mut out, x.data());
        let out = Tensor::new(x.shape().to_vec(), out);
        self.output = (mode == Mode::Train).then(|| out.clone());
        out
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("sigmoid", &self.name, "backward");
        let y = self.output.take().expect(NOT_TRAINED);
        let mut d_inp = Storage::zeroed(y.len());
        activation::sigmoid_backward(&mut d_inp, d_out, y.data());
        d_inp
    }
}

/// `torch.nn.Linear(in_features, out_features)` on the last axis.
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
    in_features: usize,
    out_features: usize,
    input: Option<Tensor>,
}

impl Linear {
    pub fn new(name: &str, in_features: usize, out_features: usize, seed: u64) -> Self {
        let (weight, bias) = default_weight_and_bias(
            name,
            vec![out_features, in_features],
            out_features,
            in_features,
            seed,
        );
        Self {
            weight,
            bias,
            in_features,
            out_features,
            input: None,
        }
    }

    /// (…, in_features) → (…, out_features).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let _timer = profile::scope("linear", &self.weight.name, "forward");
        assert_eq!(
            x.shape().last(),
            Some(&self.in_features),
            "{}: input features",
            self.weight.name
        );
        let rows = x.len() / self.in_features;
        let mut out = Storage::for_overwrite(rows * self.out_features);
        linear::linear_forward(
            &mut out,
            x.data(),
            &self.weight.value,
            Some(&self.bias.value),
            rows,
            self.in_features,
            self.out_features,
        );
        self.input = (mode == Mode::Train).then(|| x.clone());
        let mut shape = x.shape().to_vec();
        *shape.last_mut().unwrap() = self.out_features;
        Tensor::new(shape, out)
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("linear", &self.weight.name, "backward");
        let x = self.input.take().expect(NOT_TRAINED);
        let rows = x.len() / self.in_features;
        let mut d_inp = Storage::zeroed(x.len());
        linear::linear_backward(
            Some(&mut d_inp),
            &mut self.weight.grad,
            Some(&mut self.bias.grad),
            d_out,
            x.data(),
            &self.weight.value,
            rows,
            self.in_features,
            self.out_features,
        );
        d_inp
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        out.push(StateEntry::Param(&mut self.weight));
        out.push(StateEntry::Param(&mut self.bias));
    }
}

/// One direction's parameters, PyTorch's `weight_ih_l0{suffix}` etc.
struct LstmDirection {
    w_ih: Param,
    w_hh: Param,
    b_ih: Param,
    b_hh: Param,
}

impl LstmDirection {
    /// The weights to read and the gradients to add into, borrowed together.
    fn split(&mut self) -> (lstm::LstmWeights<'_>, lstm::LstmGradients<'_>) {
        (
            lstm::LstmWeights {
                w_ih: &self.w_ih.value,
                w_hh: &self.w_hh.value,
                b_ih: &self.b_ih.value,
                b_hh: &self.b_hh.value,
            },
            lstm::LstmGradients {
                w_ih: &mut self.w_ih.grad,
                w_hh: &mut self.w_hh.grad,
                b_ih: &mut self.b_ih.grad,
                b_hh: &mut self.b_hh.grad,
            },
        )
    }
}

/// `torch.nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)`, one layer,
/// zero initial state.
pub struct Lstm {
    name: String,
    directions: [LstmDirection; 2],
    input_size: usize,
    hidden_size: usize,
    /// What the backward pass needs: input, output, gate activations, cell states.
    saved: Option<(Tensor, Tensor, Storage, Storage)>,
}

impl Lstm {
    pub fn new(name: &str, input_size: usize, hidden_size: usize, seed: u64) -> Self {
        // PyTorch draws every LSTM parameter from U(±1/√hidden_size).
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let param = |field: &str, suffix: &str, shape: Vec<usize>| {
            let full = format!("{name}.{field}_l0{suffix}");
            let value = uniform_symmetric(seed, &full, shape.iter().product(), bound);
            Param::new(full, shape, value)
        };
        let direction = |suffix: &str| LstmDirection {
            w_ih: param("weight_ih", suffix, vec![4 * hidden_size, input_size]),
            w_hh: param("weight_hh", suffix, vec![4 * hidden_size, hidden_size]),
            b_ih: param("bias_ih", suffix, vec![4 * hidden_size]),
            b_hh: param("bias_hh", suffix, vec![4 * hidden_size]),
        };
        Self {
            name: name.to_string(),
            directions: [direction(""), direction("_reverse")],
            input_size,
            hidden_size,
            saved: None,
        }
    }

    fn weights(&self) -> [lstm::LstmWeights<'_>; 2] {
        self.directions.each_ref().map(|d| lstm::LstmWeights {
            w_ih: &d.w_ih.value,
            w_hh: &d.w_hh.value,
            b_ih: &d.b_ih.value,
            b_hh: &d.b_hh.value,
        })
    }

    /// (batch, frames, input_size) → (batch, frames, 2·hidden_size).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let _timer = profile::scope("lstm", &self.name, "forward");
        let (batch, frames) = match x.shape() {
            &[b, t, c] if c == self.input_size => (b, t),
            shape => panic!(
                "lstm: expected (batch, frames, {}), got {shape:?}",
                self.input_size
            ),
        };
        let hid = self.hidden_size;
        let mut out = Storage::for_overwrite(batch * frames * 2 * hid);
        let mut gates = Storage::for_overwrite(2 * batch * frames * 4 * hid);
        let mut cells = Storage::for_overwrite(2 * batch * frames * hid);
        lstm::lstm_forward(
            &mut out,
            &mut gates,
            &mut cells,
            x.data(),
            &self.weights(),
            batch,
            frames,
            self.input_size,
            hid,
        );
        let out = Tensor::new(vec![batch, frames, 2 * hid], out);
        self.saved = (mode == Mode::Train).then(|| (x.clone(), out.clone(), gates, cells));
        out
    }

    pub fn backward(&mut self, d_out: &[f32]) -> Storage {
        let _timer = profile::scope("lstm", &self.name, "backward");
        let (x, out, gates, cells) = self.saved.take().expect(NOT_TRAINED);
        let (batch, frames) = (x.shape()[0], x.shape()[1]);
        let mut d_inp = Storage::zeroed(x.len());
        let [forward, reverse] = &mut self.directions;
        let (forward_weights, forward_grads) = forward.split();
        let (reverse_weights, reverse_grads) = reverse.split();
        let mut grads = [forward_grads, reverse_grads];
        lstm::lstm_backward(
            Some(&mut d_inp),
            &mut grads,
            d_out,
            x.data(),
            out.data(),
            &gates,
            &cells,
            &[forward_weights, reverse_weights],
            batch,
            frames,
            self.input_size,
            self.hidden_size,
        );
        d_inp
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        for d in &mut self.directions {
            out.push(StateEntry::Param(&mut d.w_ih));
            out.push(StateEntry::Param(&mut d.w_hh));
            out.push(StateEntry::Param(&mut d.b_ih));
            out.push(StateEntry::Param(&mut d.b_hh));
        }
    }
}

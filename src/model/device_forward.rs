//! The network's evaluation-mode forward pass on a kernel device (`emu` or `cuda`), over the op
//! launchers of `crate::ops`: the same network as [`super::transcriber`], reading top to bottom
//! like PROTOCOL.md, whose parameters are those of a [`Transcriber`] (random or loaded from a
//! checkpoint) uploaded once by [`DeviceTranscriber::upload`]. Nothing goes back to the host
//! within a forward pass except the piano roll at the end.
//!
//! This is a device path beside the layer structs, not yet the one device-generic code path of
//! issue 11 item 1: the layer structs still hold host vectors, and this file restates the
//! network's wiring (by the parameters' state_dict names) over device buffers. Workspaces are
//! allocated per call.
// The launchers take their shapes as arguments.
#![allow(clippy::too_many_arguments)]

use std::collections::HashMap;

use crate::device::{DeviceBuffer, DeviceError, KernelDevice};
use crate::ops::activation::{sigmoid_forward_launch, LEAKY_RELU_SLOPE};
use crate::ops::batchnorm::{batchnorm_forward_eval_launch, BatchNormWorkspace, BATCHNORM_EPS};
use crate::ops::concat::concat_channels_forward_launch;
use crate::ops::conv2d::{conv2d_forward_launch, ConvWorkspace, DeviceConvGeometry};
use crate::ops::conv_transpose2d::{
    conv_transpose2d_adjoint_geometry_for, conv_transpose2d_forward_launch,
};
use crate::ops::elementwise::add_in_place_launch;
use crate::ops::linear::linear_forward_launch;
use crate::ops::lstm::{lstm_forward_launch, DeviceLstmWeights, LstmShape, LstmWorkspace};

use super::tensor::StateEntry;
use super::transcriber::{check_input_shape, Transcriber, N_BINS};
use super::ModelError;

/// An activation on the device: (n, c, h, w) or (batch, frames, features).
struct DeviceTensor {
    shape: Vec<usize>,
    data: DeviceBuffer<f32>,
}

impl DeviceTensor {
    fn dims4(&self) -> (usize, usize, usize, usize) {
        match self.shape[..] {
            [n, c, h, w] => (n, c, h, w),
            _ => unreachable!("the network passes 4-d tensors here, got {:?}", self.shape),
        }
    }
}

/// A parameter or BatchNorm buffer on the device, with its shape.
struct DeviceParam {
    shape: Vec<usize>,
    data: DeviceBuffer<f32>,
}

/// The network's parameters and BatchNorm running statistics on a kernel device, by their
/// state_dict names.
pub struct DeviceTranscriber<'d> {
    device: &'d KernelDevice,
    params: HashMap<String, DeviceParam>,
}

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "transcriber",
        message,
    }
}

impl<'d> DeviceTranscriber<'d> {
    /// Uploads every parameter and BatchNorm buffer of `model` (one copy each, once).
    pub fn upload(
        device: &'d KernelDevice,
        model: &mut Transcriber,
    ) -> Result<DeviceTranscriber<'d>, DeviceError> {
        let mut params = HashMap::new();
        for entry in model.state_entries() {
            let (name, shape, values) = match entry {
                StateEntry::Param(p) => (p.name.clone(), p.shape.clone(), &p.value),
                StateEntry::Buffer(b) => (b.name.clone(), b.shape.clone(), &b.value),
                StateEntry::Count { .. } => continue,
            };
            let data = device.upload(values)?;
            params.insert(name, DeviceParam { shape, data });
        }
        Ok(DeviceTranscriber { device, params })
    }

    fn param(&self, name: &str) -> Result<&DeviceParam, DeviceError> {
        self.params
            .get(name)
            .ok_or_else(|| invalid(format!("no parameter {name}")))
    }

    /// spec (batch, frames, 176), on the host → piano roll probabilities (batch, frames, 88),
    /// in evaluation mode (BatchNorm with its running statistics).
    pub fn forward_eval(&self, spec: &[f32], shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (batch, frames) = check_input_shape(shape)?;
        if spec.len() != batch * frames * N_BINS {
            return Err(ModelError::InputShape {
                shape: shape.to_vec(),
            });
        }
        let x = DeviceTensor {
            shape: vec![batch, 1, frames, N_BINS],
            data: self.device.upload(spec)?,
        };
        let roll = self.network(x)?;
        Ok(self.device.download(&roll.data)?)
    }

    /// UnetTranscriptionModel.forward: U-net, sigmoid, BiLSTM, Linear, sigmoid.
    fn network(&self, x: DeviceTensor) -> Result<DeviceTensor, DeviceError> {
        let (batch, _, frames, _) = x.dims4();
        // Encoder: four blocks, then the side convolutions of x3, x2, x1.
        let (x1, size1) = self.encoder_block("Unet1_encoder.block1", &x)?;
        let (x2, size2) = self.encoder_block("Unet1_encoder.block2", &x1)?;
        let (x3, size3) = self.encoder_block("Unet1_encoder.block3", &x2)?;
        let (x4, size4) = self.encoder_block("Unet1_encoder.block4", &x3)?;
        let c1 = self.conv2d("Unet1_encoder.conv1", &x3, 1, 1)?;
        let c2 = self.conv2d("Unet1_encoder.conv2", &x2, 1, 1)?;
        let c3 = self.conv2d("Unet1_encoder.conv3", &x1, 1, 1)?;
        drop((x1, x2, x3));
        // Decoder: upsample to each encoder block's size, concatenating c1, c2, c3.
        let y = self.decoder_block("Unet1_decoder.d_block1", &x4, size4, Some(&c1))?;
        let y = self.decoder_block("Unet1_decoder.d_block2", &y, size3, Some(&c2))?;
        let y = self.decoder_block("Unet1_decoder.d_block3", &y, size2, Some(&c3))?;
        let y = self.decoder_block("Unet1_decoder.d_block4", &y, size1, None)?;
        let feat1 = self.sigmoid(&y)?;
        let feat1 = DeviceTensor {
            shape: vec![batch, frames, N_BINS],
            data: feat1.data,
        };
        let x = self.lstm("lstm1", &feat1)?;
        let x = self.linear("linear", &x)?;
        self.sigmoid(&x)
    }

    /// `a = lrelu(bn1(conv1(x)))`, `b = lrelu(bn2(conv2(a))) + skip(x)`, `y = ds(b)`; returns y
    /// and b's (h, w).
    fn encoder_block(
        &self,
        name: &str,
        x: &DeviceTensor,
    ) -> Result<(DeviceTensor, (usize, usize)), DeviceError> {
        let a = self.conv2d(&format!("{name}.conv1"), x, 1, 1)?;
        let a = self.batchnorm_lrelu(&format!("{name}.bn1"), &a, true)?;
        let b = self.conv2d(&format!("{name}.conv2"), &a, 1, 1)?;
        let mut b = self.batchnorm_lrelu(&format!("{name}.bn2"), &b, true)?;
        let skip = self.conv2d(&format!("{name}.skip"), x, 1, 0)?;
        add_in_place_launch(self.device, &mut b.data, &skip.data)?;
        let (_, _, h, w) = b.dims4();
        Ok((self.conv2d(&format!("{name}.ds"), &b, 2, 0)?, (h, w)))
    }

    /// `u = us(x, size)` (concatenated with `skip`), `h = lrelu(bn2d(conv2d(u)))`,
    /// `y = lrelu(bn1d(conv1d(h)))`, or `conv1d(h)` in the last block.
    fn decoder_block(
        &self,
        name: &str,
        x: &DeviceTensor,
        size: (usize, usize),
        skip: Option<&DeviceTensor>,
    ) -> Result<DeviceTensor, DeviceError> {
        let u = self.conv_transpose2d(&format!("{name}.us"), x, 2, 0, Some(size))?;
        let u = match skip {
            Some(skip) => self.concat_channels(&u, skip)?,
            None => u,
        };
        let h = self.conv_transpose2d(&format!("{name}.conv2d"), &u, 1, 1, None)?;
        let h = self.batchnorm_lrelu(&format!("{name}.bn2d"), &h, true)?;
        let y = self.conv_transpose2d(&format!("{name}.conv1d"), &h, 1, 1, None)?;
        match skip {
            Some(_) => self.batchnorm_lrelu(&format!("{name}.bn1d"), &y, true),
            None => Ok(y),
        }
    }

    fn output(&self, shape: Vec<usize>) -> Result<DeviceTensor, DeviceError> {
        let data = self.device.alloc(shape.iter().product())?;
        Ok(DeviceTensor { shape, data })
    }

    /// Conv2d `name` (weight (c_out, c_in, k, k)) with bias.
    fn conv2d(
        &self,
        name: &str,
        x: &DeviceTensor,
        stride: usize,
        pad: usize,
    ) -> Result<DeviceTensor, DeviceError> {
        let weight = self.param(&format!("{name}.weight"))?;
        let bias = self.param(&format!("{name}.bias"))?;
        let (n, c, h, w) = x.dims4();
        let (c_out, k) = match weight.shape[..] {
            [c_out, c_in, k, _] if c_in == c => (c_out, k),
            ref shape => return Err(invalid(format!("{name}: weight {shape:?}, input {c} ch"))),
        };
        let g = DeviceConvGeometry::conv2d(n, c, h, w, c_out, k, stride, pad);
        let mut ws = ConvWorkspace::new(self.device, &g)?;
        let mut out = self.output(vec![n, c_out, g.h_out, g.w_out])?;
        conv2d_forward_launch(
            self.device,
            &mut ws,
            &mut out.data,
            &x.data,
            &weight.data,
            Some(&bias.data),
            &g,
        )?;
        Ok(out)
    }

    /// ConvTranspose2d `name` (weight (c_in, c_out, k, k)) with bias, reaching `output_size`
    /// through the output padding as PyTorch does.
    fn conv_transpose2d(
        &self,
        name: &str,
        x: &DeviceTensor,
        stride: usize,
        pad: usize,
        output_size: Option<(usize, usize)>,
    ) -> Result<DeviceTensor, DeviceError> {
        let weight = self.param(&format!("{name}.weight"))?;
        let bias = self.param(&format!("{name}.bias"))?;
        let (n, c, h, w) = x.dims4();
        let (c_out, k) = match weight.shape[..] {
            [c_in, c_out, k, _] if c_in == c => (c_out, k),
            ref shape => return Err(invalid(format!("{name}: weight {shape:?}, input {c} ch"))),
        };
        let g =
            conv_transpose2d_adjoint_geometry_for(n, c, h, w, c_out, k, stride, pad, output_size)
                .map_err(|e| invalid(format!("{name}: {e}")))?;
        let mut ws = ConvWorkspace::new(self.device, &g)?;
        // The adjoint convolution's input is the transposed convolution's output.
        let mut out = self.output(vec![n, c_out, g.h, g.w])?;
        conv_transpose2d_forward_launch(
            self.device,
            &mut ws,
            &mut out.data,
            &x.data,
            &weight.data,
            Some(&bias.data),
            &g,
        )?;
        Ok(out)
    }

    /// BatchNorm2d `name` in evaluation mode, followed by the leaky ReLU when `lrelu` (fused in
    /// one launch).
    fn batchnorm_lrelu(
        &self,
        name: &str,
        x: &DeviceTensor,
        lrelu: bool,
    ) -> Result<DeviceTensor, DeviceError> {
        let [weight, bias, mean, var] = ["weight", "bias", "running_mean", "running_var"]
            .map(|field| self.param(&format!("{name}.{field}")));
        let (n, c, h, w) = x.dims4();
        let mut ws = BatchNormWorkspace::new(self.device, n, c, h * w)?;
        let mut out = self.output(x.shape.clone())?;
        batchnorm_forward_eval_launch(
            self.device,
            &mut ws,
            &mut out.data,
            &x.data,
            &weight?.data,
            &bias?.data,
            &mean?.data,
            &var?.data,
            BATCHNORM_EPS,
            lrelu.then_some(LEAKY_RELU_SLOPE),
        )?;
        Ok(out)
    }

    fn concat_channels(
        &self,
        a: &DeviceTensor,
        b: &DeviceTensor,
    ) -> Result<DeviceTensor, DeviceError> {
        let (n, c_a, h, w) = a.dims4();
        let (n_b, c_b, h_b, w_b) = b.dims4();
        if (n, h, w) != (n_b, h_b, w_b) {
            return Err(invalid(format!(
                "concat of {:?} and {:?}",
                a.shape, b.shape
            )));
        }
        let mut out = self.output(vec![n, c_a + c_b, h, w])?;
        concat_channels_forward_launch(
            self.device,
            &mut out.data,
            &a.data,
            &b.data,
            n,
            c_a,
            c_b,
            h * w,
        )?;
        Ok(out)
    }

    fn sigmoid(&self, x: &DeviceTensor) -> Result<DeviceTensor, DeviceError> {
        let mut out = self.output(x.shape.clone())?;
        sigmoid_forward_launch(self.device, &mut out.data, &x.data)?;
        Ok(out)
    }

    /// The bidirectional LSTM `name`: (batch, frames, input) → (batch, frames, 2·hidden).
    fn lstm(&self, name: &str, x: &DeviceTensor) -> Result<DeviceTensor, DeviceError> {
        let (batch, frames, input_size) = match x.shape[..] {
            [b, t, c] => (b, t, c),
            ref shape => return Err(invalid(format!("{name}: input {shape:?}"))),
        };
        let direction = |suffix: &str| -> Result<DeviceLstmWeights<'_>, DeviceError> {
            Ok(DeviceLstmWeights {
                w_ih: &self.param(&format!("{name}.weight_ih_l0{suffix}"))?.data,
                w_hh: &self.param(&format!("{name}.weight_hh_l0{suffix}"))?.data,
                b_ih: &self.param(&format!("{name}.bias_ih_l0{suffix}"))?.data,
                b_hh: &self.param(&format!("{name}.bias_hh_l0{suffix}"))?.data,
            })
        };
        let weights = [direction("")?, direction("_reverse")?];
        let hidden_size = match self.param(&format!("{name}.weight_hh_l0"))?.shape[..] {
            [_, hidden_size] => hidden_size,
            ref shape => return Err(invalid(format!("{name}: weight_hh {shape:?}"))),
        };
        let shape = LstmShape {
            batch,
            frames,
            input_size,
            hidden_size,
        };
        let mut ws = LstmWorkspace::new(self.device, shape)?;
        let rows = batch * frames;
        let mut out = self.output(vec![batch, frames, 2 * hidden_size])?;
        let mut gates = self.device.alloc(2 * rows * 4 * hidden_size)?;
        let mut cells = self.device.alloc(2 * rows * hidden_size)?;
        lstm_forward_launch(
            self.device,
            &mut ws,
            &mut out.data,
            &mut gates,
            &mut cells,
            &x.data,
            weights,
        )?;
        Ok(out)
    }

    /// Linear `name` on the last axis.
    fn linear(&self, name: &str, x: &DeviceTensor) -> Result<DeviceTensor, DeviceError> {
        let weight = self.param(&format!("{name}.weight"))?;
        let bias = self.param(&format!("{name}.bias"))?;
        let in_features = *x.shape.last().unwrap_or(&0);
        let out_features = match weight.shape[..] {
            [o, i] if i == in_features => o,
            ref shape => {
                return Err(invalid(format!(
                    "{name}: weight {shape:?}, input {in_features}"
                )))
            }
        };
        let rows = x.data.len() / in_features.max(1);
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = out_features;
        let mut out = self.output(shape)?;
        linear_forward_launch(
            self.device,
            &mut out.data,
            &x.data,
            &weight.data,
            Some(&bias.data),
            rows,
            in_features,
            out_features,
        )?;
        Ok(out)
    }
}

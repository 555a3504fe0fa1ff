//! The U-net's encoder (PROTOCOL.md, "Network"): four blocks that halve time and frequency,
//! and three side convolutions whose outputs the decoder concatenates back in.

use crate::device::DeviceError;

use super::backend::{Backend, Cpu};
use super::layers::{conv_batchnorm_leaky_relu, BatchNorm2d, Conv2d};
use super::tensor::{Mode, StateEntry, Tensor};

type Result<T> = std::result::Result<T, DeviceError>;

/// `block(in, out)`: `a = lrelu(bn1(conv1(x)))`, `b = lrelu(bn2(conv2(a))) + skip(x)`,
/// `y = ds(b)`; remembers `b`'s (h, w) for the decoder's `output_size`.
pub struct EncoderBlock<B: Backend = Cpu> {
    conv1: Conv2d<B>,
    bn1: BatchNorm2d<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm2d<B>,
    skip: Conv2d<B>,
    ds: Conv2d<B>,
    remembered_size: (usize, usize),
}

impl<B: Backend> EncoderBlock<B> {
    pub fn new(backend: &mut B, name: &str, c_in: usize, c_out: usize, seed: u64) -> Result<Self> {
        let conv1 = Conv2d::new(
            backend,
            &format!("{name}.conv1"),
            c_in,
            c_out,
            3,
            1,
            1,
            seed,
        )?;
        let bn1 = BatchNorm2d::new(backend, &format!("{name}.bn1"), c_out)?;
        let conv2 = Conv2d::new(
            backend,
            &format!("{name}.conv2"),
            c_out,
            c_out,
            3,
            1,
            1,
            seed,
        )?;
        let bn2 = BatchNorm2d::new(backend, &format!("{name}.bn2"), c_out)?;
        Ok(Self {
            conv1,
            bn1,
            conv2,
            bn2,
            skip: Conv2d::new(backend, &format!("{name}.skip"), c_in, c_out, 1, 1, 0, seed)?,
            ds: Conv2d::new(backend, &format!("{name}.ds"), c_out, c_out, 2, 2, 0, seed)?,
            remembered_size: (0, 0),
        })
    }

    /// x (n, c_in, h, w) → y (n, c_out, h/2, w/2).
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Tensor<B::Storage>,
        mode: Mode,
    ) -> Result<Tensor<B::Storage>> {
        let (conv1, bn1) = (&mut self.conv1, &mut self.bn1);
        let a = conv_batchnorm_leaky_relu(backend, conv1, bn1, x, None, mode)?;
        // b = lrelu(bn2(conv2(a))) + skip(x), summed into the skip's output.
        let skip = self.skip.forward(backend, x, mode)?;
        let (conv2, bn2) = (&mut self.conv2, &mut self.bn2);
        let b = conv_batchnorm_leaky_relu(backend, conv2, bn2, &a, Some(skip), mode)?;
        let (_, _, h, w) = b.dims4();
        self.remembered_size = (h, w);
        self.ds.forward(backend, &b, mode)
    }

    /// The (h, w) of `b` in the last forward pass: the decoder's `output_size`.
    pub fn remembered_size(&self) -> (usize, usize) {
        self.remembered_size
    }

    /// Adds the gradient of the block's input into `d_x` (skipped when `None`, for the
    /// spectrogram), given the gradient `d_y` of its output.
    pub fn backward_into(
        &mut self,
        backend: &mut B,
        d_y: &B::Storage,
        mut d_x: Option<&mut B::Storage>,
    ) -> Result<()> {
        let d_b = self.ds.backward(backend, d_y)?;
        // b = lrelu(…) + skip(x): the gradient of b flows into both branches.
        let d = self.bn2.backward(backend, &d_b)?;
        let d_a = self.conv2.backward(backend, &d)?;
        let d = self.bn1.backward(backend, &d_a)?;
        self.conv1.backward_into(backend, &d, d_x.as_deref_mut())?;
        self.skip.backward_into(backend, &d_b, d_x)
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.conv1.entries(out);
        self.bn1.entries(out);
        self.conv2.entries(out);
        self.bn2.entries(out);
        self.skip.entries(out);
        self.ds.entries(out);
    }
}

/// What the encoder hands the decoder.
pub struct EncoderOutput<S> {
    /// The deepest features, x4 (n, 128, h/16, w/16).
    pub x4: Tensor<S>,
    /// Each block's remembered size, block1 first.
    pub sizes: [(usize, usize); 4],
    /// c1 = conv1(x3) (64 ch), c2 = conv2(x2) (32 ch), c3 = conv3(x1) (16 ch).
    pub skips: [Tensor<S>; 3],
}

pub struct Encoder<B: Backend = Cpu> {
    block1: EncoderBlock<B>,
    block2: EncoderBlock<B>,
    block3: EncoderBlock<B>,
    block4: EncoderBlock<B>,
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    conv3: Conv2d<B>,
    /// Lengths of x1, x2, x3 in the last forward: the gradient buffers of the backward.
    hidden_lens: [usize; 3],
}

impl<B: Backend> Encoder<B> {
    pub fn new(backend: &mut B, name: &str, seed: u64) -> Result<Self> {
        let mut block = |i: usize, c_in: usize, c_out: usize| {
            EncoderBlock::new(backend, &format!("{name}.block{i}"), c_in, c_out, seed)
        };
        let (block1, block2, block3, block4) = (
            block(1, 1, 16)?,
            block(2, 16, 32)?,
            block(3, 32, 64)?,
            block(4, 64, 128)?,
        );
        let mut side = |i: usize, c: usize| {
            Conv2d::new(backend, &format!("{name}.conv{i}"), c, c, 3, 1, 1, seed)
        };
        Ok(Self {
            block1,
            block2,
            block3,
            block4,
            conv1: side(1, 64)?,
            conv2: side(2, 32)?,
            conv3: side(3, 16)?,
            hidden_lens: [0; 3],
        })
    }

    /// x (n, 1, frames, 176) → x4, the remembered sizes and the side outputs.
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Tensor<B::Storage>,
        mode: Mode,
    ) -> Result<EncoderOutput<B::Storage>> {
        let x1 = self.block1.forward(backend, x, mode)?;
        let x2 = self.block2.forward(backend, &x1, mode)?;
        let x3 = self.block3.forward(backend, &x2, mode)?;
        let x4 = self.block4.forward(backend, &x3, mode)?;
        let c1 = self.conv1.forward(backend, &x3, mode)?;
        let c2 = self.conv2.forward(backend, &x2, mode)?;
        let c3 = self.conv3.forward(backend, &x1, mode)?;
        self.hidden_lens = [x1.len(), x2.len(), x3.len()];
        Ok(EncoderOutput {
            x4,
            sizes: [
                self.block1.remembered_size(),
                self.block2.remembered_size(),
                self.block3.remembered_size(),
                self.block4.remembered_size(),
            ],
            skips: [c1, c2, c3],
        })
    }

    /// Backward from the gradients of x4 and of c1, c2, c3; the spectrogram needs none.
    pub fn backward(
        &mut self,
        backend: &mut B,
        d_x4: &B::Storage,
        d_skips: [&B::Storage; 3],
    ) -> Result<()> {
        let [d_c1, d_c2, d_c3] = d_skips;
        let [len1, len2, len3] = self.hidden_lens;
        let mut d_x3 = backend.zeros(len3)?;
        self.block4.backward_into(backend, d_x4, Some(&mut d_x3))?;
        self.conv1.backward_into(backend, d_c1, Some(&mut d_x3))?;
        let mut d_x2 = backend.zeros(len2)?;
        self.block3.backward_into(backend, &d_x3, Some(&mut d_x2))?;
        self.conv2.backward_into(backend, d_c2, Some(&mut d_x2))?;
        let mut d_x1 = backend.zeros(len1)?;
        self.block2.backward_into(backend, &d_x2, Some(&mut d_x1))?;
        self.conv3.backward_into(backend, d_c3, Some(&mut d_x1))?;
        self.block1.backward_into(backend, &d_x1, None)
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.block1.entries(out);
        self.block2.entries(out);
        self.block3.entries(out);
        self.block4.entries(out);
        self.conv1.entries(out);
        self.conv2.entries(out);
        self.conv3.entries(out);
    }
}

//! The U-net's decoder (PROTOCOL.md, "Network"): four blocks that upsample back to the sizes
//! the encoder remembered, so odd frame counts round-trip.

use crate::device::DeviceError;

use super::backend::{Backend, Cpu};
use super::layers::{conv_batchnorm_leaky_relu, BatchNorm2d, ConvTranspose2d};
use super::profile;
use super::tensor::{Mode, StateEntry, Tensor};

type Result<T> = std::result::Result<T, DeviceError>;

/// `d_block(in, out, last)`: `u = us(x, output_size)`, concatenated with the skip tensor unless
/// last; `h = lrelu(bn2d(conv2d(u)))`; `y = lrelu(bn1d(conv1d(h)))`, or `y = conv1d(h)` in the
/// last block. All convolutions are transposed ones, as in the original code.
pub struct DecoderBlock<B: Backend = Cpu> {
    conv2d: ConvTranspose2d<B>,
    bn2d: BatchNorm2d<B>,
    conv1d: ConvTranspose2d<B>,
    /// The second BN (and its activation), absent in the last block.
    bn1d: Option<BatchNorm2d<B>>,
    us: ConvTranspose2d<B>,
    upsampled_channels: usize,
    skip_channels: usize,
    /// (n, h·w) of the upsampled tensor in the last forward.
    upsampled_dims: (usize, usize),
}

impl<B: Backend> DecoderBlock<B> {
    pub fn new(
        backend: &mut B,
        name: &str,
        c_in: usize,
        c_out: usize,
        last: bool,
        seed: u64,
    ) -> Result<Self> {
        let upsampled_channels = if last { c_in } else { c_in - c_out };
        let conv2d = ConvTranspose2d::new(
            backend,
            &format!("{name}.conv2d"),
            c_in,
            c_in / 2,
            3,
            1,
            1,
            seed,
        )?;
        let bn2d = BatchNorm2d::new(backend, &format!("{name}.bn2d"), c_in / 2)?;
        let conv1d = ConvTranspose2d::new(
            backend,
            &format!("{name}.conv1d"),
            c_in / 2,
            c_out,
            3,
            1,
            1,
            seed,
        )?;
        let bn1d = match last {
            false => Some(BatchNorm2d::new(backend, &format!("{name}.bn1d"), c_out)?),
            true => None,
        };
        let us = ConvTranspose2d::new(
            backend,
            &format!("{name}.us"),
            upsampled_channels,
            upsampled_channels,
            2,
            2,
            0,
            seed,
        )?;
        Ok(Self {
            conv2d,
            bn2d,
            conv1d,
            bn1d,
            us,
            upsampled_channels,
            skip_channels: c_in - upsampled_channels,
            upsampled_dims: (0, 0),
        })
    }

    /// x (n, c, h, w) → (n, c_out, size.0, size.1).
    pub fn forward(
        &mut self,
        backend: &mut B,
        x: &Tensor<B::Storage>,
        size: (usize, usize),
        skip: Option<&Tensor<B::Storage>>,
        mode: Mode,
    ) -> Result<Tensor<B::Storage>> {
        let u = self.us.forward(backend, x, Some(size), mode)?;
        let (n, _, h, w) = u.dims4();
        self.upsampled_dims = (n, h * w);
        let u = match skip {
            Some(skip) => concat_channels(backend, &u, skip)?,
            None => u,
        };
        let h =
            conv_batchnorm_leaky_relu(backend, &mut self.conv2d, &mut self.bn2d, &u, None, mode)?;
        match &mut self.bn1d {
            Some(bn) => conv_batchnorm_leaky_relu(backend, &mut self.conv1d, bn, &h, None, mode),
            None => self.conv1d.forward(backend, &h, None, mode),
        }
    }

    /// Returns the gradients of x and of the skip tensor (none in the last block).
    pub fn backward(
        &mut self,
        backend: &mut B,
        d_y: &B::Storage,
    ) -> Result<(B::Storage, Option<B::Storage>)> {
        let d_bn1d;
        let d = match &mut self.bn1d {
            Some(bn) => {
                d_bn1d = bn.backward(backend, d_y)?;
                &d_bn1d
            }
            None => d_y,
        };
        let d_h = self.conv1d.backward(backend, d)?;
        let d = self.bn2d.backward(backend, &d_h)?;
        let d_u = self.conv2d.backward(backend, &d)?;
        if self.skip_channels == 0 {
            return Ok((self.us.backward(backend, &d_u)?, None));
        }
        let (n, hw) = self.upsampled_dims;
        let timer = profile::scope("concat", "decoder concats", "backward");
        let (d_up, d_skip) = backend.concat_channels_backward(
            &d_u,
            n,
            self.upsampled_channels,
            self.skip_channels,
            hw,
        )?;
        drop(timer);
        Ok((self.us.backward(backend, &d_up)?, Some(d_skip)))
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.conv2d.entries(out);
        self.bn2d.entries(out);
        self.conv1d.entries(out);
        if let Some(bn) = &mut self.bn1d {
            bn.entries(out);
        }
        self.us.entries(out);
    }
}

/// Concatenates `b` after `a` on the channel axis (both (n, c, h, w), same n, h, w).
fn concat_channels<B: Backend>(
    backend: &mut B,
    a: &Tensor<B::Storage>,
    b: &Tensor<B::Storage>,
) -> Result<Tensor<B::Storage>> {
    let _timer = profile::scope("concat", "decoder concats", "forward");
    let (n, c_a, h, w) = a.dims4();
    let (n_b, c_b, h_b, w_b) = b.dims4();
    assert_eq!(
        (n, h, w),
        (n_b, h_b, w_b),
        "concat: shapes {:?} and {:?}",
        a.shape(),
        b.shape()
    );
    let out = backend.concat_channels_forward(a.storage(), b.storage(), n, c_a, c_b, h * w)?;
    Ok(Tensor::from_storage(vec![n, c_a + c_b, h, w], out))
}

pub struct Decoder<B: Backend = Cpu> {
    d_block1: DecoderBlock<B>,
    d_block2: DecoderBlock<B>,
    d_block3: DecoderBlock<B>,
    d_block4: DecoderBlock<B>,
}

impl<B: Backend> Decoder<B> {
    pub fn new(backend: &mut B, name: &str, seed: u64) -> Result<Self> {
        let mut block = |i: usize, c_in: usize, c_out: usize, last: bool| {
            DecoderBlock::new(
                backend,
                &format!("{name}.d_block{i}"),
                c_in,
                c_out,
                last,
                seed,
            )
        };
        Ok(Self {
            d_block1: block(1, 192, 64, false)?,
            d_block2: block(2, 96, 32, false)?,
            d_block3: block(3, 48, 16, false)?,
            d_block4: block(4, 16, 1, true)?,
        })
    }

    /// x4 → (n, 1, frames, 176), each block upsampling to the matching encoder block's size
    /// and taking c1, c2, c3 as its skip tensors.
    pub fn forward(
        &mut self,
        backend: &mut B,
        x4: &Tensor<B::Storage>,
        sizes: [(usize, usize); 4],
        skips: &[Tensor<B::Storage>; 3],
        mode: Mode,
    ) -> Result<Tensor<B::Storage>> {
        let [c1, c2, c3] = skips;
        let x = self
            .d_block1
            .forward(backend, x4, sizes[3], Some(c1), mode)?;
        let x = self
            .d_block2
            .forward(backend, &x, sizes[2], Some(c2), mode)?;
        let x = self
            .d_block3
            .forward(backend, &x, sizes[1], Some(c3), mode)?;
        self.d_block4.forward(backend, &x, sizes[0], None, mode)
    }

    /// Returns the gradients of x4 and of c1, c2, c3.
    pub fn backward(
        &mut self,
        backend: &mut B,
        d_out: &B::Storage,
    ) -> Result<(B::Storage, [B::Storage; 3])> {
        let skip = |d: Option<B::Storage>| d.expect("a block with a skip tensor");
        let (d_x, _) = self.d_block4.backward(backend, d_out)?;
        let (d_x, d_c3) = self.d_block3.backward(backend, &d_x)?;
        let (d_x, d_c2) = self.d_block2.backward(backend, &d_x)?;
        let (d_x4, d_c1) = self.d_block1.backward(backend, &d_x)?;
        Ok((d_x4, [skip(d_c1), skip(d_c2), skip(d_c3)]))
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a, B>>) {
        self.d_block1.entries(out);
        self.d_block2.entries(out);
        self.d_block3.entries(out);
        self.d_block4.entries(out);
    }
}

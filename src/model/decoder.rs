//! The U-net's decoder (PROTOCOL.md, "Network"): four blocks that upsample back to the sizes
//! the encoder remembered, so odd frame counts round-trip.

use crate::ops::concat;

use super::layers::{BatchNorm2d, ConvTranspose2d, LeakyRelu};
use super::profile;
use super::storage::Storage;
use super::tensor::{Mode, StateEntry, Tensor};

/// `d_block(in, out, last)`: `u = us(x, output_size)`, concatenated with the skip tensor unless
/// last; `h = lrelu(bn2d(conv2d(u)))`; `y = lrelu(bn1d(conv1d(h)))`, or `y = conv1d(h)` in the
/// last block. All convolutions are transposed ones, as in the original code.
pub struct DecoderBlock {
    conv2d: ConvTranspose2d,
    bn2d: BatchNorm2d,
    act2d: LeakyRelu,
    conv1d: ConvTranspose2d,
    /// The second BN and activation, absent in the last block.
    bn1d: Option<(BatchNorm2d, LeakyRelu)>,
    us: ConvTranspose2d,
    upsampled_channels: usize,
    skip_channels: usize,
    /// (n, h·w) of the upsampled tensor in the last forward.
    upsampled_dims: (usize, usize),
}

impl DecoderBlock {
    pub fn new(name: &str, c_in: usize, c_out: usize, last: bool, seed: u64) -> Self {
        let upsampled_channels = if last { c_in } else { c_in - c_out };
        Self {
            conv2d: ConvTranspose2d::new(&format!("{name}.conv2d"), c_in, c_in / 2, 3, 1, 1, seed),
            bn2d: BatchNorm2d::new(&format!("{name}.bn2d"), c_in / 2),
            act2d: LeakyRelu::new(format!("{name}.act2d")),
            conv1d: ConvTranspose2d::new(&format!("{name}.conv1d"), c_in / 2, c_out, 3, 1, 1, seed),
            bn1d: (!last).then(|| {
                (
                    BatchNorm2d::new(&format!("{name}.bn1d"), c_out),
                    LeakyRelu::new(format!("{name}.act1d")),
                )
            }),
            us: ConvTranspose2d::new(
                &format!("{name}.us"),
                upsampled_channels,
                upsampled_channels,
                2,
                2,
                0,
                seed,
            ),
            upsampled_channels,
            skip_channels: c_in - upsampled_channels,
            upsampled_dims: (0, 0),
        }
    }

    /// x (n, c, h, w) → (n, c_out, size.0, size.1).
    pub fn forward(
        &mut self,
        x: &Tensor,
        size: (usize, usize),
        skip: Option<&Tensor>,
        mode: Mode,
    ) -> Tensor {
        let u = self.us.forward(x, Some(size), mode);
        let (n, _, h, w) = u.dims4();
        self.upsampled_dims = (n, h * w);
        let u = match skip {
            Some(skip) => concat_channels(&u, skip),
            None => u,
        };
        let h = self.conv2d.forward(&u, None, mode);
        let h = self.bn2d.forward_leaky(&h, &mut self.act2d, mode);
        let y = self.conv1d.forward(&h, None, mode);
        match &mut self.bn1d {
            Some((bn, act)) => bn.forward_leaky(&y, act, mode),
            None => y,
        }
    }

    /// Returns the gradients of x and of the skip tensor (empty in the last block).
    pub fn backward(&mut self, d_y: &[f32]) -> (Storage, Storage) {
        let d = match &mut self.bn1d {
            Some((bn, act)) => bn.backward_leaky(act, d_y),
            None => Storage::from(d_y.to_vec()),
        };
        let d_h = self.conv1d.backward(&d);
        let d = self.bn2d.backward_leaky(&mut self.act2d, &d_h);
        let d_u = self.conv2d.backward(&d);
        if self.skip_channels == 0 {
            return (self.us.backward(&d_u), Storage::default());
        }
        let (n, hw) = self.upsampled_dims;
        let timer = profile::scope("concat", "decoder concats", "backward");
        let mut d_up = Storage::zeroed(n * self.upsampled_channels * hw);
        let mut d_skip = Storage::zeroed(n * self.skip_channels * hw);
        concat::concat_channels_backward(
            Some(&mut d_up),
            Some(&mut d_skip),
            &d_u,
            n,
            self.upsampled_channels,
            self.skip_channels,
            hw,
        );
        drop(timer);
        (self.us.backward(&d_up), d_skip)
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        self.conv2d.entries(out);
        self.bn2d.entries(out);
        self.conv1d.entries(out);
        if let Some((bn, _)) = &mut self.bn1d {
            bn.entries(out);
        }
        self.us.entries(out);
    }
}

/// Concatenates `b` after `a` on the channel axis (both (n, c, h, w), same n, h, w).
fn concat_channels(a: &Tensor, b: &Tensor) -> Tensor {
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
    let mut out = Storage::for_overwrite(n * (c_a + c_b) * h * w);
    concat::concat_channels_forward(&mut out, a.data(), b.data(), n, c_a, c_b, h * w);
    Tensor::new(vec![n, c_a + c_b, h, w], out)
}

pub struct Decoder {
    d_block1: DecoderBlock,
    d_block2: DecoderBlock,
    d_block3: DecoderBlock,
    d_block4: DecoderBlock,
}

impl Decoder {
    pub fn new(name: &str, seed: u64) -> Self {
        Self {
            d_block1: DecoderBlock::new(&format!("{name}.d_block1"), 192, 64, false, seed),
            d_block2: DecoderBlock::new(&format!("{name}.d_block2"), 96, 32, false, seed),
            d_block3: DecoderBlock::new(&format!("{name}.d_block3"), 48, 16, false, seed),
            d_block4: DecoderBlock::new(&format!("{name}.d_block4"), 16, 1, true, seed),
        }
    }

    /// x4 → (n, 1, frames, 176), each block upsampling to the matching encoder block's size
    /// and taking c1, c2, c3 as its skip tensors.
    pub fn forward(
        &mut self,
        x4: &Tensor,
        sizes: [(usize, usize); 4],
        skips: &[Tensor; 3],
        mode: Mode,
    ) -> Tensor {
        let [c1, c2, c3] = skips;
        let x = self.d_block1.forward(x4, sizes[3], Some(c1), mode);
        let x = self.d_block2.forward(&x, sizes[2], Some(c2), mode);
        let x = self.d_block3.forward(&x, sizes[1], Some(c3), mode);
        self.d_block4.forward(&x, sizes[0], None, mode)
    }

    /// Returns the gradients of x4 and of c1, c2, c3.
    pub fn backward(&mut self, d_out: &[f32]) -> (Storage, [Storage; 3]) {
        let (d_x, _) = self.d_block4.backward(d_out);
        let (d_x, d_c3) = self.d_block3.backward(&d_x);
        let (d_x, d_c2) = self.d_block2.backward(&d_x);
        let (d_x4, d_c1) = self.d_block1.backward(&d_x);
        (d_x4, [d_c1, d_c2, d_c3])
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        self.d_block1.entries(out);
        self.d_block2.entries(out);
        self.d_block3.entries(out);
        self.d_block4.entries(out);
    }
}

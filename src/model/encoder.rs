//! The U-net's encoder (PROTOCOL.md, "Network"): four blocks that halve time and frequency,
//! and three side convolutions whose outputs the decoder concatenates back in.

use rayon::prelude::*;

use super::layers::{BatchNorm2d, Conv2d, LeakyRelu};
use super::profile;
use super::storage::Storage;
use super::tensor::{Mode, StateEntry, Tensor};

/// `block(in, out)`: `a = lrelu(bn1(conv1(x)))`, `b = lrelu(bn2(conv2(a))) + skip(x)`,
/// `y = ds(b)`; remembers `b`'s (h, w) for the decoder's `output_size`.
pub struct EncoderBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    act1: LeakyRelu,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    act2: LeakyRelu,
    skip: Conv2d,
    ds: Conv2d,
    remembered_size: (usize, usize),
}

impl EncoderBlock {
    pub fn new(name: &str, c_in: usize, c_out: usize, seed: u64) -> Self {
        Self {
            conv1: Conv2d::new(&format!("{name}.conv1"), c_in, c_out, 3, 1, 1, seed),
            bn1: BatchNorm2d::new(&format!("{name}.bn1"), c_out),
            act1: LeakyRelu::new(format!("{name}.act1")),
            conv2: Conv2d::new(&format!("{name}.conv2"), c_out, c_out, 3, 1, 1, seed),
            bn2: BatchNorm2d::new(&format!("{name}.bn2"), c_out),
            act2: LeakyRelu::new(format!("{name}.act2")),
            skip: Conv2d::new(&format!("{name}.skip"), c_in, c_out, 1, 1, 0, seed),
            ds: Conv2d::new(&format!("{name}.ds"), c_out, c_out, 2, 2, 0, seed),
            remembered_size: (0, 0),
        }
    }

    /// x (n, c_in, h, w) → y (n, c_out, h/2, w/2).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Tensor {
        let a = self.conv1.forward(x, mode);
        let a = self.bn1.forward_leaky(&a, &mut self.act1, mode);
        let b = self.conv2.forward(&a, mode);
        let b = self.bn2.forward_leaky(&b, &mut self.act2, mode);
        // b = act2(…) + skip(x), summed into the skip's output: act2 keeps its own for backward.
        let b = add(self.skip.forward(x, mode), &b);
        let (_, _, h, w) = b.dims4();
        self.remembered_size = (h, w);
        self.ds.forward(&b, mode)
    }

    /// The (h, w) of `b` in the last forward pass: the decoder's `output_size`.
    pub fn remembered_size(&self) -> (usize, usize) {
        self.remembered_size
    }

    /// Adds the gradient of the block's input into `d_x` (skipped when `None`, for the
    /// spectrogram), given the gradient `d_y` of its output.
    pub fn backward_into(&mut self, d_y: &[f32], mut d_x: Option<&mut [f32]>) {
        let d_b = self.ds.backward(d_y);
        // b = act2(…) + skip(x): the gradient of b flows into both branches.
        let d = self.bn2.backward_leaky(&mut self.act2, &d_b);
        let d_a = self.conv2.backward(&d);
        let d = self.bn1.backward_leaky(&mut self.act1, &d_a);
        self.conv1.backward_into(&d, d_x.as_deref_mut());
        self.skip.backward_into(&d_b, d_x);
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        self.conv1.entries(out);
        self.bn1.entries(out);
        self.conv2.entries(out);
        self.bn2.entries(out);
        self.skip.entries(out);
        self.ds.entries(out);
    }
}

/// `a + b`, reusing `a`'s storage when nothing else holds it.
fn add(a: Tensor, b: &Tensor) -> Tensor {
    let _timer = profile::scope("add", "encoder skip sums", "forward");
    let shape = a.shape().to_vec();
    let mut sum = a.into_storage();
    // In parallel blocks: one thread leaves the other core idle through a memory-bound pass.
    const BLOCK: usize = 1 << 14;
    sum.par_chunks_mut(BLOCK)
        .zip(b.data().par_chunks(BLOCK))
        .for_each(|(s, v)| s.iter_mut().zip(v).for_each(|(s, &v)| *s += v));
    Tensor::new(shape, sum)
}

/// What the encoder hands the decoder.
pub struct EncoderOutput {
    /// The deepest features, x4 (n, 128, h/16, w/16).
    pub x4: Tensor,
    /// Each block's remembered size, block1 first.
    pub sizes: [(usize, usize); 4],
    /// c1 = conv1(x3) (64 ch), c2 = conv2(x2) (32 ch), c3 = conv3(x1) (16 ch).
    pub skips: [Tensor; 3],
}

pub struct Encoder {
    block1: EncoderBlock,
    block2: EncoderBlock,
    block3: EncoderBlock,
    block4: EncoderBlock,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    /// Lengths of x1, x2, x3 in the last forward: the gradient buffers of the backward.
    hidden_lens: [usize; 3],
}

impl Encoder {
    pub fn new(name: &str, seed: u64) -> Self {
        Self {
            block1: EncoderBlock::new(&format!("{name}.block1"), 1, 16, seed),
            block2: EncoderBlock::new(&format!("{name}.block2"), 16, 32, seed),
            block3: EncoderBlock::new(&format!("{name}.block3"), 32, 64, seed),
            block4: EncoderBlock::new(&format!("{name}.block4"), 64, 128, seed),
            conv1: Conv2d::new(&format!("{name}.conv1"), 64, 64, 3, 1, 1, seed),
            conv2: Conv2d::new(&format!("{name}.conv2"), 32, 32, 3, 1, 1, seed),
            conv3: Conv2d::new(&format!("{name}.conv3"), 16, 16, 3, 1, 1, seed),
            hidden_lens: [0; 3],
        }
    }

    /// x (n, 1, frames, 176) → x4, the remembered sizes and the side outputs.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> EncoderOutput {
        let x1 = self.block1.forward(x, mode);
        let x2 = self.block2.forward(&x1, mode);
        let x3 = self.block3.forward(&x2, mode);
        let x4 = self.block4.forward(&x3, mode);
        let c1 = self.conv1.forward(&x3, mode);
        let c2 = self.conv2.forward(&x2, mode);
        let c3 = self.conv3.forward(&x1, mode);
        self.hidden_lens = [x1.len(), x2.len(), x3.len()];
        EncoderOutput {
            x4,
            sizes: [
                self.block1.remembered_size(),
                self.block2.remembered_size(),
                self.block3.remembered_size(),
                self.block4.remembered_size(),
            ],
            skips: [c1, c2, c3],
        }
    }

    /// Backward from the gradients of x4 and of c1, c2, c3; the spectrogram needs none.
    pub fn backward(&mut self, d_x4: &[f32], d_skips: [&[f32]; 3]) {
        let [d_c1, d_c2, d_c3] = d_skips;
        let [len1, len2, len3] = self.hidden_lens;
        let mut d_x3 = Storage::zeroed(len3);
        self.block4.backward_into(d_x4, Some(&mut d_x3));
        self.conv1.backward_into(d_c1, Some(&mut d_x3));
        let mut d_x2 = Storage::zeroed(len2);
        self.block3.backward_into(&d_x3, Some(&mut d_x2));
        self.conv2.backward_into(d_c2, Some(&mut d_x2));
        let mut d_x1 = Storage::zeroed(len1);
        self.block2.backward_into(&d_x2, Some(&mut d_x1));
        self.conv3.backward_into(d_c3, Some(&mut d_x1));
        self.block1.backward_into(&d_x1, None);
    }

    pub fn entries<'a>(&'a mut self, out: &mut Vec<StateEntry<'a>>) {
        self.block1.entries(out);
        self.block2.entries(out);
        self.block3.entries(out);
        self.block4.entries(out);
        self.conv1.entries(out);
        self.conv2.entries(out);
        self.conv3.entries(out);
    }
}

//! The direct convolution kernels exist in AVX-512, AVX2 and portable versions, chosen at run
//! time; this checks the narrower ones against the reference on the CPU at hand (a variant the
//! CPU lacks is skipped by the kernels themselves, which then run the widest available).

mod op_check;

use mtosi::ops::conv2d::*;
use mtosi::ops::conv_transpose2d::*;
use op_check::{assert_close, seed, Rng};

#[test]
fn direct_kernel_variants_match_reference() {
    let mut rng = Rng::new(seed("direct_kernel_variants_match_reference"));
    // Low-channel 3×3 shapes that take the direct kernels (forward, flipped data gradient,
    // weight gradient); odd widths exercise the partial vectors.
    let (n, c_in, h, w, c_out) = (2, 5, 9, 37, 7);
    let inp = rng.vec_f32(n * c_in * h * w, -1.0, 1.0);
    let weight = rng.vec_f32(c_out * c_in * 9, -1.0, 1.0);
    let bias = rng.vec_f32(c_out, -1.0, 1.0);
    let d_out = rng.vec_f32(n * c_out * h * w, -1.0, 1.0);
    let mut expected = vec![0.0; d_out.len()];
    conv2d_forward_reference(
        &mut expected,
        &inp,
        &weight,
        Some(&bias),
        n,
        c_in,
        h,
        w,
        c_out,
        3,
        1,
        1,
    );
    let (mut ref_dx, mut ref_dw, mut ref_db) = (
        vec![0.0; inp.len()],
        vec![0.0; weight.len()],
        vec![0.0; c_out],
    );
    conv2d_backward_reference(
        Some(&mut ref_dx),
        &mut ref_dw,
        Some(&mut ref_db),
        &d_out,
        &inp,
        &weight,
        n,
        c_in,
        h,
        w,
        c_out,
        3,
        1,
        1,
    );
    let mut expected_t = vec![0.0; n * c_in * h * w];
    // ConvTranspose2d 7 → 5 channels, 3×3 pad 1: the decoder's small layers.
    conv_transpose2d_forward_reference(
        &mut expected_t,
        &d_out,
        &weight,
        None,
        n,
        c_out,
        h,
        w,
        c_in,
        3,
        1,
        1,
        0,
        0,
    );
    for variant in ["avx2", "portable", ""] {
        // The only test in this binary: nothing else reads the variable meanwhile.
        std::env::set_var(FORCE_ISA_VAR, variant);
        let mut out = vec![0.0; d_out.len()];
        conv2d_forward(
            &mut out,
            &inp,
            &weight,
            Some(&bias),
            n,
            c_in,
            h,
            w,
            c_out,
            3,
            1,
            1,
        );
        let (mut dx, mut dw, mut db) = (
            vec![0.0; inp.len()],
            vec![0.0; weight.len()],
            vec![0.0; c_out],
        );
        conv2d_backward(
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &d_out,
            &inp,
            &weight,
            n,
            c_in,
            h,
            w,
            c_out,
            3,
            1,
            1,
        );
        let mut out_t = vec![0.0; expected_t.len()];
        conv_transpose2d_forward(
            &mut out_t, &d_out, &weight, None, n, c_out, h, w, c_in, 3, 1, 1, 0, 0,
        );
        // Sums of ≤ 45 products (or ≤ 666 for the weight gradient) in another order.
        let tol = 1e-5;
        assert_close(&format!("{variant:?} out"), &out, &expected, tol);
        assert_close(&format!("{variant:?} d_inp"), &dx, &ref_dx, tol);
        assert_close(&format!("{variant:?} d_weight"), &dw, &ref_dw, tol);
        assert_close(&format!("{variant:?} d_bias"), &db, &ref_db, tol);
        assert_close(
            &format!("{variant:?} transposed out"),
            &out_t,
            &expected_t,
            tol,
        );
    }
    std::env::remove_var(FORCE_ISA_VAR);
}

//! The fast kernels against the plain Burn compositions (values and gradients) and GELU
//! against reference values computed here in f64.
//!
//! Tolerance: an element `a` matches its reference `b` when `|a − b| ≤ 1e-5·max(|b|, m)`
//! with `m` the largest `|b|` of the tensor divided by 10: 1e-5 relative, except that
//! elements more than ten times smaller than the tensor's largest are held to 1e-6 of that
//! largest (both sides compute in f32 in different orders; relative error on a near-zero
//! difference of two O(1) terms says nothing).

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use uerzoo::kernels::{self, plain};
use uerzoo::model::LnKind;

type Ad = Autodiff<Flex>;

fn dev() -> burn::backend::flex::FlexDevice {
    Default::default()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let m = want.iter().fold(0f32, |a, &b| a.max(b.abs())) / 10.0;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * b.abs().max(m);
        assert!(
            (a - b).abs() <= tol,
            "{what}[{i}]: got {a}, want {b} (tolerance {tol:e})"
        );
    }
}

fn random<B: Backend, const D: usize>(
    shape: [usize; D],
    scale: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::<B, D>::random(shape, Distribution::Normal(0.0, scale), device)
}

// ---------------------------------------------------------------------------------------
// Reference erf in f64
// ---------------------------------------------------------------------------------------

/// erf to ~1e-14: Taylor series below 2.5, continued fraction for erfc above.
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = e^{-a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + …)))))
        let mut f = a;
        for k in (1..200).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

#[test]
fn reference_erf_is_right() {
    // Known values (Abramowitz–Stegun table 7.1 / mpmath).
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
    ] {
        assert!(
            (erf64(x) - want).abs() < 1e-13,
            "erf({x}) = {} vs {want}",
            erf64(x)
        );
    }
}

fn grid() -> Vec<f32> {
    (-10_000..=10_000).map(|i| i as f32 * 1e-3).collect()
}

#[test]
fn gelu_erf_within_1e6_of_exact() {
    let xs = grid();
    let x = Tensor::<Flex, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev());
    let got = values(kernels::gelu(x));
    let mut worst = 0f64;
    for (&x, &y) in xs.iter().zip(&got) {
        let x64 = x as f64;
        let exact = 0.5 * x64 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
        worst = worst.max((y as f64 - exact).abs());
    }
    assert!(worst <= 1e-6, "worst absolute error {worst:e}");
}

#[test]
fn gelu_erf_gradient_within_1e6_of_exact() {
    let xs = grid();
    let x =
        Tensor::<Ad, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev()).require_grad();
    let grads = kernels::gelu(x.clone()).sum().backward();
    let got = values(x.grad(&grads).expect("grad"));
    let mut worst = 0f64;
    for (&x, &g) in xs.iter().zip(&got) {
        let x = x as f64;
        let exact = 0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2))
            + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        worst = worst.max((g as f64 - exact).abs());
    }
    assert!(worst <= 1e-6, "worst absolute error {worst:e}");
}

#[test]
fn gelu_tanh_within_1e6_of_exact() {
    let xs = grid();
    let x = Tensor::<Flex, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev());
    let got = values(kernels::gelu_tanh(x));
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let mut worst = 0f64;
    for (&x, &y) in xs.iter().zip(&got) {
        let x = x as f64;
        let exact = 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
        worst = worst.max((y as f64 - exact).abs());
    }
    assert!(worst <= 1e-6, "worst absolute error {worst:e}");
}

/// Values and the gradient of `sum(f(x)·w)` of a fast unary op against its plain version.
fn check_unary(
    what: &str,
    fast: fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>,
    slow: fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>,
) {
    let d = dev();
    let x0 = random::<Ad, 3>([4, 33, 70], 2.0, &d);
    let w = random::<Ad, 3>([4, 33, 70], 1.0, &d);
    let run = |f: fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>| {
        let x = x0.clone().detach().require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * w.clone()).sum().backward();
        (values(y), values(x.grad(&grads).expect("grad")))
    };
    let (y_fast, g_fast) = run(fast);
    let (y_slow, g_slow) = run(slow);
    assert_close(&format!("{what} values"), &y_fast, &y_slow);
    assert_close(&format!("{what} gradient"), &g_fast, &g_slow);
}

#[test]
fn gelu_erf_matches_plain_values_and_gradients() {
    check_unary("gelu", kernels::gelu, plain::gelu);
}

#[test]
fn gelu_tanh_matches_plain_values_and_gradients() {
    check_unary("gelu_tanh", kernels::gelu_tanh, plain::gelu_tanh);
}

#[test]
fn inference_path_equals_autodiff_path() {
    let d = dev();
    let x = random::<Flex, 3>([3, 17, 50], 2.0, &d);
    let xa = Tensor::<Ad, 3>::from_data(x.to_data(), &d);
    assert_eq!(
        values(kernels::gelu(x.clone())),
        values(kernels::gelu(xa.clone()))
    );
    assert_eq!(
        values(kernels::gelu_tanh(x)),
        values(kernels::gelu_tanh(xa))
    );
}

// ---------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------

#[test]
fn dropout_rate_scale_and_seed() {
    let d = dev();
    let x = Tensor::<Flex, 2>::ones([512, 1024], &d);
    kernels::seed(7);
    let a = values(kernels::dropout(x.clone(), 0.1));
    let b = values(kernels::dropout(x.clone(), 0.1));
    kernels::seed(7);
    let a2 = values(kernels::dropout(x, 0.1));
    assert_eq!(a, a2, "same seed, same call order: same mask");
    assert_ne!(a, b, "consecutive calls draw different masks");
    let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.9).abs() < 2e-3, "kept fraction {kept}");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
}

#[test]
fn dropout_backward_reuses_the_forward_mask() {
    let d = dev();
    let x = (random::<Ad, 3>([8, 64, 100], 1.0, &d).abs() + 0.5)
        .detach()
        .require_grad();
    let w = random::<Ad, 3>([8, 64, 100], 1.0, &d);
    let y = kernels::dropout(x.clone(), 0.25);
    let grads = (y.clone() * w.clone()).sum().backward();
    let g = values(x.grad(&grads).expect("grad"));
    let (y, w) = (values(y), values(w));
    for i in 0..g.len() {
        let want = if y[i] != 0.0 { w[i] / 0.75 } else { 0.0 };
        assert!(
            (g[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
            "grad[{i}] {} want {want}",
            g[i]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Softmax with the additive mask
// ---------------------------------------------------------------------------------------

/// UER's padding mask `[b,1,s,s]` (expanded from `[b,1,1,s]`, as the model builds it) and the
/// causal mask `[1,1,s,s]`.
fn masks(b: usize, s: usize) -> Vec<(&'static str, Tensor<Ad, 4>)> {
    let d = dev();
    let mut pad = vec![0f32; b * s];
    for (i, v) in pad.iter_mut().enumerate() {
        if i % s >= s - (i / s) * 3 - 1 {
            *v = -10000.0;
        }
    }
    let pad =
        Tensor::<Ad, 4>::from_data(TensorData::new(pad, [b, 1, 1, s]), &d).expand([b, 1, s, s]);
    let causal: Vec<f32> = (0..s * s)
        .map(|i| if i % s > i / s { -10000.0 } else { 0.0 })
        .collect();
    let causal = Tensor::<Ad, 4>::from_data(TensorData::new(causal, [1, 1, s, s]), &d);
    vec![("padding", pad), ("causal", causal)]
}

#[test]
fn masked_softmax_matches_plain_values_and_gradients() {
    let d = dev();
    let (b, h, s) = (3, 4, 37);
    let s0 = random::<Ad, 4>([b, h, s, s], 3.0, &d);
    let w = random::<Ad, 4>([b, h, s, s], 1.0, &d);
    let scale = 0.125;
    for (name, bias) in masks(b, s)
        .into_iter()
        .map(|(n, m)| (n, Some(m)))
        .chain([("none", None)])
    {
        let run = |fast: bool| {
            let x = s0.clone().detach().require_grad();
            let y = if fast {
                kernels::masked_softmax(x.clone(), bias.clone(), scale, 0.0)
            } else {
                plain::masked_softmax(x.clone(), bias.clone(), scale, 0.0)
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (values(y), values(x.grad(&grads).expect("grad")))
        };
        let (y_fast, g_fast) = run(true);
        let (y_slow, g_slow) = run(false);
        assert_close(&format!("softmax {name} values"), &y_fast, &y_slow);
        assert_close(&format!("softmax {name} gradient"), &g_fast, &g_slow);
    }
}

#[test]
fn masked_softmax_with_dropout_matches_plain_with_the_same_mask() {
    let d = dev();
    let (b, h, s) = (2, 3, 40);
    let s0 = random::<Ad, 4>([b, h, s, s], 3.0, &d);
    let w = random::<Ad, 4>([b, h, s, s], 1.0, &d);
    let bias = masks(b, s).remove(0).1;
    let (scale, p) = (0.25, 0.2);
    let x = s0.clone().detach().require_grad();
    let y = kernels::masked_softmax(x.clone(), Some(bias.clone()), scale, p);
    let grads = (y.clone() * w.clone()).sum().backward();
    let (y_fast, g_fast) = (values(y.clone()), values(x.grad(&grads).expect("grad")));
    // The same computation, plainly, with the mask the fast path drew.
    let keep = y.detach().not_equal_elem(0.0).float();
    let x = s0.detach().require_grad();
    let probs = plain::masked_softmax(x.clone(), Some(bias), scale, 0.0);
    let y = probs * keep / (1.0 - p);
    let grads = (y.clone() * w).sum().backward();
    assert_close("softmax+dropout values", &y_fast, &values(y));
    assert_close(
        "softmax+dropout gradient",
        &g_fast,
        &values(x.grad(&grads).expect("grad")),
    );
    let kept = y_fast.iter().filter(|&&v| v != 0.0).count() as f64 / y_fast.len() as f64;
    assert!(kept > 0.75 && kept < 0.85, "kept {kept}");
}

#[test]
fn attention_matches_plain_values_and_gradients() {
    let d = dev();
    let (b, h, s, e) = (2, 4, 29, 16);
    let [q0, k0, v0] = [0, 1, 2].map(|_| random::<Ad, 4>([b, h, s, e], 1.0, &d));
    let w = random::<Ad, 4>([b, h, s, e], 1.0, &d);
    let bias = masks(b, s).remove(0).1;
    let run = |fast: bool| {
        let [q, k, v] = [&q0, &k0, &v0].map(|t| t.clone().detach().require_grad());
        let y = if fast {
            kernels::attention(q.clone(), k.clone(), v.clone(), Some(bias.clone()), 0.0)
        } else {
            let scores = q.clone().matmul(k.clone().swap_dims(2, 3));
            plain::masked_softmax(scores, Some(bias.clone()), 0.25, 0.0).matmul(v.clone())
        };
        let grads = (y.clone() * w.clone()).sum().backward();
        let g = [&q, &k, &v].map(|t| values(t.grad(&grads).expect("grad")));
        (values(y), g)
    };
    let (y_fast, g_fast) = run(true);
    let (y_slow, g_slow) = run(false);
    assert_close("attention values", &y_fast, &y_slow);
    for (i, name) in ["q", "k", "v"].iter().enumerate() {
        assert_close(&format!("attention d{name}"), &g_fast[i], &g_slow[i]);
    }
}

// ---------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------

#[test]
fn layer_norm_matches_plain_values_and_gradients() {
    let d = dev();
    for kind in [LnKind::Uer, LnKind::Hf] {
        for n in [128, 77] {
            let x0 = random::<Ad, 3>([4, 31, n], 2.0, &d) + 0.3;
            let g0 = random::<Ad, 1>([n], 1.0, &d) + 1.0;
            let b0 = random::<Ad, 1>([n], 1.0, &d);
            let w = random::<Ad, 3>([4, 31, n], 1.0, &d);
            let run = |fast: bool| {
                let x = x0.clone().detach().require_grad();
                let (g, b) = (
                    g0.clone().detach().require_grad(),
                    b0.clone().detach().require_grad(),
                );
                let y = if fast {
                    kernels::layer_norm(x.clone(), g.clone(), b.clone(), kind, 1e-6)
                } else {
                    plain::layer_norm(x.clone(), g.clone(), b.clone(), kind, 1e-6)
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let gx = values(x.grad(&grads).expect("dx"));
                let gg = values(g.grad(&grads).expect("dgamma"));
                let gb = values(b.grad(&grads).expect("dbeta"));
                (values(y), gx, gg, gb)
            };
            let fast = run(true);
            let slow = run(false);
            let what = format!("layer_norm {kind:?} n={n}");
            assert_close(&format!("{what} values"), &fast.0, &slow.0);
            assert_close(&format!("{what} dx"), &fast.1, &slow.1);
            assert_close(&format!("{what} dgamma"), &fast.2, &slow.2);
            assert_close(&format!("{what} dbeta"), &fast.3, &slow.3);
        }
    }
}

#[test]
fn layer_norm_inference_path_equals_autodiff_path() {
    let d = dev();
    let x = random::<Flex, 2>([9, 128], 1.0, &d);
    let g = random::<Flex, 1>([128], 1.0, &d);
    let b = random::<Flex, 1>([128], 1.0, &d);
    let ad = |t: &Tensor<Flex, 2>| Tensor::<Ad, 2>::from_data(t.to_data(), &d);
    let ad1 = |t: &Tensor<Flex, 1>| Tensor::<Ad, 1>::from_data(t.to_data(), &d);
    for kind in [LnKind::Uer, LnKind::Hf] {
        let flex = values(kernels::layer_norm(
            x.clone(),
            g.clone(),
            b.clone(),
            kind,
            1e-12,
        ));
        let auto = values(kernels::layer_norm(ad(&x), ad1(&g), ad1(&b), kind, 1e-12));
        assert_eq!(flex, auto);
    }
}

// ---------------------------------------------------------------------------------------
// Cross-entropy
// ---------------------------------------------------------------------------------------

#[test]
fn cross_entropy_matches_plain_values_hits_and_gradients() {
    let d = dev();
    let (n, k) = (37, 1003);
    let logits0 = random::<Ad, 2>([n, k], 3.0, &d);
    // Rows 0..5 aim at their own argmax (hits), the rest at a fixed pattern.
    let argmax: Vec<i64> = values(logits0.clone().argmax(1).float())
        .iter()
        .map(|&v| v as i64)
        .collect();
    let targets: Vec<i64> = (0..n)
        .map(|r| {
            if r < 5 {
                argmax[r]
            } else {
                (r * 97 % k) as i64
            }
        })
        .collect();
    let run = |fast: bool| {
        let x = logits0.clone().detach().require_grad();
        let (loss, hits) = if fast {
            kernels::cross_entropy(x.clone(), &targets)
        } else {
            plain::cross_entropy(x.clone(), &targets)
        };
        let grads = (loss.clone() * 1.7).backward();
        (
            values(loss),
            values(hits),
            values(x.grad(&grads).expect("dlogits")),
        )
    };
    let (fast, slow) = (run(true), run(false));
    assert_close("cross_entropy loss", &fast.0, &slow.0);
    let want_hits = (0..n).filter(|&r| targets[r] == argmax[r]).count() as f32;
    assert_eq!(fast.1, vec![want_hits]);
    assert_eq!(slow.1, vec![want_hits]);
    assert_close("cross_entropy dlogits", &fast.2, &slow.2);
    // The inference path computes the same loss.
    let flex = Tensor::<Flex, 2>::from_data(logits0.to_data(), &d);
    let (loss, hits) = kernels::cross_entropy(flex, &targets);
    assert_eq!(values(loss), fast.0);
    assert_eq!(values(hits), fast.1);
}

#[test]
fn cross_entropy_inference_path_matches_plain() {
    let d = dev();
    let x = random::<Flex, 2>([2, 5], 1.0, &d);
    // Flex without autodiff, targets at both ends of the row.
    let (a, _) = kernels::cross_entropy(x.clone(), &[4, 0]);
    let (b, _) = plain::cross_entropy(x, &[4, 0]);
    assert_close("loss", &values(a), &values(b));
}

// ---------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------

#[test]
fn linear_matches_burn_values_and_gradients() {
    use burn::nn::LinearConfig;
    let d = dev();
    for bias in [true, false] {
        let layer = LinearConfig::new(70, 50).with_bias(bias).init::<Ad>(&d);
        // Parameters initialise lazily: materialise them once so every clone shares them.
        let layer = layer.clone().load_record(layer.into_record());
        let x0 = random::<Ad, 3>([4, 33, 70], 1.0, &d);
        let w = random::<Ad, 3>([4, 33, 50], 1.0, &d);
        let run = |fast: bool| {
            let layer = layer.clone();
            let x = x0.clone().detach().require_grad();
            let y = if fast {
                kernels::linear(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let gx = values(x.grad(&grads).expect("dx"));
            let gw = values(layer.weight.val().grad(&grads).expect("dW"));
            let gb = layer
                .bias
                .as_ref()
                .map(|b| values(b.val().grad(&grads).expect("db")));
            (values(y), gx, gw, gb)
        };
        let (fast, slow) = (run(true), run(false));
        let what = format!("linear (bias {bias})");
        assert_close(&format!("{what} values"), &fast.0, &slow.0);
        assert_close(&format!("{what} dx"), &fast.1, &slow.1);
        assert_close(&format!("{what} dW"), &fast.2, &slow.2);
        match (fast.3, slow.3) {
            (Some(f), Some(s)) => assert_close(&format!("{what} db"), &f, &s),
            (None, None) => {}
            _ => panic!("{what}: bias gradient on one side only"),
        }
        // Inference path: the same values on Flex.
        let flex_layer = LinearConfig::new(70, 50)
            .with_bias(bias)
            .init::<Flex>(&d)
            .load_record(layer.clone().valid().into_record());
        let xf = Tensor::<Flex, 3>::from_data(x0.to_data(), &d);
        assert_close(
            &format!("{what} inference"),
            &values(kernels::linear(&flex_layer, xf)),
            &fast.0,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Self-attention on [b, s, h]
// ---------------------------------------------------------------------------------------

/// q/k/v gradients and the output of `f` on fresh leaves, weighted by `w`.
#[allow(clippy::type_complexity)]
fn attn_run(
    qkv: &[Tensor<Ad, 3>; 3],
    w: &Tensor<Ad, 3>,
    f: impl Fn(Tensor<Ad, 3>, Tensor<Ad, 3>, Tensor<Ad, 3>) -> Tensor<Ad, 3>,
) -> (Vec<f32>, [Vec<f32>; 3]) {
    let [q, k, v] = qkv.clone().map(|t| t.detach().require_grad());
    let y = f(q.clone(), k.clone(), v.clone());
    let grads = (y.clone() * w.clone()).sum().backward();
    let g = [&q, &k, &v].map(|t| values(t.grad(&grads).expect("grad")));
    (values(y), g)
}

#[test]
fn self_attention_matches_plain_values_and_gradients() {
    let d = dev();
    // batch 3 ≥ the pool's threads (per-batch path) and batch 1 (per-head path).
    for (b, heads, s, h) in [(3, 4, 29, 64), (1, 2, 17, 32)] {
        let qkv = [0, 1, 2].map(|_| random::<Ad, 3>([b, s, h], 1.0, &d));
        let w = random::<Ad, 3>([b, s, h], 1.0, &d);
        for (name, bias) in masks(b, s)
            .into_iter()
            .map(|(n, m)| (n, Some(m)))
            .chain([("none", None)])
        {
            let fast = attn_run(&qkv, &w, |q, k, v| {
                kernels::self_attention(q, k, v, heads, bias.clone(), 0.0)
            });
            let slow = attn_run(&qkv, &w, |q, k, v| {
                plain::self_attention(q, k, v, heads, bias.clone(), 0.0)
            });
            let what = format!("self_attention b={b} {name}");
            assert_close(&format!("{what} values"), &fast.0, &slow.0);
            for (i, t) in ["q", "k", "v"].iter().enumerate() {
                assert_close(&format!("{what} d{t}"), &fast.1[i], &slow.1[i]);
            }
        }
    }
}

#[test]
fn self_attention_with_dropout_draws_the_masks_of_the_head_split_path() {
    let d = dev();
    let (b, heads, s, h) = (2, 4, 33, 64);
    let qkv = [0, 1, 2].map(|_| random::<Ad, 3>([b, s, h], 1.0, &d));
    let w = random::<Ad, 3>([b, s, h], 1.0, &d);
    let bias = masks(b, s).remove(0).1;
    kernels::seed(99);
    let fast = attn_run(&qkv, &w, |q, k, v| {
        kernels::self_attention(q, k, v, heads, Some(bias.clone()), 0.1)
    });
    // The same key stream through the fused [b, heads, s, s] softmax of `attention`.
    kernels::seed(99);
    let split = attn_run(&qkv, &w, |q, k, v| {
        let sp = |t: Tensor<Ad, 3>| t.reshape([b, s, heads, h / heads]).swap_dims(1, 2);
        kernels::attention(sp(q), sp(k), sp(v), Some(bias.clone()), 0.1)
            .swap_dims(1, 2)
            .reshape([b, s, h])
    });
    assert_close("self_attention+dropout values", &fast.0, &split.0);
    for (i, t) in ["q", "k", "v"].iter().enumerate() {
        assert_close(
            &format!("self_attention+dropout d{t}"),
            &fast.1[i],
            &split.1[i],
        );
    }
    // Inference path (Flex) equals the autodiff path without dropout.
    let flex = |t: &Tensor<Ad, 3>| Tensor::<Flex, 3>::from_data(t.to_data(), &d);
    let biasf = Tensor::<Flex, 4>::from_data(bias.to_data(), &d);
    let inf = kernels::self_attention(
        flex(&qkv[0]),
        flex(&qkv[1]),
        flex(&qkv[2]),
        heads,
        Some(biasf),
        0.0,
    );
    let ad = attn_run(&qkv, &w, |q, k, v| {
        kernels::self_attention(q, k, v, heads, Some(bias.clone()), 0.0)
    });
    assert_eq!(values(inf), ad.0);
}

// ---------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------

#[test]
fn embed_matches_plain_values_and_gradients() {
    use burn::tensor::Int;
    let d = dev();
    let (b, s, v, e, p) = (3, 11, 50, 24, 16);
    let ids: Vec<i64> = (0..b * s).map(|i| (i * 7 % v) as i64).collect();
    let segs: Vec<i64> = (0..b * s).map(|i| (i % 3) as i64).collect();
    let ids = Tensor::<Ad, 2, Int>::from_data(TensorData::new(ids, [b, s]), &d);
    let segs = Tensor::<Ad, 2, Int>::from_data(TensorData::new(segs, [b, s]), &d);
    let tables = [v, p, 3].map(|rows| random::<Ad, 2>([rows, e], 1.0, &d));
    let w = random::<Ad, 3>([b, s, e], 1.0, &d);
    for with_seg in [true, false] {
        let run = |fast: bool| {
            let [word, pos, seg] = tables.clone().map(|t| t.detach().require_grad());
            let seg_opt = with_seg.then(|| seg.clone());
            let y = if fast {
                kernels::embed(
                    word.clone(),
                    pos.clone(),
                    seg_opt,
                    ids.clone(),
                    segs.clone(),
                )
            } else {
                plain::embed(
                    word.clone(),
                    pos.clone(),
                    seg_opt,
                    ids.clone(),
                    segs.clone(),
                )
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let g = |t: &Tensor<Ad, 2>| t.grad(&grads).map(values);
            (values(y), g(&word), g(&pos), g(&seg))
        };
        let (fast, slow) = (run(true), run(false));
        let what = format!("embed (segments {with_seg})");
        assert_close(&format!("{what} values"), &fast.0, &slow.0);
        assert_close(&format!("{what} dword"), &fast.1.unwrap(), &slow.1.unwrap());
        assert_close(&format!("{what} dpos"), &fast.2.unwrap(), &slow.2.unwrap());
        match (fast.3, slow.3) {
            (Some(f), Some(s)) => assert_close(&format!("{what} dseg"), &f, &s),
            (None, None) => assert!(!with_seg),
            _ => panic!("{what}: segment gradient on one side only"),
        }
    }
}

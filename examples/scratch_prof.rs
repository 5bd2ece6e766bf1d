use burn::tensor::{Distribution, Tensor, activation, module, ops::AttentionModuleOptions};
use std::time::Instant;
type B = burn::backend::Flex;
fn t<F: FnMut()>(name: &str, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..3 {
        f();
    }
    println!("{name}: {:.1} ms", s.elapsed().as_secs_f64() * 1e3 / 3.0);
}
fn main() {
    let d = Default::default();
    let x = Tensor::<B, 3>::random([8, 128, 768], Distribution::Default, &d);
    let w = Tensor::<B, 2>::random([768, 3072], Distribution::Default, &d);
    let w2 = Tensor::<B, 2>::random([768, 768], Distribution::Default, &d);
    let lin = burn::nn::Linear {
        weight: burn::module::Param::from_tensor(w.clone()),
        bias: Some(burn::module::Param::from_tensor(Tensor::zeros([3072], &d))),
    };
    t("matmul 1024x768x3072 (3d x 2d)", || {
        let _ = x.clone().matmul(w.clone().unsqueeze::<3>()).into_data();
    });
    t("linear 768->3072", || {
        let _ = lin.forward(x.clone()).into_data();
    });
    let x2 = x.clone().reshape([1024, 768]);
    t("matmul 2d 1024x768x3072", || {
        let _ = x2.clone().matmul(w.clone()).into_data();
    });
    t("matmul 2d 1024x768x768", || {
        let _ = x2.clone().matmul(w2.clone()).into_data();
    });
    let h = Tensor::<B, 3>::random([8, 128, 3072], Distribution::Default, &d);
    t("gelu 8x128x3072", || {
        let _ = activation::gelu(h.clone()).into_data();
    });
    let ln = uerzoo::model::layer_norm::LayerNorm::new(
        Tensor::ones([768], &d),
        Tensor::zeros([768], &d),
        uerzoo::model::LnKind::Uer,
        1e-6,
    );
    t("layernorm 8x128x768", || {
        let _ = ln.forward(x.clone()).into_data();
    });
    let q = Tensor::<B, 4>::random([8, 12, 128, 64], Distribution::Default, &d);
    let bias = Tensor::<B, 4>::zeros([8, 1, 128, 128], &d);
    t("attention fused", || {
        let _ = module::attention(
            q.clone(),
            q.clone(),
            q.clone(),
            None,
            Some(bias.clone()),
            AttentionModuleOptions {
                scale: Some(0.125),
                softcap: None,
                is_causal: false,
            },
        )
        .into_data();
    });
    t("attention unfused", || {
        let s = q.clone().matmul(q.clone().swap_dims(2, 3)) * 0.125 + bias.clone();
        let p = activation::softmax(s, 3);
        let _ = p.matmul(q.clone()).into_data();
    });
    let xs = x.clone().reshape([8, 128, 12, 64]).swap_dims(1, 2);
    t("split heads (swap) then contiguous via matmul", || {
        let _ = xs.clone().matmul(q.clone().swap_dims(2, 3)).into_data();
    });
}

//! bf16 inference (`--dtype bf16`): the encoder's linear layers rounded to bf16 at load
//! ([`uerzoo::kernels::bf16`], f32 sums) against the f32 model on the UER fixtures — hidden
//! states and pretraining logits — and the refusals (training, the LSTM, the command
//! line's errors). The kernel's paths against a scalar reference are tested in the
//! `uerzoo-kernels` crate.

mod common;

use uerzoo::model::{self, DeviceSpec, Dtype, open::open_model};

use common::precision::{Closeness, batch_of, closeness, opened};
use common::read;

/// Hidden-state cosine (min over real positions), the largest |Δlogit| over real positions
/// relative to the largest |logit|, and the argmax token per real position, per fixture.
///
/// Measured on a 2-core AMD EPYC (Zen 4; the avx512-bf16 path): min cosine 0.9999888
/// (gpt2_v1), 0.9999995 (roberta_v1), ≥ 0.9999999 on the others; max |Δlogit| 0.21% of max
/// |logit| (gpt2_v1), 0.14% (roberta_v1), ≤ 0.01% on the others; argmax identical on all 28
/// real positions of every fixture. Asserted: cosine ≥ 0.9999 (1 − cosine 9× the worst
/// measured), |Δlogit| ≤ 1% of max |logit| (5× the worst), argmax identical everywhere (as
/// int8, which is noisier, holds too).
#[test]
fn bf16_hidden_states_and_logits_stay_close_to_f32_on_every_fixture() {
    for name in common::UER_FIXTURES {
        let input = batch_of(name);
        let f = model::tasks::forward(&opened(name, Dtype::F32), &input, DeviceSpec::Cpu).unwrap();
        let h16 =
            model::tasks::forward(&opened(name, Dtype::Bf16), &input, DeviceSpec::Cpu).unwrap();
        assert_eq!(f.report.bf16_path, None);
        assert_eq!(h16.report.int8_path, None);
        let path = h16
            .report
            .bf16_path
            .expect("bf16 load names its kernel path");
        assert_eq!(path, uerzoo::kernels::bf16::Bf16Path::best().name());
        let Closeness {
            min_cos,
            worst,
            top,
            agree,
            real,
        } = closeness(&f, &h16, &input.segment);
        eprintln!(
            "{name} ({path}): hidden cosine min {min_cos:.8}, max |Δlogit| {worst:.4} of max |logit| {top:.3} ({:.2}%), argmax agrees {agree}/{real}",
            100.0 * worst / top
        );
        assert!(min_cos >= 0.9999, "{name}: hidden cosine {min_cos}");
        assert!(
            worst <= 0.01 * top,
            "{name}: max |Δlogit| {worst} vs max |logit| {top}"
        );
        assert_eq!(agree, real, "{name}: argmax differs");
    }
}

/// bf16 is for inference on the CPU: training (the autodiff backend) is refused at load,
/// and the same model on Flex has every encoder layer rounded to bf16.
#[test]
fn training_refuses_bf16() {
    use burn::backend::{Autodiff, Flex};
    let m = opened("roberta_v1", Dtype::Bf16);
    let err = model::load_model::<Autodiff<Flex>>(&m.checkpoint, &m.config, &Default::default())
        .expect_err("bf16 on the autodiff backend is refused");
    let msg = err.to_string();
    assert!(msg.contains("bf16 on this backend"), "{msg}");
    assert!(msg.contains("training"), "{msg}");
    let (model, report) =
        model::load_model::<Flex>(&m.checkpoint, &m.config, &Default::default()).unwrap();
    assert!(report.bf16_path.is_some());
    for layer in &model.encoder.layers {
        assert!(layer.self_attn.bf16.is_some() && layer.feed_forward.bf16.is_some());
        assert!(layer.self_attn.int8.is_none() && layer.feed_forward.int8.is_none());
    }
}

/// `--dtype bf16` on UER-py 2019's LSTM is refused (the bf16 kernel runs transformer GEMMs
/// only) rather than running f32 under a bf16 label.
#[test]
fn bf16_is_refused_on_the_lstm() {
    use burn::backend::Flex;
    let dir = common::shared().join("fixtures/uer_2019/lstm_lm");
    let mut m = open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    m.config.dtype = Dtype::Bf16;
    let Err(err) = model::load_model::<Flex>(&m.checkpoint, &m.config, &Default::default()) else {
        panic!("bf16 must be refused on the LSTM");
    };
    let msg = err.to_string();
    assert!(msg.contains("bf16 with the LSTM encoder"), "{msg}");
    assert!(msg.contains("drop --dtype bf16"), "{msg}");
}

/// `uerzoo forward --dtype bf16` writes what the library computes with bf16 layers, byte
/// for byte, and says which kernel path ran; `uerzoo --version` names the bf16 path; a bad
/// `--dtype` is refused listing bf16.
#[test]
fn the_forward_command_takes_dtype_bf16() {
    let name = "gpt2_v1";
    let dir = common::uer_fixture(name);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.safetensors");
    let run = common::run_ok(
        std::process::Command::new(common::uerzoo_bin())
            .arg("forward")
            .arg(dir.join("uer_model.bin"))
            .arg("--input")
            .arg(dir.join("uer_outputs.safetensors"))
            .arg("--output")
            .arg(&out)
            .args(["--dtype", "bf16"]),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    let path = uerzoo::kernels::bf16::Bf16Path::best().name();
    assert!(
        stderr.contains(&format!("bf16 linear layers on the {path} path")),
        "{stderr}"
    );
    let lib = model::tasks::forward(&opened(name, Dtype::Bf16), &batch_of(name), DeviceSpec::Cpu)
        .unwrap();
    let f32_run =
        model::tasks::forward(&opened(name, Dtype::F32), &batch_of(name), DeviceSpec::Cpu).unwrap();
    let written = read(&out).get("hidden").unwrap().to_f32_vec();
    assert_eq!(written, lib.hidden.values);
    assert_ne!(
        written, f32_run.hidden.values,
        "bf16 layers change the sums"
    );

    let version = common::run_ok(std::process::Command::new(common::uerzoo_bin()).arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains(&format!("bf16 {path} (--dtype bf16)")),
        "{version}"
    );
    assert!(!version.contains("unused"), "{version}");

    let bad = std::process::Command::new(common::uerzoo_bin())
        .arg("forward")
        .arg(dir.join("uer_model.bin"))
        .arg("--input")
        .arg(dir.join("uer_outputs.safetensors"))
        .arg("--output")
        .arg(out_dir.path().join("bad.safetensors"))
        .args(["--dtype", "f16"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("f16") && err.contains("bf16"), "{err}");
}

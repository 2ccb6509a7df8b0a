//! The reranker trainer's gradients are the reference implementation's: one step of
//! `train-reranker`'s loss — listwise cross-entropy over two groups of three pairs, mixed half
//! and half with the distillation term against fixed teacher logits — through sift's
//! differentiable kernels and classification heads, against torch's gradients of the same step
//! on the same weights (scripts/golden/make_gradient_fixtures.py) for the three tiny
//! classifiers. A wrong backward pass would still lower the loss, so only this shows it.

mod support;

use candle_core::{Device, Tensor};
use sift_models::batch::Batch;
use sift_models::{ModelDir, TextTokenizer};
use sift_train::model::TrainableCrossEncoder;
use sift_train::recipe::{Distillation, Loss, Pooler, TeacherModel};
use sift_train::trainer::exit_loss;

#[test]
fn reranker_gradients_equal_the_reference_implementations() {
    for name in ["bert-classifier", "mpnet-classifier", "xlmr-classifier"] {
        let dir = support::golden_fixture(name);
        let read = |file: &str| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
        };
        let (expected, step) = (read("expected.json"), read("gradients.json"));
        let base = ModelDir::open(&dir).unwrap();
        let model = TrainableCrossEncoder::from_base(&base, 0, &[], Pooler::Base).unwrap();
        // The two-label MPNet fixture trains on the one-label head torch drew for the step.
        if dir.join("head.safetensors").is_file() {
            let head =
                candle_core::safetensors::load(dir.join("head.safetensors"), &Device::Cpu).unwrap();
            let vars = model.varmap.data().lock().unwrap();
            for (n, t) in head {
                vars[&n].set(&t).unwrap();
            }
        }
        let tokenizer = TextTokenizer::from_dir(
            &dir,
            expected["max_length"].as_u64().unwrap() as usize,
            base.config.type_vocab_size > 1,
        )
        .unwrap();
        let pairs: Vec<(String, String)> = serde_json::from_value(step["pairs"].clone()).unwrap();
        let encoded: Vec<_> = pairs
            .iter()
            .map(|(q, d)| tokenizer.encode_pair(q, d).unwrap())
            .collect();
        let ids: Vec<Vec<u32>> = serde_json::from_value(step["ids"].clone()).unwrap();
        for (e, want) in encoded.iter().zip(&ids) {
            assert_eq!(&e.ids, want, "{name}: tokenization");
        }
        let rows: Vec<_> = encoded.iter().collect();
        let batch = Batch::new(&rows, model.config.pad_token_id, &Device::Cpu).unwrap();
        let size = step["group_size"].as_u64().unwrap() as usize;
        let (_, logits) = model
            .train
            .logits_at_every_exit(&batch)
            .unwrap()
            .pop()
            .unwrap();
        let logits = logits.reshape((pairs.len() / size, size)).unwrap();
        let teacher: Vec<Vec<f32>> = serde_json::from_value(step["teacher"].clone()).unwrap();
        let distillation = Distillation {
            teacher: TeacherModel::Reranker("unused".into()),
            weight: step["distill_weight"].as_f64().unwrap(),
            temperature: step["temperature"].as_f64().unwrap(),
        };
        let teacher = (Tensor::new(teacher, &Device::Cpu).unwrap(), &distillation);
        let loss = exit_loss(&logits, Loss::Listwise, Some(&teacher)).unwrap();
        let value = f64::from(loss.to_scalar::<f32>().unwrap());
        let want = step["loss"].as_f64().unwrap();
        assert!(
            (value - want).abs() < 1e-4,
            "{name}: loss {value} vs torch {want}"
        );
        let grads = loss.backward().unwrap();
        let got: Vec<_> = model
            .variables()
            .into_iter()
            .map(|(n, v)| (n, grads.get(v.as_tensor()).cloned()))
            .collect();
        support::assert_gradients_equal(
            name,
            &got,
            &support::reference_gradients(name, "gradients.safetensors"),
        );
    }
}

//! ferkit's affine augmentation against Keras' own `apply_affine_transform` (which samples with
//! scipy.ndimage): the fixture was written by tests/fixtures/make_augment_reference.py.

use ferkit::data::augment::{AffineParams, FillMode, affine_transform, keras_matrix};

#[test]
fn affine_transforms_match_keras_and_scipy() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/augment_reference.json")).expect("the fixture is JSON");
    let (h, w) = (doc["height"].as_u64().unwrap() as usize, doc["width"].as_u64().unwrap() as usize);
    let floats =
        |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let input: Vec<f32> = floats(&doc["input"]).iter().map(|&v| v as f32).collect();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let f = |k: &str| case[k].as_f64().unwrap();
        let params = AffineParams {
            theta: f("theta"),
            tx: f("tx"),
            ty: f("ty"),
            shear: f("shear"),
            zx: f("zx"),
            zy: f("zy"),
            flip: false,
        };
        let fill = match case["fill"].as_str().unwrap() {
            "nearest" => FillMode::Nearest,
            "constant" => FillMode::Constant,
            "reflect" => FillMode::Reflect,
            "wrap" => FillMode::Wrap,
            other => panic!("unknown fill {other}"),
        };
        let m = keras_matrix(&params, h, w).expect("every case transforms");
        let mut out = vec![0.0f32; h * w];
        affine_transform(&input, h, w, &m, fill, f("cval"), &mut out);
        let expected = floats(&case["output"]);
        let worst = out.iter().zip(&expected).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: largest difference {worst}\n got {out:?}\nwant {expected:?}");
    }
}

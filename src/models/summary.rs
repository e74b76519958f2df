//! A Keras-style model summary: layer (type), output shape, parameters, and the totals.

use crate::error::Result;

use super::spec::NetSpec;

/// Formats `n` with thousands separators, as Keras prints parameter counts.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Table width when every name fits the default columns.
const TABLE_WIDTH: usize = 72;
/// Default width of a layer summary's first column (layer name and type).
const NAME_COLUMN: usize = 34;

/// A horizontal rule of `c` across a table `width` characters wide.
fn rule(c: char, width: usize) -> String {
    c.to_string().repeat(width)
}

/// Keras' closing lines: total, trainable and non-trainable parameters, between rules.
fn totals(trainable: usize, non_trainable: usize, width: usize) -> String {
    format!(
        "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{}\n",
        rule('=', width),
        thousands(trainable + non_trainable),
        thousands(trainable),
        thousands(non_trainable),
        rule('_', width)
    )
}

pub fn summary(spec: &NetSpec) -> Result<String> {
    let infos = spec.layer_infos()?;
    // Keras' layer names: the type's stem, numbered from its second use (`conv2d`, `conv2d_1`).
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    let names: Vec<String> = spec
        .layers
        .iter()
        .map(|layer| {
            let stem = layer.keras_stem();
            let count = seen.entry(stem).or_default();
            let name = if *count == 0 { stem.to_string() } else { format!("{stem}_{count}") };
            *count += 1;
            format!("{name} ({})", layer.keras_type())
        })
        .collect();
    // The first column as wide as its longest entry ("batch_normalization_1
    // (BatchNormalization)" is 42 characters), so the columns stay aligned.
    let width = names.iter().map(|n| n.len() + 2).max().unwrap_or(0).max(NAME_COLUMN);
    let table_width = TABLE_WIDTH + width - NAME_COLUMN;
    let mut out = format!("Model: \"{}\"\n{}\n", spec.name, rule('_', table_width));
    out += &format!(" {:<width$}{:<26}{:>10}\n{}\n", "Layer (type)", "Output Shape", "Param #", rule('=', table_width));
    for (i, (name, info)) in names.iter().zip(&infos).enumerate() {
        let params = info.trainable + info.non_trainable;
        out += &format!(" {name:<width$}{:<26}{:>10}\n", info.output.to_string(), thousands(params));
        if i + 1 < infos.len() {
            out += "\n";
        }
    }
    let trainable: usize = infos.iter().map(|i| i.trainable).sum();
    let non_trainable: usize = infos.iter().map(|i| i.non_trainable).sum();
    out += &totals(trainable, non_trainable, table_width);
    out += &format!("Forward multiply-adds per image: {}\n", thousands(spec.arithmetic()?.forward as usize));
    Ok(out)
}

/// A summary of a transfer net: the backbone's parts (frozen ones marked), the new head, and
/// trainable / non-trainable totals (frozen weights and batch-norm statistics are non-trainable).
pub fn transfer_summary(spec: &super::transfer::TransferSpec) -> Result<String> {
    use burn::module::Module;
    let net = super::transfer::TransferNet::new(
        &super::transfer::TransferSpec { weights: None, ..spec.clone() },
        &burn::prelude::Device::flex(),
    )?;
    let mut rows = net.backbone.parts(spec.frozen_blocks);
    for (i, layer) in net.head.iter().enumerate() {
        rows.push((format!("dense_{i} (Dense, relu)"), layer.num_params()));
    }
    rows.push((format!("dropout (Dropout {})", spec.dropout), 0));
    rows.push(("output (Dense 7)".into(), net.output.num_params()));
    let (trainable, non_trainable) = spec.param_counts()?;
    let mut out = format!(
        "Model: \"{}\" ({} backbone, input {}x{}x3, ImageNet weights: {})\n{}\n",
        spec.name,
        spec.backbone,
        spec.input_size,
        spec.input_size,
        spec.weights.as_ref().map_or("none".to_string(), |p| p.display().to_string()),
        rule('_', TABLE_WIDTH)
    );
    out += &format!(" {:<60}{:>10}\n{}\n", "Part", "Param #", rule('=', TABLE_WIDTH));
    for (name, params) in rows {
        out += &format!(" {name:<60}{:>10}\n", thousands(params));
    }
    out += &totals(trainable, non_trainable, TABLE_WIDTH);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::registry::resolve_net as resolve;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(19_798_723), "19,798,723");
    }

    /// cnn1's arithmetic by hand: its five layers with weights, output positions x filters x
    /// inputs per filter (or inputs x units); a training step repeats each twice (weight and
    /// input gradients) except the first convolution's input gradient (its input is the image).
    #[test]
    fn cnn1_arithmetic_counted_by_hand() {
        let conv1 = 12 * 12 * 96 * (11 * 11);
        let conv2 = 6 * 6 * 256 * (5 * 5 * 96);
        let conv3 = 3 * 3 * 384 * (3 * 3 * 256);
        let dense = 3456 * 4096 + 4096 * 1000 + 1000 * 7;
        let forward = (conv1 + conv2 + conv3 + dense) as u64;
        let a = resolve("cnn1").unwrap().arithmetic().unwrap();
        assert_eq!(a.forward, forward);
        assert_eq!(a.forward, 50_012_504, "the figure `ferkit summary cnn1` prints");
        assert_eq!(a.training, 3 * forward - conv1 as u64);
    }

    /// A net whose first layer with weights is a dense layer or a residual block: the training
    /// step leaves out that layer's input gradient only (for the block, its first convolution's
    /// and its projection's, not its second convolution's). Transfer nets are not counted.
    #[test]
    fn a_training_step_leaves_out_only_the_first_layers_input_gradient() {
        let net = |layers: &str| {
            NetSpec::from_toml(&format!("name = \"t\"\ninput = [48, 48, 1]\n{layers}"), "test.toml").unwrap()
        };
        let dense = net("[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n");
        let a = dense.arithmetic().unwrap();
        let p = 48 * 48;
        assert_eq!((a.forward, a.training), (p * 7, 2 * p * 7));
        let residual = net("[[layers]]\nkind = \"residual\"\nfilters = 4\n[[layers]]\nkind = \"flatten\"\n\
             [[layers]]\nkind = \"dense\"\nunits = 7\n");
        let a = residual.arithmetic().unwrap();
        let (first, second, projection, dense) = (p * 9 * 4, p * 9 * 4 * 4, p * 4, p * 4 * 7);
        assert_eq!(a.forward, (first + second + projection + dense) as u64);
        assert_eq!(a.training, 3 * a.forward - (first + projection) as u64);
        let transfer = crate::models::resolve("efficientnet-lite0").unwrap();
        assert_eq!(transfer.arithmetic(), None);
    }

    #[test]
    fn cnn1_summary_matches_keras_totals() {
        let text = summary(&resolve("cnn1").unwrap()).unwrap();
        assert!(text.contains("Total params: 19,798,723"), "{text}");
        assert!(text.contains("Trainable params: 19,787,045"), "{text}");
        assert!(text.contains("Non-trainable params: 11,678"), "{text}");
        assert!(text.contains("conv2d_2 (Conv2D)"), "{text}");
        assert!(text.contains("(None, 12, 12, 96)"), "{text}");
    }

    #[test]
    fn multiply_adds_count_convolutions_and_dense_layers() {
        // cnn3 by hand (experiments/cnn3.toml): conv 5x5 stride 2 to 24 x 24 x 48 from one
        // channel, max pool to 12 x 12, conv 3x3 to 12 x 12 x 16 from 48, then dense
        // 2304 -> 256 -> 64 -> 7; pooling, dropout and flatten count nothing.
        let text = summary(&resolve("cnn3").unwrap()).unwrap();
        let expected = 24 * 24 * 48 * 25 + 12 * 12 * 16 * 9 * 48 + 2304 * 256 + 256 * 64 + 64 * 7;
        assert!(text.contains(&format!("Forward multiply-adds per image: {}", thousands(expected))), "{text}");
    }
}

//! A Keras-style model summary: layer (type), output shape, parameters, and the totals.

use anyhow::Result;

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

pub fn summary(spec: &NetSpec) -> Result<String> {
    let infos = spec.layer_infos()?;
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    let rule = |c: char| c.to_string().repeat(72);
    let mut out = format!("Model: \"{}\"\n{}\n", spec.name, rule('_'));
    out += &format!(" {:<34}{:<26}{:>10}\n{}\n", "Layer (type)", "Output Shape", "Param #", rule('='));
    for (i, (layer, info)) in spec.layers.iter().zip(&infos).enumerate() {
        let stem = layer.keras_stem();
        let count = seen.entry(stem).or_default();
        let name = if *count == 0 { stem.to_string() } else { format!("{stem}_{count}") };
        *count += 1;
        let params = info.trainable + info.non_trainable;
        out += &format!(
            " {:<34}{:<26}{:>10}\n",
            format!("{name} ({})", layer.keras_type()),
            info.output.to_string(),
            thousands(params)
        );
        if i + 1 < infos.len() {
            out += "\n";
        }
    }
    let trainable: usize = infos.iter().map(|i| i.trainable).sum();
    let non_trainable: usize = infos.iter().map(|i| i.non_trainable).sum();
    out += &format!(
        "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{}\n",
        rule('='),
        thousands(trainable + non_trainable),
        thousands(trainable),
        thousands(non_trainable),
        rule('_')
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::registry::resolve;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(19_798_723), "19,798,723");
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
}

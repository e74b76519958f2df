//! OpenCV Haar cascades read from their XML files: stages of boosted stumps over Haar features
//! (two or three weighted rectangles inside a fixed window, 24x24 for the frontal-face cascade).
//!
//! Both of OpenCV's layouts are read: the current one (`<cascade>` with `<stages>` of
//! `<weakClassifiers>` and a shared `<features>` list) and the original one
//! (`type_id="opencv-haar-classifier"`, a feature inside each tree node), which is what
//! `haarcascade_frontalface_default.xml` still uses. OpenCV 4 converts the original layout to
//! the current one when it loads it; both end up as the same [`HaarCascade`] here.

use std::path::Path;

use anyhow::{Context, Result, bail};
use roxmltree::{Document, Node};

/// OpenCV lowers every stage threshold by this much when it loads a cascade
/// (`CascadeClassifierImpl::Data::read`), so that a window scoring exactly the threshold passes.
const THRESHOLD_EPS: f32 = 1e-5;

/// A rectangle of a Haar feature, in window coordinates, with its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightedRect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    pub weight: f32,
}

/// A Haar feature: the weighted sum of the grey levels under two or three rectangles.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub rects: Vec<WeightedRect>,
}

/// A weak classifier with one split: `left` when the feature's normalised value is below
/// `threshold`, `right` otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stump {
    pub feature: usize,
    pub threshold: f32,
    pub left: f32,
    pub right: f32,
}

/// A stage passes a window when the sum of its stumps' votes reaches `threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub threshold: f32,
    pub stumps: Vec<Stump>,
}

/// A stump-based Haar cascade.
#[derive(Clone, Debug, PartialEq)]
pub struct HaarCascade {
    /// The window the features are defined in, (width, height).
    pub window: (usize, usize),
    pub stages: Vec<Stage>,
    pub features: Vec<Feature>,
}

impl HaarCascade {
    /// Reads a cascade XML file; errors name the file and, where there is one, the line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the cascade file", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}: not a usable Haar cascade", path.display()))
    }

    /// Parses a cascade from XML text.
    pub fn parse(xml: &str) -> Result<Self> {
        let doc = Document::parse(xml).map_err(|e| anyhow::anyhow!("invalid XML: {e}"))?;
        let storage = doc.root_element();
        let top = storage.children().find(Node::is_element).context("the file holds no cascade element")?;
        let cascade = match top.attribute("type_id") {
            Some("opencv-haar-classifier") => parse_original(&doc, top)?,
            _ => parse_current(&doc, top)?,
        };
        cascade.check(&doc, top)?;
        Ok(cascade)
    }

    fn check(&self, doc: &Document, top: Node) -> Result<()> {
        let (w, h) = self.window;
        if w < 3 || h < 3 {
            bail!("{}: window {w}x{h} is too small", at(doc, top));
        }
        if self.stages.is_empty() {
            bail!("{}: no stages", at(doc, top));
        }
        for (i, f) in self.features.iter().enumerate() {
            if f.rects.len() < 2 || f.rects.len() > 3 {
                bail!("feature {i}: {} rectangles (a Haar feature has 2 or 3)", f.rects.len());
            }
            for r in &f.rects {
                if r.width == 0 || r.height == 0 || r.x + r.width > w || r.y + r.height > h {
                    bail!(
                        "feature {i}: rectangle {} {} {} {} is not inside the {w}x{h} window",
                        r.x,
                        r.y,
                        r.width,
                        r.height
                    );
                }
            }
        }
        for (s, stage) in self.stages.iter().enumerate() {
            if stage.stumps.is_empty() {
                bail!("stage {s} has no weak classifiers");
            }
            for stump in &stage.stumps {
                if stump.feature >= self.features.len() {
                    bail!("stage {s}: feature {} does not exist ({} features)", stump.feature, self.features.len());
                }
            }
        }
        Ok(())
    }
}

/// `line N` of the node, for error messages.
fn at(doc: &Document, node: Node) -> String {
    format!("line {}", doc.text_pos_at(node.range().start).row)
}

fn child<'a, 'i>(doc: &Document, node: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .with_context(|| format!("{}: <{}> has no <{name}>", at(doc, node), node.tag_name().name()))
}

/// The `<_>` items of a list element.
fn items<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.has_tag_name("_"))
}

/// The whitespace-separated numbers of an element's text.
fn numbers(doc: &Document, node: Node) -> Result<Vec<f64>> {
    node.text()
        .unwrap_or("")
        .split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .with_context(|| format!("{}: `{t}` in <{}> is not a number", at(doc, node), node.tag_name().name()))
        })
        .collect()
}

fn number(doc: &Document, node: Node, name: &str) -> Result<f64> {
    let n = child(doc, node, name)?;
    match numbers(doc, n)?.as_slice() {
        [v] => Ok(*v),
        other => bail!("{}: <{name}> holds {} numbers, expected one", at(doc, n), other.len()),
    }
}

fn index(doc: &Document, node: Node, value: f64, what: &str) -> Result<usize> {
    if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
        bail!("{}: {what} {value} is not a whole number >= 0", at(doc, node));
    }
    Ok(value as usize)
}

fn parse_rects(doc: &Document, feature: Node) -> Result<Feature> {
    if let Some(t) = feature.children().find(|c| c.has_tag_name("tilted"))
        && number(doc, feature, "tilted")? != 0.0
    {
        bail!("{}: tilted (45-degree) features are not supported", at(doc, t));
    }
    let rects = items(child(doc, feature, "rects")?)
        .map(|r| {
            let v = numbers(doc, r)?;
            let [x, y, w, h, weight] = v[..] else {
                bail!("{}: a rectangle is `x y width height weight`, found {} numbers", at(doc, r), v.len());
            };
            Ok(WeightedRect {
                x: index(doc, r, x, "x")?,
                y: index(doc, r, y, "y")?,
                width: index(doc, r, w, "width")?,
                height: index(doc, r, h, "height")?,
                weight: weight as f32,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Feature { rects })
}

/// The current layout: `<stageType>BOOST</stageType><featureType>HAAR</featureType>`, weak
/// classifiers as `<internalNodes>left right feature threshold</internalNodes>` and
/// `<leafValues>`, features listed once at the end.
fn parse_current(doc: &Document, top: Node) -> Result<HaarCascade> {
    let text = |name: &str| -> Result<String> { Ok(child(doc, top, name)?.text().unwrap_or("").trim().to_string()) };
    if text("stageType")? != "BOOST" {
        bail!("{}: stage type `{}` is not supported (BOOST only)", at(doc, top), text("stageType")?);
    }
    if text("featureType")? != "HAAR" {
        bail!("{}: feature type `{}` is not supported (HAAR only)", at(doc, top), text("featureType")?);
    }
    let width = index(doc, top, number(doc, top, "width")?, "width")?;
    let height = index(doc, top, number(doc, top, "height")?, "height")?;
    let mut stages = Vec::new();
    for stage in items(child(doc, top, "stages")?) {
        let threshold = number(doc, stage, "stageThreshold")? as f32 - THRESHOLD_EPS;
        let mut stumps = Vec::new();
        for weak in items(child(doc, stage, "weakClassifiers")?) {
            let nodes_el = child(doc, weak, "internalNodes")?;
            let nodes = numbers(doc, nodes_el)?;
            let leaves = numbers(doc, child(doc, weak, "leafValues")?)?;
            let (&[_, _, feature, threshold], &[left, right]) = (&nodes[..], &leaves[..]) else {
                bail!(
                    "{}: only stumps (one split, two leaves) are supported; found {} node numbers and {} leaves",
                    at(doc, nodes_el),
                    nodes.len(),
                    leaves.len()
                );
            };
            let feature = index(doc, nodes_el, feature, "feature index")?;
            stumps.push(Stump { feature, threshold: threshold as f32, left: left as f32, right: right as f32 });
        }
        stages.push(Stage { threshold, stumps });
    }
    let features = items(child(doc, top, "features")?).map(|f| parse_rects(doc, f)).collect::<Result<Vec<_>>>()?;
    Ok(HaarCascade { window: (width, height), stages, features })
}

/// The original layout: `<size>24 24</size>`, stages of `<trees>`, each tree a list of nodes
/// with an inline `<feature>`, `<threshold>`, `<left_val>` and `<right_val>`.
fn parse_original(doc: &Document, top: Node) -> Result<HaarCascade> {
    let size_el = child(doc, top, "size")?;
    let [w, h] = numbers(doc, size_el)?[..] else {
        bail!("{}: <size> must hold `width height`", at(doc, size_el));
    };
    let window = (index(doc, size_el, w, "width")?, index(doc, size_el, h, "height")?);
    let mut stages = Vec::new();
    let mut features = Vec::new();
    for stage in items(child(doc, top, "stages")?) {
        let threshold = number(doc, stage, "stage_threshold")? as f32 - THRESHOLD_EPS;
        let mut stumps = Vec::new();
        for tree in items(child(doc, stage, "trees")?) {
            let nodes: Vec<Node> = items(tree).collect();
            let [node] = nodes[..] else {
                bail!(
                    "{}: only stumps (trees of one node) are supported; this tree has {}",
                    at(doc, tree),
                    nodes.len()
                );
            };
            features.push(parse_rects(doc, child(doc, node, "feature")?)?);
            stumps.push(Stump {
                feature: features.len() - 1,
                threshold: number(doc, node, "threshold")? as f32,
                left: number(doc, node, "left_val")? as f32,
                right: number(doc, node, "right_val")? as f32,
            });
        }
        stages.push(Stage { threshold, stumps });
    }
    Ok(HaarCascade { window, stages, features })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>4</height>
  <width>6</width>
  <stageNum>1</stageNum>
  <stages>
    <_>
      <maxWeakCount>2</maxWeakCount>
      <stageThreshold>-1.5</stageThreshold>
      <weakClassifiers>
        <_><internalNodes>0 -1 1 0.25</internalNodes><leafValues>-1. 1.</leafValues></_>
        <_><internalNodes>0 -1 0 -0.5</internalNodes><leafValues>0.5 -0.5</leafValues></_>
      </weakClassifiers></_></stages>
  <features>
    <_><rects><_>0 0 6 4 -1.</_><_>0 0 3 4 2.</_></rects></_>
    <_><rects><_>0 0 6 2 1.</_><_>0 2 6 2 -1.</_></rects><tilted>0</tilted></_>
  </features></cascade>
</opencv_storage>"#;

    #[test]
    fn reads_the_current_layout() {
        let c = HaarCascade::parse(CURRENT).unwrap();
        assert_eq!(c.window, (6, 4));
        assert_eq!(c.stages.len(), 1);
        assert_eq!(c.stages[0].threshold, -1.5 - THRESHOLD_EPS);
        assert_eq!(c.stages[0].stumps[0], Stump { feature: 1, threshold: 0.25, left: -1.0, right: 1.0 });
        assert_eq!(c.features[0].rects[1], WeightedRect { x: 0, y: 0, width: 3, height: 4, weight: 2.0 });
    }

    #[test]
    fn reads_the_original_layout() {
        let xml = r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-haar-classifier">
  <size>6 4</size>
  <stages>
    <_>
      <trees>
        <_><_>
            <feature><rects><_>0 0 6 2 1.</_><_>0 2 6 2 -1.</_></rects><tilted>0</tilted></feature>
            <threshold>0.25</threshold><left_val>-1.</left_val><right_val>1.</right_val></_></_>
        <_><_>
            <feature><rects><_>0 0 6 4 -1.</_><_>0 0 3 4 2.</_></rects><tilted>0</tilted></feature>
            <threshold>-0.5</threshold><left_val>0.5</left_val><right_val>-0.5</right_val></_></_></trees>
      <stage_threshold>-1.5</stage_threshold>
      <parent>-1</parent>
      <next>-1</next></_></stages></cascade>
</opencv_storage>"#;
        let c = HaarCascade::parse(xml).unwrap();
        let current = HaarCascade::parse(CURRENT).unwrap();
        assert_eq!(c.window, current.window);
        assert_eq!(c.stages[0].threshold, current.stages[0].threshold);
        // Same stumps over the same rectangles; only the feature numbering differs.
        for (a, b) in c.stages[0].stumps.iter().zip(&current.stages[0].stumps) {
            assert_eq!((a.threshold, a.left, a.right), (b.threshold, b.left, b.right));
            assert_eq!(c.features[a.feature], current.features[b.feature]);
        }
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            (CURRENT.replace("0 -1 1 0.25", "0 -1 7 0.25"), "feature 7 does not exist"),
            (CURRENT.replace("0 -1 1 0.25", "1 2 1 0.25 0 -1 0 0.5"), "line 13: only stumps"),
            (CURRENT.replace("0 0 3 4 2.", "4 0 3 4 2."), "not inside the 6x4 window"),
            (CURRENT.replace("<tilted>0</tilted>", "<tilted>1</tilted>"), "line 18: tilted"),
            (CURRENT.replace("-1.5", "low"), "line 11: `low` in <stageThreshold> is not a number"),
            (CURRENT.replace("HAAR", "LBP"), "feature type `LBP` is not supported"),
            (CURRENT.replace("</features>", ""), "invalid XML"),
        ];
        for (xml, expected) in cases {
            let err = format!("{:#}", HaarCascade::parse(&xml).unwrap_err());
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        }
    }
}

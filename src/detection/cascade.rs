//! OpenCV cascades read from their XML files: stages of boosted weak classifiers over features in
//! a fixed window (24x24 for the default frontal-face cascade). Three kinds are read, as OpenCV 4
//! evaluates them (`modules/objdetect/src/cascadedetect.{hpp,cpp}`, OpenCV 4.x):
//!
//! - Haar cascades whose weak classifiers are stumps (`haarcascade_frontalface_default.xml`) or
//!   small trees (`haarcascade_frontalface_alt2.xml`: two splits, three leaves): features are
//!   weighted sums of two or three rectangles, divided by the window's contrast;
//! - LBP cascades (`lbpcascade_frontalface.xml`, `lbpcascade_frontalface_improved.xml`):
//!   multi-block local binary patterns (Liao et al. 2007), a 3x3 grid of equal cells whose eight
//!   outer sums are compared with the centre's to give an 8-bit code, split by a 256-bit subset.
//!
//! Both of OpenCV's layouts are read for Haar: the current one (`<cascade>` with `<stages>` of
//! `<weakClassifiers>` and a shared `<features>` list) and the original one
//! (`type_id="opencv-haar-classifier"`, a feature inside each tree node), which is what
//! `haarcascade_frontalface_default.xml` still uses. OpenCV 4 converts the original layout to
//! the current one when it loads it; both end up as the same [`Cascade`] here.

use std::path::Path;

use crate::error::{Context, Result, bail};
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

/// A multi-block LBP feature: a 3x3 grid of `width` x `height` cells whose top-left corner is
/// at (x, y) of the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbpFeature {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// The features a cascade's weak classifiers read.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    Haar(Vec<Feature>),
    Lbp(Vec<LbpFeature>),
}

impl Features {
    fn len(&self) -> usize {
        match self {
            Features::Haar(f) => f.len(),
            Features::Lbp(f) => f.len(),
        }
    }
}

/// How a tree node splits: a Haar feature's normalised value below the threshold goes left; an
/// LBP code whose bit is set in the 256-bit subset goes left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    Threshold(f32),
    Subset([u32; 8]),
}

/// A node of a weak classifier's tree. A child index above 0 is another node of the same tree;
/// 0 or below is leaf `-index` (OpenCV's encoding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeNode {
    pub feature: usize,
    pub split: Split,
    pub left: i32,
    pub right: i32,
}

/// A weak classifier: a tree (one node for a stump) and its leaves' votes.
#[derive(Clone, Debug, PartialEq)]
pub struct WeakClassifier {
    pub nodes: Vec<TreeNode>,
    pub leaves: Vec<f32>,
}

/// A stage passes a window when the sum of its weak classifiers' votes reaches `threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub threshold: f32,
    pub weak: Vec<WeakClassifier>,
}

/// A boosted cascade of Haar or LBP features.
#[derive(Clone, Debug, PartialEq)]
pub struct Cascade {
    /// The window the features are defined in, (width, height).
    pub window: (usize, usize),
    pub stages: Vec<Stage>,
    pub features: Features,
}

/// The largest cascade file read: 64 MB, or `$FERKIT_MAX_XML_BYTES`. OpenCV's own cascades are
/// 0.05-2.7 MB; the XML tree roxmltree builds takes several times the text's size.
pub fn max_xml_bytes() -> u64 {
    std::env::var("FERKIT_MAX_XML_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(64_000_000)
}

impl Cascade {
    /// Reads a cascade XML file; errors name the file and, where there is one, the line.
    /// Errors: a file larger than [`max_xml_bytes`] (refused before it is read), unreadable,
    /// not UTF-8, not XML, or not a cascade OpenCV could use.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_limited(path, max_xml_bytes())
    }

    fn load_limited(path: &Path, limit: u64) -> Result<Self> {
        use std::io::Read;
        let cannot = || format!("{}: cannot read the cascade file", path.display());
        let too_large = |size: String| {
            crate::err!(
                BadInput @ "max_xml_bytes",
                "{}: {size} bytes, more than the limit of {limit} for a cascade file (OpenCV's largest is about 2.7 MB; set FERKIT_MAX_XML_BYTES to allow more)",
                path.display()
            )
        };
        let size = std::fs::metadata(path).with_context(cannot)?.len();
        if size > limit {
            return Err(too_large(size.to_string()).into());
        }
        // Read at most one byte past the limit: a pipe, /proc file or growing file reports
        // another size than it holds.
        let mut bytes = Vec::new();
        std::fs::File::open(path).with_context(cannot)?.take(limit + 1).read_to_end(&mut bytes).with_context(cannot)?;
        if bytes.len() as u64 > limit {
            return Err(too_large(format!("over {limit}")).into());
        }
        let text = String::from_utf8(bytes).map_err(|_| crate::err!(BadInput, "{}: not UTF-8 text", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}: not a usable OpenCV cascade", path.display()))
    }

    /// Parses a cascade from XML text.
    pub fn parse(xml: &str) -> Result<Self> {
        let doc = Document::parse(xml).map_err(|e| crate::err!(BadInput, "invalid XML: {e}"))?;
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
            bail!(BadInput, "{}: window {w}x{h} is too small", at(doc, top));
        }
        if self.stages.is_empty() {
            bail!(BadInput, "{}: no stages", at(doc, top));
        }
        match &self.features {
            Features::Haar(features) => {
                for (i, f) in features.iter().enumerate() {
                    if f.rects.len() < 2 || f.rects.len() > 3 {
                        bail!(BadInput, "feature {i}: {} rectangles (a Haar feature has 2 or 3)", f.rects.len());
                    }
                    for r in &f.rects {
                        if r.width == 0 || r.height == 0 || r.x + r.width > w || r.y + r.height > h {
                            bail!(
                                BadInput,
                                "feature {i}: rectangle {} {} {} {} is not inside the {w}x{h} window",
                                r.x,
                                r.y,
                                r.width,
                                r.height
                            );
                        }
                    }
                }
            }
            Features::Lbp(features) => {
                for (i, f) in features.iter().enumerate() {
                    if f.width == 0 || f.height == 0 || f.x + 3 * f.width > w || f.y + 3 * f.height > h {
                        bail!(
                            BadInput,
                            "feature {i}: the 3x3 grid of {}x{} cells at ({}, {}) is not inside the {w}x{h} window",
                            f.width,
                            f.height,
                            f.x,
                            f.y
                        );
                    }
                }
            }
        }
        let lbp = matches!(self.features, Features::Lbp(_));
        for (s, stage) in self.stages.iter().enumerate() {
            if stage.weak.is_empty() {
                bail!(BadInput, "stage {s} has no weak classifiers");
            }
            for (k, weak) in stage.weak.iter().enumerate() {
                if weak.nodes.is_empty() {
                    bail!(BadInput, "stage {s}, weak classifier {k}: no nodes");
                }
                for node in &weak.nodes {
                    if node.feature >= self.features.len() {
                        bail!(
                            BadInput,
                            "stage {s}: feature {} does not exist ({} features)",
                            node.feature,
                            self.features.len()
                        );
                    }
                    if lbp != matches!(node.split, Split::Subset(_)) {
                        bail!(BadInput, "stage {s}, weak classifier {k}: the split does not fit the feature type");
                    }
                    for child in [node.left, node.right] {
                        // Children point forward (OpenCV trees are stored root first), so a walk ends.
                        let fits = if child > 0 {
                            (child as usize) < weak.nodes.len()
                        } else {
                            (child.unsigned_abs() as usize) < weak.leaves.len()
                        };
                        if !fits {
                            bail!(
                                BadInput,
                                "stage {s}, weak classifier {k}: child {child} is outside its {} nodes and {} leaves",
                                weak.nodes.len(),
                                weak.leaves.len()
                            );
                        }
                    }
                }
                for (i, node) in weak.nodes.iter().enumerate() {
                    if [node.left, node.right].iter().any(|&c| c > 0 && c as usize <= i) {
                        bail!(BadInput, "stage {s}, weak classifier {k}: node {i} points back to an earlier node");
                    }
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
        other => bail!(BadInput, "{}: <{name}> holds {} numbers, expected one", at(doc, n), other.len()),
    }
}

fn index(doc: &Document, node: Node, value: f64, what: &str) -> Result<usize> {
    if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
        bail!(BadInput, "{}: {what} {value} is not a whole number >= 0", at(doc, node));
    }
    Ok(value as usize)
}

fn parse_rects(doc: &Document, feature: Node) -> Result<Feature> {
    if let Some(t) = feature.children().find(|c| c.has_tag_name("tilted"))
        && number(doc, feature, "tilted")? != 0.0
    {
        bail!(BadInput, "{}: tilted (45-degree) features are not supported", at(doc, t));
    }
    let rects = items(child(doc, feature, "rects")?)
        .map(|r| {
            let v = numbers(doc, r)?;
            let [x, y, w, h, weight] = v[..] else {
                bail!(BadInput, "{}: a rectangle is `x y width height weight`, found {} numbers", at(doc, r), v.len());
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

/// The current layout: `<stageType>BOOST</stageType><featureType>HAAR|LBP</featureType>`, weak
/// classifiers as `<internalNodes>` (per node: left, right, feature, then the threshold for
/// Haar or eight 32-bit subset words for LBP) and `<leafValues>`, features listed once at the end.
fn parse_current(doc: &Document, top: Node) -> Result<Cascade> {
    let text = |name: &str| -> Result<String> { Ok(child(doc, top, name)?.text().unwrap_or("").trim().to_string()) };
    if text("stageType")? != "BOOST" {
        bail!(BadInput, "{}: stage type `{}` is not supported (BOOST only)", at(doc, top), text("stageType")?);
    }
    let lbp = match text("featureType")?.as_str() {
        "HAAR" => false,
        "LBP" => true,
        other => bail!(BadInput, "{}: feature type `{other}` is not supported (HAAR and LBP are)", at(doc, top)),
    };
    let width = index(doc, top, number(doc, top, "width")?, "width")?;
    let height = index(doc, top, number(doc, top, "height")?, "height")?;
    // Per node: left, right, feature index, then one threshold or eight subset words.
    let node_len = if lbp { 11 } else { 4 };
    let mut stages = Vec::new();
    for stage in items(child(doc, top, "stages")?) {
        let threshold = number(doc, stage, "stageThreshold")? as f32 - THRESHOLD_EPS;
        let mut weak = Vec::new();
        for classifier in items(child(doc, stage, "weakClassifiers")?) {
            let nodes_el = child(doc, classifier, "internalNodes")?;
            let numbers_ = numbers(doc, nodes_el)?;
            let leaves = numbers(doc, child(doc, classifier, "leafValues")?)?;
            if numbers_.is_empty() || numbers_.len() % node_len != 0 || leaves.len() != numbers_.len() / node_len + 1 {
                bail!(
                    BadInput,
                    "{}: {} tree node is {node_len} numbers and a tree of n nodes has n + 1 leaves; found {} numbers and {} leaves",
                    at(doc, nodes_el),
                    if lbp { "an LBP" } else { "a Haar" },
                    numbers_.len(),
                    leaves.len()
                );
            }
            let mut nodes = Vec::new();
            for n in numbers_.chunks(node_len) {
                let child_index = |v: f64| -> Result<i32> {
                    if v.fract() != 0.0 || v.abs() > 1e6 {
                        bail!(BadInput, "{}: child index {v} is not a whole number", at(doc, nodes_el));
                    }
                    Ok(v as i32)
                };
                let split = if lbp {
                    let mut words = [0u32; 8];
                    for (w, &v) in words.iter_mut().zip(&n[3..]) {
                        if v.fract() != 0.0 || v < i32::MIN as f64 || v > u32::MAX as f64 {
                            bail!(BadInput, "{}: subset word {v} is not a 32-bit integer", at(doc, nodes_el));
                        }
                        // Stored as signed 32-bit integers; only the bits matter.
                        *w = v as i64 as u32;
                    }
                    Split::Subset(words)
                } else {
                    Split::Threshold(n[3] as f32)
                };
                nodes.push(TreeNode {
                    feature: index(doc, nodes_el, n[2], "feature index")?,
                    split,
                    left: child_index(n[0])?,
                    right: child_index(n[1])?,
                });
            }
            weak.push(WeakClassifier { nodes, leaves: leaves.iter().map(|&v| v as f32).collect() });
        }
        stages.push(Stage { threshold, weak });
    }
    let features_el = child(doc, top, "features")?;
    let features = if lbp {
        Features::Lbp(
            items(features_el)
                .map(|f| {
                    let rect = child(doc, f, "rect")?;
                    let v = numbers(doc, rect)?;
                    let [x, y, w, h] = v[..] else {
                        bail!(
                            BadInput,
                            "{}: an LBP rectangle is `x y width height`, found {} numbers",
                            at(doc, rect),
                            v.len()
                        );
                    };
                    Ok(LbpFeature {
                        x: index(doc, rect, x, "x")?,
                        y: index(doc, rect, y, "y")?,
                        width: index(doc, rect, w, "width")?,
                        height: index(doc, rect, h, "height")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        Features::Haar(items(features_el).map(|f| parse_rects(doc, f)).collect::<Result<Vec<_>>>()?)
    };
    Ok(Cascade { window: (width, height), stages, features })
}

/// The original layout: `<size>24 24</size>`, stages of `<trees>`, each tree a list of nodes
/// with an inline `<feature>`, `<threshold>`, `<left_val>` and `<right_val>`.
fn parse_original(doc: &Document, top: Node) -> Result<Cascade> {
    let size_el = child(doc, top, "size")?;
    let [w, h] = numbers(doc, size_el)?[..] else {
        bail!(BadInput, "{}: <size> must hold `width height`", at(doc, size_el));
    };
    let window = (index(doc, size_el, w, "width")?, index(doc, size_el, h, "height")?);
    let mut stages = Vec::new();
    let mut features = Vec::new();
    for stage in items(child(doc, top, "stages")?) {
        let threshold = number(doc, stage, "stage_threshold")? as f32 - THRESHOLD_EPS;
        let mut weak = Vec::new();
        for tree in items(child(doc, stage, "trees")?) {
            let nodes: Vec<Node> = items(tree).collect();
            let [node] = nodes[..] else {
                bail!(
                    BadInput,
                    "{}: only stumps (trees of one node) are supported; this tree has {}",
                    at(doc, tree),
                    nodes.len()
                );
            };
            features.push(parse_rects(doc, child(doc, node, "feature")?)?);
            let split = Split::Threshold(number(doc, node, "threshold")? as f32);
            weak.push(WeakClassifier {
                nodes: vec![TreeNode { feature: features.len() - 1, split, left: 0, right: -1 }],
                leaves: vec![number(doc, node, "left_val")? as f32, number(doc, node, "right_val")? as f32],
            });
        }
        stages.push(Stage { threshold, weak });
    }
    Ok(Cascade { window, stages, features: Features::Haar(features) })
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

    /// Issue 20: a cascade file past the size limit is refused by name before it is read.
    #[test]
    fn a_cascade_file_past_the_size_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.xml");
        std::fs::write(&path, CURRENT).unwrap();
        let err = format!("{:#}", Cascade::load_limited(&path, 100).unwrap_err());
        assert!(err.contains("big.xml") && err.contains("more than the limit of 100"), "{err}");
        assert!(Cascade::load_limited(&path, CURRENT.len() as u64).is_ok());
    }

    #[test]
    fn reads_the_current_layout() {
        let c = Cascade::parse(CURRENT).unwrap();
        assert_eq!(c.window, (6, 4));
        assert_eq!(c.stages.len(), 1);
        assert_eq!(c.stages[0].threshold, -1.5 - THRESHOLD_EPS);
        let stump = TreeNode { feature: 1, split: Split::Threshold(0.25), left: 0, right: -1 };
        assert_eq!(c.stages[0].weak[0], WeakClassifier { nodes: vec![stump], leaves: vec![-1.0, 1.0] });
        let Features::Haar(features) = &c.features else { panic!("a Haar cascade") };
        assert_eq!(features[0].rects[1], WeightedRect { x: 0, y: 0, width: 3, height: 4, weight: 2.0 });
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
        let c = Cascade::parse(xml).unwrap();
        let current = Cascade::parse(CURRENT).unwrap();
        assert_eq!(c.window, current.window);
        assert_eq!(c.stages[0].threshold, current.stages[0].threshold);
        let (Features::Haar(ours), Features::Haar(theirs)) = (&c.features, &current.features) else { panic!() };
        // Same stumps over the same rectangles; only the feature numbering differs.
        for (a, b) in c.stages[0].weak.iter().zip(&current.stages[0].weak) {
            assert_eq!(a.leaves, b.leaves);
            assert_eq!(
                (a.nodes[0].split, a.nodes[0].left, a.nodes[0].right),
                (b.nodes[0].split, b.nodes[0].left, b.nodes[0].right)
            );
            assert_eq!(ours[a.nodes[0].feature], theirs[b.nodes[0].feature]);
        }
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            (CURRENT.replace("0 -1 1 0.25", "0 -1 7 0.25"), "feature 7 does not exist"),
            (CURRENT.replace("0 -1 1 0.25", "1 2 1 0.25 0 -1 0 0.5"), "line 13: a Haar tree node is 4 numbers"),
            (CURRENT.replace("0 -1 1 0.25", "1 -1 1 0.25 1 -2 0 0.5").replace("-1. 1.", "-1. 1. 2."), "points back"),
            (
                CURRENT.replace("0 -1 1 0.25", "1 -1 1 0.25 0 -3 0 0.5").replace("-1. 1.", "-1. 1. 2."),
                "child -3 is outside",
            ),
            (CURRENT.replace("0 0 3 4 2.", "4 0 3 4 2."), "not inside the 6x4 window"),
            (CURRENT.replace("<tilted>0</tilted>", "<tilted>1</tilted>"), "line 18: tilted"),
            (CURRENT.replace("-1.5", "low"), "line 11: `low` in <stageThreshold> is not a number"),
            (CURRENT.replace("HAAR", "HOG"), "feature type `HOG` is not supported"),
            (CURRENT.replace("HAAR", "LBP"), "an LBP tree node is 11 numbers"),
            (CURRENT.replace("</features>", ""), "invalid XML"),
        ];
        for (xml, expected) in cases {
            let err = format!("{:#}", Cascade::parse(&xml).unwrap_err());
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        }
    }

    #[test]
    fn reads_trees_and_lbp_cascades() {
        // alt2-style tree: node 0 splits to leaf 0 or node 1; node 1 to leaves 1 and 2.
        let tree = CURRENT
            .replace("0 -1 1 0.25", "0 1 1 0.25 -1 -2 0 0.5")
            .replace("-1. 1.</leafValues>", "-1. 1. 3.</leafValues>");
        let c = Cascade::parse(&tree).unwrap();
        assert_eq!(c.stages[0].weak[0].nodes.len(), 2);
        assert_eq!((c.stages[0].weak[0].nodes[1].left, c.stages[0].weak[0].nodes[1].right), (-1, -2));
        assert_eq!(c.stages[0].weak[0].leaves, [-1.0, 1.0, 3.0]);

        let lbp = r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>LBP</featureType><height>6</height><width>9</width>
  <stages><_><stageThreshold>-0.5</stageThreshold>
      <weakClassifiers>
        <_><internalNodes>0 -1 0 -67130709 -21569 0 1 2 3 4 -1</internalNodes>
          <leafValues>-0.65 0.88</leafValues></_></weakClassifiers></_></stages>
  <features><_><rect>0 0 3 2</rect></_></features></cascade>
</opencv_storage>"#;
        let c = Cascade::parse(lbp).unwrap();
        assert_eq!(c.features, Features::Lbp(vec![LbpFeature { x: 0, y: 0, width: 3, height: 2 }]));
        let node = c.stages[0].weak[0].nodes[0];
        assert_eq!(node.split, Split::Subset([-67130709i32 as u32, -21569i32 as u32, 0, 1, 2, 3, 4, u32::MAX]));
        // A grid that does not fit the window is refused.
        let err = format!("{:#}", Cascade::parse(&lbp.replace("0 0 3 2", "1 0 3 2")).unwrap_err());
        assert!(err.contains("not inside the 9x6 window"), "{err}");
    }
}

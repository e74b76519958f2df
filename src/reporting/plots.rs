//! Pictures: training curves, confusion matrices, face grids, annotated photos and video
//! frames, and a video's emotion timelines, as PNG (video frames are marked in memory).
//!
//! Everything is drawn into an RGB buffer with plotters (text in the Ubuntu font embedded by
//! `epaint_default_fonts`, so no system font is needed) and saved atomically with `image`.

use std::path::Path;
use std::sync::Once;

use crate::error::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::{CLASS_NAMES, IMAGE_SIDE, NUM_CLASSES, Split};
use crate::detection::BoundingBox;
use crate::evaluation::Confusion;
use crate::run::history::EpochRecord;
use crate::util::atomic::write_atomic_with;

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType file"));
    });
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws with `draw` on a white `width` x `height` canvas and saves it as PNG at `path`.
fn render_png(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    render_png_on(path, vec![255u8; (width * height * 3) as usize], (width, height), draw)
}

/// Draws with `draw` over an RGB picture and saves the result as PNG at `path`.
fn render_png_on(
    path: &Path,
    mut buffer: Vec<u8>,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    register_font();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| crate::err!(Internal, "drawing {}: {e}", path.display()))?;
    }
    write_atomic_with(path, |tmp| {
        image::save_buffer_with_format(
            tmp,
            &buffer,
            width,
            height,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .with_context(|| format!("{}: cannot write the PNG", tmp.display()))
    })
}

fn drawing<E: std::fmt::Display>(e: E) -> crate::error::Error {
    crate::err!(Internal, "drawing failed: {e}")
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A captioned chart with a labelled grid over `x` (whole numbers: epochs, trials) and `y`.
fn chart_frame<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x_desc: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>> {
    let whole_numbers = (x.end.floor() - x.start.ceil()) as usize + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(whole_numbers.clamp(2, 20))
        .x_label_formatter(&|v| if v.fract() == 0.0 { format!("{v:.0}") } else { String::new() })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(drawing)?;
    Ok(chart)
}

/// The labelled series' legend, in the chart's upper right corner (kept free of data by
/// [`padded_range`]'s headroom).
fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(drawing)
}

/// The range of the finite `values`, widened by `margin` of its width below and, so that the
/// legend has a band of its own, `LEGEND_HEADROOM` above; 0..1 when none is finite.
fn padded_range(values: impl Iterator<Item = f64>, margin: f64) -> std::ops::Range<f64> {
    const LEGEND_HEADROOM: f64 = 0.3;
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let width = (hi - lo).max(1e-3);
    (lo - width * margin)..(hi + width * (margin + LEGEND_HEADROOM))
}

/// Loss and accuracy per epoch, training vs validation, side by side.
pub fn plot_curves(history: &[EpochRecord], title: &str, path: &Path) -> Result<()> {
    render_png(path, (1200, 450), |root| {
        let (left, right) = root.split_horizontally(600);
        let epochs: Vec<f64> = history.iter().map(|r| r.epoch as f64).collect();
        let series = |f: fn(&EpochRecord) -> f64| history.iter().map(f).collect::<Vec<f64>>();
        line_panel(&left, &format!("{title}: loss"), &epochs, &series(|r| r.train_loss), &series(|r| r.val_loss))?;
        line_panel(
            &right,
            &format!("{title}: accuracy"),
            &epochs,
            &series(|r| r.train_accuracy),
            &series(|r| r.val_accuracy),
        )
    })
}

fn line_panel(area: &Area, caption: &str, x: &[f64], train: &[f64], val: &[f64]) -> Result<()> {
    let x_max = x.last().copied().unwrap_or(1.0).max(2.0);
    let y = padded_range(train.iter().chain(val).copied(), 0.08);
    let mut chart = chart_frame(area, caption, "epoch", 1.0..x_max, y)?;
    for (values, color, label) in [(train, BLUE, "train"), (val, RED, "validation")] {
        let points: Vec<(f64, f64)> =
            x.iter().copied().zip(values.iter().copied()).filter(|(_, v)| v.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(drawing)?;
    }
    draw_legend(&mut chart)
}

/// The confusion matrix with counts, coloured by the share of each true class (row).
pub fn plot_confusion(confusion: &Confusion, title: &str, path: &Path) -> Result<()> {
    let cell = 80i32;
    let (left, top) = (120i32, 70i32);
    let size = (left + cell * NUM_CLASSES as i32 + 30, top + cell * NUM_CLASSES as i32 + 80);
    render_png(path, (size.0 as u32, size.1 as u32), |root| {
        let text = |s: &str, pos: (i32, i32), size: u32| -> Result<()> {
            let style = TextStyle::from((FONT, size).into_font()).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
            root.draw(&Text::new(s.to_string(), pos, style)).map_err(drawing)
        };
        text(title, (size.0 / 2, 22), 20)?;
        text("predicted", (left + cell * NUM_CLASSES as i32 / 2, top - 30), 15)?;
        text("true", (30, top + cell * NUM_CLASSES as i32 / 2), 15)?;
        for t in 0..NUM_CLASSES {
            let row_total: usize = confusion.counts[t].iter().sum();
            text(CLASS_NAMES[t], (left - 45, top + cell * t as i32 + cell / 2), 14)?;
            text(CLASS_NAMES[t], (left + cell * t as i32 + cell / 2, top + cell * NUM_CLASSES as i32 + 15), 14)?;
            for p in 0..NUM_CLASSES {
                let count = confusion.counts[t][p];
                let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
                let shade = (255.0 * (1.0 - share)) as u8;
                let (x0, y0) = (left + cell * p as i32, top + cell * t as i32);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], RGBColor(shade, shade, 255).filled()))
                    .map_err(drawing)?;
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], BLACK.mix(0.3))).map_err(drawing)?;
                text(&format!("{count}"), (x0 + cell / 2, y0 + cell / 2 - 8), 16)?;
                text(&format!("{:.0}%", share * 100.0), (x0 + cell / 2, y0 + cell / 2 + 12), 12)?;
            }
        }
        Ok(())
    })
}

/// Faces in a grid, one column per class with its name on top, `per_class` rows.
/// The faces are the first `per_class` rows of each class in the split.
pub fn face_grid(split: &Split, per_class: usize, path: &Path) -> Result<()> {
    let mut picks: Vec<Vec<usize>> = vec![Vec::new(); NUM_CLASSES];
    for i in 0..split.len() {
        let class = split.label(i) as usize;
        if picks[class].len() < per_class {
            picks[class].push(i);
        }
    }
    // Column-major: cell (row r, class c) is picks[c][r]; classes with fewer faces leave gaps.
    let mut cells = Vec::new();
    for r in 0..per_class {
        for (class, rows) in picks.iter().enumerate() {
            let label = if r == 0 { CLASS_NAMES[class].to_string() } else { String::new() };
            cells.push((label, rows.get(r).map(|&i| split.image(i).to_vec())));
        }
    }
    draw_faces(&cells, NUM_CLASSES, path)
}

/// The notebook's 3 x 5 preview: the first 15 training faces, standardised and augmented with
/// `config` (seeded), each under its class name.
pub fn augment_preview(
    split: &Split,
    config: &crate::data::augment::AugmentConfig,
    seed: u64,
    path: &Path,
) -> Result<()> {
    use crate::data::batch::{EpochAugment, Preprocess, prepare_batch};
    let rows: Vec<usize> = (0..split.len().min(15)).collect();
    crate::ensure!(Internal, !rows.is_empty(), "the data has no training rows");
    let batch = prepare_batch(split, &rows, Preprocess::PerImage, Some(EpochAugment { config, seed, epoch: 0 }));
    let cells: Vec<(String, Option<Vec<u8>>)> = rows
        .iter()
        .zip(batch.pixels.chunks(crate::data::IMAGE_PIXELS))
        .map(|(&i, image)| (CLASS_NAMES[split.label(i) as usize].to_string(), Some(to_grey(image))))
        .collect();
    draw_faces(&cells, 5, path)
}

/// Grey levels for a standardised (or any float) image: its own minimum to maximum.
pub fn to_grey(image: &[f32]) -> Vec<u8> {
    let (lo, hi) = image.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    image.iter().map(|&v| ((v - lo) * scale).round() as u8).collect()
}

/// 48x48 faces in a grid of `cols` columns, each with a label above it (empty cells stay blank).
pub fn draw_faces(cells: &[(String, Option<Vec<u8>>)], cols: usize, path: &Path) -> Result<()> {
    let scale = 3usize;
    let side = IMAGE_SIDE * scale;
    let (gap, label) = (10usize, 26usize);
    let rows = cells.len().div_ceil(cols);
    let width = cols * (side + gap) + gap;
    let height = rows * (side + gap + label) + gap;
    render_png(path, (width as u32, height as u32), |root| {
        let style = TextStyle::from((FONT, 18).into_font()).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        for (k, (text, face)) in cells.iter().enumerate() {
            let (x0, y0) = (gap + (k % cols) * (side + gap), gap / 2 + (k / cols) * (side + gap + label));
            if !text.is_empty() {
                root.draw(&Text::new(text.clone(), ((x0 + side / 2) as i32, (y0 + label / 2) as i32), style.clone()))
                    .map_err(drawing)?;
            }
            let Some(face) = face else { continue };
            for (p, &g) in face.iter().enumerate() {
                let (x, y) = ((x0 + (p % IMAGE_SIDE) * scale) as i32, (y0 + label + (p / IMAGE_SIDE) * scale) as i32);
                root.draw(&Rectangle::new([(x, y), (x + scale as i32, y + scale as i32)], RGBColor(g, g, g).filled()))
                    .map_err(drawing)?;
            }
        }
        Ok(())
    })
}

/// What is drawn for one face on a photo: its box, a label above it (e.g. "happy 87%") and
/// landmark points, if any.
pub struct FaceMark {
    pub bbox: BoundingBox,
    pub label: String,
    pub points: Vec<[f32; 2]>,
}

/// A photo with its faces marked, saved as PNG at `path`.
pub fn annotate_photo(photo: &image::RgbImage, faces: &[FaceMark], path: &Path) -> Result<()> {
    let mut marked = photo.clone();
    draw_face_marks(&mut marked, faces)?;
    let (width, height) = marked.dimensions();
    render_png_on(path, marked.into_raw(), (width, height), |_| Ok(()))
}

/// Draws `faces` (box, label band, landmark points) onto `picture` in place: a photo, or a video
/// frame on its way to the encoder. Line width and text size follow the picture's size.
pub fn draw_face_marks(picture: &mut image::RgbImage, faces: &[FaceMark]) -> Result<()> {
    if faces.is_empty() {
        return Ok(());
    }
    register_font();
    let (width, height) = picture.dimensions();
    // Line width and text size follow the photo's size, so labels stay readable on large photos.
    let line = (width.max(height) / 250).max(2) as i32;
    let font_size = (width.max(height) as f64 / 28.0).clamp(14.0, 96.0);
    let root = BitMapBackend::with_buffer(picture.as_mut(), (width, height)).into_drawing_area();
    let colour = RGBColor(255, 200, 0);
    let style = TextStyle::from((FONT, font_size).into_font()).color(&BLACK);
    for face in faces {
        let b = face.bbox;
        let (x0, y0) = (b.x as i32, b.y as i32);
        let (x1, y1) = (x0 + b.width as i32, y0 + b.height as i32);
        for k in 0..line {
            root.draw(&Rectangle::new([(x0 - k, y0 - k), (x1 + k, y1 + k)], colour.stroke_width(1)))
                .map_err(drawing)?;
        }
        for p in &face.points {
            root.draw(&Circle::new(
                (p[0].round() as i32, p[1].round() as i32),
                line + 1,
                RGBColor(0, 220, 255).filled(),
            ))
            .map_err(drawing)?;
        }
        let (tw, th) = root.estimate_text_size(&face.label, &style).map_err(drawing)?;
        let (tw, th) = (tw as i32 + 8, th as i32 + 6);
        // The label sits on a filled band above the box, or inside it at the photo's top edge.
        let ty = if y0 - line - th >= 0 { y0 - line - th } else { y0 };
        root.draw(&Rectangle::new([(x0 - line, ty), (x0 - line + tw, ty + th)], colour.filled())).map_err(drawing)?;
        root.draw(&Text::new(face.label.clone(), (x0 - line + 4, ty + 3), style.clone())).map_err(drawing)?;
    }
    root.present().map_err(drawing)?;
    Ok(())
}

/// One face track's class probabilities over a video (`times` in seconds, `probabilities` one
/// row of seven per time, in [`CLASS_NAMES`] order), a line per class, saved as PNG at `path`.
pub fn plot_timeline(times: &[f64], probabilities: &[[f32; NUM_CLASSES]], title: &str, path: &Path) -> Result<()> {
    render_png(path, (900, 420), |root| {
        let (start, end) = match (times.first(), times.last()) {
            (Some(&a), Some(&b)) if b > a => (a, b),
            (Some(&a), _) => (a - 0.5, a + 0.5),
            _ => (0.0, 1.0),
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(start..end, 0.0..1.0)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("probability")
            .label_style((FONT, 14))
            .draw()
            .map_err(drawing)?;
        for (c, name) in CLASS_NAMES.iter().enumerate() {
            let colour = Palette99::pick(c).to_rgba();
            let points: Vec<(f64, f64)> = times.iter().zip(probabilities).map(|(&t, p)| (t, p[c] as f64)).collect();
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(drawing)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(drawing)?;
        Ok(())
    })
}

/// A search's objective per trial (points) and the best so far (a step line). Failed or
/// unfinished trials have no point.
pub fn plot_trials(points: &[(usize, Option<f64>)], maximize: bool, path: &Path) -> Result<()> {
    render_png(path, (800, 450), |root| {
        let values: Vec<(f64, f64)> =
            points.iter().filter_map(|(t, v)| v.filter(|v| v.is_finite()).map(|v| (*t as f64, v))).collect();
        let y = padded_range(values.iter().map(|(_, v)| *v), 0.1);
        let x_max = points.len().max(2) as f64 - 0.5;
        let caption =
            if maximize { "objective per trial (higher is better)" } else { "objective per trial (lower is better)" };
        let mut chart = chart_frame(root, caption, "trial", -0.5..x_max, y)?;
        chart
            .draw_series(values.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
            .map_err(drawing)?
            .label("trial")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
        // Best so far changes only at a trial: a staircase (the previous best, then the new one
        // at each trial), not a slope between trials.
        let mut best: Option<f64> = None;
        let steps: Vec<(f64, f64)> = values
            .iter()
            .flat_map(|(t, v)| {
                let b = match best {
                    Some(b) if (maximize && b >= *v) || (!maximize && b <= *v) => b,
                    _ => *v,
                };
                let previous = best.replace(b).unwrap_or(b);
                [(*t, previous), (*t, b)]
            })
            .collect();
        chart
            .draw_series(LineSeries::new(steps, RED.stroke_width(2)))
            .map_err(drawing)?
            .label("best so far")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        draw_legend(&mut chart)
    })
}

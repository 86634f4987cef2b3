//! The recall–QPS plot: one colour per engine, every setting a point, the engine's Pareto
//! frontier (no other setting both more accurate and faster) as a line; queries per second on
//! a log axis. Drawn with plotters, as SVG and as PNG, with an embedded font so the plot looks
//! the same on every machine.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font as add_font};

use crate::run::Record;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const WIDTH: u32 = 900;
const HEIGHT: u32 = 600;

/// Registers the embedded font once.
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse.
        let _ = add_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// The queries/s axis of a plot: the positive rates with a margin each side (log scale), or
/// 1..10 when there are none.
pub(crate) fn qps_axis(qps: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = qps
        .filter(|q| *q > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), q| {
            (lo.min(q), hi.max(q))
        });
    if hi > 0.0 {
        (lo / 1.5, hi * 1.5)
    } else {
        (1.0, 10.0)
    }
}

/// The settings of one engine not beaten on both recall and speed, by recall.
pub fn pareto(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points.to_vec();
    // Best speed first among equal recall, then by recall descending.
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let mut frontier: Vec<(f64, f64)> = Vec::new();
    let mut best_qps = f64::NEG_INFINITY;
    for p in sorted {
        if p.1 > best_qps {
            frontier.push(p);
            best_qps = p.1;
        }
    }
    frontier.reverse();
    frontier
}

/// Draws `records` (single-thread q/s against recall) to `path`: SVG, or PNG when the name
/// ends in `.png`.
pub fn draw(path: &Path, records: &[Record], title: &str) -> Result<(), String> {
    register_font();
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        chart(root, records, title)
    } else {
        let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        chart(root, records, title)
    }
}

fn chart<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    records: &[Record],
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (lo, hi) = qps_axis(records.iter().map(|r| r.qps_single));
    let r_min = records
        .iter()
        .map(|r| r.recall)
        .fold(1.0f64, f64::min)
        .clamp(0.0, 1.0);
    let x_lo = (r_min - 0.05).max(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..1.0f64, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("recall@k")
        .y_desc("queries per second, one thread (log)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let mut engines: Vec<&str> = records.iter().map(|r| r.engine).collect();
    engines.dedup();
    engines.sort_unstable();
    engines.dedup();
    for (i, engine) in engines.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.engine == *engine && r.qps_single > 0.0)
            .map(|r| (r.recall, r.qps_single))
            .collect();
        let frontier = pareto(&points);
        chart
            .draw_series(LineSeries::new(frontier, colour.stroke_width(2)))
            .map_err(err)?
            .label(*engine)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_drops_dominated_settings() {
        // (recall, qps): (0.9, 50) is beaten by (0.95, 60).
        let pts = [(0.8, 100.0), (0.9, 50.0), (0.95, 60.0), (0.99, 20.0)];
        assert_eq!(pareto(&pts), vec![(0.8, 100.0), (0.95, 60.0), (0.99, 20.0)]);
    }
}

//! The `aimp bench filter` plot: for uncorrelated (left) and correlated (right) filters,
//! queries per second at each engine's cheapest setting with recall ≥ 0.95 (top; an engine
//! that never reaches it at a selectivity has no point there) and recall at its default
//! setting (bottom), against the share of items the filter passes, on log axes.

use std::path::Path;

use plotters::prelude::*;

use crate::filter::{Correlation, FilterRecord, cheapest_at};
use crate::plot::{qps_axis, register_font};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;
const TARGET: f64 = 0.95;

/// Draws `records` to `path`: SVG, or PNG when the name ends in `.png`.
pub fn draw(path: &Path, records: &[FilterRecord], title: &str) -> Result<(), String> {
    register_font();
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png {
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        charts(root, records, title)
    } else {
        let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        charts(root, records, title)
    }
}

fn engines(records: &[FilterRecord]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.engine.as_str()) {
            names.push(&r.engine);
        }
    }
    names
}

fn selectivities(records: &[FilterRecord]) -> Vec<f64> {
    let mut s: Vec<f64> = records.iter().map(|r| r.selectivity).collect();
    s.sort_by(f64::total_cmp);
    s.dedup();
    s
}

/// The record of `engine` at its default setting on a case: no `ef`, else `ef` 64, else the
/// first.
pub fn default_of<'a>(
    records: &'a [FilterRecord],
    engine: &str,
    correlation: Correlation,
    selectivity: f64,
) -> Option<&'a FilterRecord> {
    let mut same = records.iter().filter(|r| {
        r.engine == engine && r.correlation == correlation && r.selectivity == selectivity
    });
    let all: Vec<&FilterRecord> = same.by_ref().collect();
    all.iter()
        .find(|r| r.ef.is_none())
        .or_else(|| all.iter().find(|r| r.ef == Some(64)))
        .or(all.first())
        .copied()
}

fn charts<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    records: &[FilterRecord],
    title: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let panels = root.split_evenly((2, 2));
    let names = engines(records);
    let shares = selectivities(records);
    let (x_lo, x_hi) = match (shares.first(), shares.last()) {
        (Some(lo), Some(hi)) => (lo * 0.7, (hi * 1.3).min(1.5)),
        _ => (0.001, 1.0),
    };
    let (q_lo, q_hi) = qps_axis(records.iter().map(|r| r.qps_single));
    for (col, correlation) in [Correlation::Uncorrelated, Correlation::Correlated]
        .into_iter()
        .enumerate()
    {
        let mut top = ChartBuilder::on(&panels[col])
            .caption(
                format!("{}: queries/s at recall ≥ {TARGET}", correlation.as_str()),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(65)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (q_lo..q_hi).log_scale())
            .map_err(err)?;
        top.configure_mesh()
            .x_desc("share of items passing the filter (log)")
            .y_desc("queries/s, one thread (log)")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let mut bottom = ChartBuilder::on(&panels[2 + col])
            .caption(
                format!("{}: recall@k at the default setting", correlation.as_str()),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(65)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..1.02f64)
            .map_err(err)?;
        bottom
            .configure_mesh()
            .x_desc("share of items passing the filter (log)")
            .y_desc("recall@k")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        for (i, engine) in names.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let fast: Vec<(f64, f64)> = shares
                .iter()
                .filter_map(|&s| {
                    cheapest_at(records, engine, correlation, s, TARGET).map(|r| (s, r.qps_single))
                })
                .collect();
            top.draw_series(LineSeries::new(fast.clone(), colour.stroke_width(2)))
                .map_err(err)?
                .label(*engine)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            top.draw_series(fast.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
            let recall: Vec<(f64, f64)> = shares
                .iter()
                .filter_map(|&s| default_of(records, engine, correlation, s).map(|r| (s, r.recall)))
                .collect();
            bottom
                .draw_series(LineSeries::new(recall.clone(), colour.stroke_width(2)))
                .map_err(err)?;
            bottom
                .draw_series(recall.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
        }
        top.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(engine: &str, ef: Option<usize>, recall: f64, qps: f64) -> FilterRecord {
        FilterRecord {
            engine: engine.into(),
            correlation: Correlation::Uncorrelated,
            selectivity: 0.01,
            matched: 0.01,
            ef,
            queries: 10,
            k: 10,
            recall,
            qps_single: qps,
            qps_rounds: vec![qps],
            p50_ms: 1.0,
            p99_ms: 2.0,
            exhaustive: 0.0,
            n: 1000,
            dim: 8,
            simd: "scalar".into(),
            machine: None,
            versions: None,
        }
    }

    #[test]
    fn the_default_and_the_cheapest_setting_at_the_target_are_picked() {
        let rs = vec![
            record("in_walk", Some(16), 0.80, 900.0),
            record("in_walk", Some(64), 0.96, 400.0),
            record("in_walk", Some(128), 0.99, 200.0),
            record("ours", None, 0.97, 700.0),
        ];
        let c = Correlation::Uncorrelated;
        assert_eq!(
            default_of(&rs, "in_walk", c, 0.01).and_then(|r| r.ef),
            Some(64)
        );
        assert_eq!(default_of(&rs, "ours", c, 0.01).and_then(|r| r.ef), None);
        let best = cheapest_at(&rs, "in_walk", c, 0.01, 0.95).expect("reached");
        assert_eq!(best.ef, Some(64));
        assert!(cheapest_at(&rs, "in_walk", c, 0.01, 0.995).is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        let svg = dir.path().join("filter.svg");
        draw(&svg, &rs, "test").expect("draw");
        let text = std::fs::read_to_string(&svg).expect("svg");
        assert!(text.contains("in_walk") && text.contains("recall"));
    }
}

//! `--plot FILE.svg`: the run's curves, HR@k and NDCG@k (top) and the train and validation losses
//! (bottom), per epoch.

use anyhow::{Context, Result};
use ncf_train::EpochReport;
use plotters::prelude::*;
use std::path::Path;

pub fn curves(path: &Path, reports: &[EpochReport], k: i64) -> Result<()> {
    let tmp = path.with_extension("svg.tmp");
    draw(&tmp, reports, k)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn draw(path: &Path, reports: &[EpochReport], k: i64) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(350);
    let epochs = reports.len().max(1) as f64;
    let series = |f: &dyn Fn(&EpochReport) -> f64| -> Vec<(f64, f64)> {
        reports.iter().map(|r| ((r.epoch + 1) as f64, f(r))).filter(|(_, y)| y.is_finite()).collect()
    };
    let ranking =
        [(format!("HR@{k}"), series(&|r| r.eval.hr), BLUE), (format!("NDCG@{k}"), series(&|r| r.eval.ndcg), RED)];
    let losses = [
        ("train loss (last batch)".to_owned(), series(&|r| r.train_loss), GREEN),
        ("validation loss".to_owned(), series(&|r| r.eval.validation_loss), MAGENTA),
    ];
    for (area, title, lines) in [(&top, "ranking quality on the test lists", &ranking), (&bottom, "losses", &losses)] {
        let max = lines.iter().flat_map(|(_, s, _)| s.iter().map(|p| p.1)).fold(0.0f64, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..epochs + 0.5, 0.0..(max * 1.1).max(1e-3))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(reports.len().clamp(2, 12))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .max_light_lines(2)
            .draw()?;
        for (name, points, color) in lines {
            let color = *color;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                // Trailing spaces: SVG viewers' fonts run wider than plotters' estimate of the box.
                .label(format!("{name}   "))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 13))
            .margin(12)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

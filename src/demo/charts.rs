//! The demo's SVG plots (through [`nrpm::report::svg`]): robust accuracy vs ε per variant
//! with 95 % bands, λ per layer before and after Paradigm 2, and the influence curves.

use crate::demo::tables::AttackKind;
use crate::demo::DemoReport;
use nrpm::report::svg::{BarChart, LineChart, Series};

/// Accuracy (%) vs ε, one line per variant, its Clopper–Pearson interval as a band; the LPM
/// line is dashed.
pub(crate) fn accuracy_chart(report: &DemoReport, attack: AttackKind) -> String {
    let series = report
        .variants
        .iter()
        .map(|v| {
            let pts = attack.points(v);
            Series {
                name: v.name.clone(),
                points: pts.iter().map(|p| (p.eps, p.accuracy.percent)).collect(),
                band: Some(pts.iter().map(|p| (p.accuracy.lo, p.accuracy.hi)).collect()),
                dashed: v.paradigm.is_none(),
            }
        })
        .collect();
    LineChart {
        title: format!(
            "Accuracy vs ε under {}, {} MNIST test images",
            attack.label(&report.config),
            report.test_data.1
        ),
        x_label: "L∞ budget ε (pixels in [0, 1])".into(),
        y_label: "accuracy (%), 95 % interval shaded".into(),
        series,
        y_range: Some((0.0, 100.0)),
    }
    .to_svg()
}

/// λ of each layer before (λ₀) and after Paradigm 2.
pub(crate) fn lambda_chart(report: &DemoReport) -> String {
    let t = &report.paradigm2_training;
    let values = |l: &[(String, f64)]| l.iter().map(|(_, v)| *v).collect::<Vec<_>>();
    BarChart {
        title: format!("λ per layer, Paradigm 2 ({} epoch(s))", t.epochs),
        y_label: "λ  (1 = LPM, 0 = NRPM)".into(),
        categories: t.before.lambdas.iter().map(|(k, _)| k.clone()).collect(),
        groups: vec![
            ("before".into(), values(&t.before.lambdas)),
            ("after".into(), values(&t.after.lambdas)),
        ],
        y_range: Some((0.0, 1.0)),
    }
    .to_svg()
}

/// The output of the neuron as one term moves, per estimator; LAD dashed.
pub(crate) fn influence_chart(report: &DemoReport) -> String {
    let c = &report.influence;
    let series = c
        .curves
        .iter()
        .map(|curve| Series {
            name: curve.name.clone(),
            points: curve.points.iter().map(|p| (p.value, p.output)).collect(),
            band: None,
            dashed: curve.name.starts_with("LAD"),
        })
        .collect();
    LineChart {
        title: format!(
            "{} neuron {} on test image {} (label {}): move term {}",
            c.layer, c.neuron, c.image, c.label, c.term
        ),
        x_label: format!(
            "value v of term t_j = x_j·W[o, j]  (D = {}, was {:.3})",
            c.terms, c.value
        ),
        y_label: "output without bias".into(),
        series,
        y_range: None,
    }
    .to_svg()
}

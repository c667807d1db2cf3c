//! The demo's tables: variant × ε accuracy grids, printed as aligned text on the terminal and
//! as GitHub Markdown (with the 95 % intervals) in `report.md`.

use crate::demo::{DemoConfig, DemoReport, Point, Variant};
use nrpm::report::markdown::Table;

/// The attacks every variant faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttackKind {
    /// One-step FGSM.
    Fgsm,
    /// Multi-step PGD-L∞, white box.
    Pgd,
    /// The same PGD with gradients from the LPM layers (BPDA-style).
    Bpda,
}

impl AttackKind {
    /// All, in report order.
    pub(crate) const ALL: [AttackKind; 3] = [AttackKind::Fgsm, AttackKind::Pgd, AttackKind::Bpda];

    /// The variant's points under this attack.
    pub(crate) fn points(self, v: &Variant) -> &[Point] {
        match self {
            AttackKind::Fgsm => &v.fgsm,
            AttackKind::Pgd => &v.pgd,
            AttackKind::Bpda => &v.bpda,
        }
    }

    /// `FGSM`, `PGD-20` or `PGD-20, LPM gradients`.
    pub(crate) fn label(self, cfg: &DemoConfig) -> String {
        match self {
            AttackKind::Fgsm => "FGSM".into(),
            AttackKind::Pgd => format!("PGD-{}", cfg.pgd_steps),
            AttackKind::Bpda => format!("PGD-{}, LPM gradients", cfg.pgd_steps),
        }
    }

    /// The short label of the terminal table.
    pub(crate) fn short(self, cfg: &DemoConfig) -> String {
        match self {
            AttackKind::Bpda => format!("PGD-{}*", cfg.pgd_steps),
            other => other.label(cfg),
        }
    }

    /// File name of its chart.
    pub(crate) fn chart_file(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "robust_fgsm.svg",
            AttackKind::Pgd => "robust_pgd.svg",
            AttackKind::Bpda => "robust_pgd_lpm_gradients.svg",
        }
    }
}

/// `0.612, 0.062, 0.190`, or `1 (LPM)` for the plain model.
pub(crate) fn lambda_cell(v: &Variant) -> String {
    if v.paradigm.is_none() {
        return "1 (LPM)".into();
    }
    let values: Vec<String> = v.lambdas.iter().map(|(_, l)| format!("{l:.3}")).collect();
    values.join(", ")
}

/// `ε = 0 (clean)`, `0.05`, … : the budget column titles.
fn budget_headers(cfg: &DemoConfig) -> Vec<String> {
    cfg.budgets
        .iter()
        .map(|&e| match e == 0.0 {
            true => "ε = 0 (clean)".to_string(),
            false => format!("{e}"),
        })
        .collect()
}

/// The Markdown table of one attack: variant, λ per layer, then `acc [lo, hi]` per budget.
pub(crate) fn markdown_accuracy(report: &DemoReport, attack: AttackKind) -> String {
    let layers: Vec<&str> = report.variants[0]
        .lambdas
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    let mut headers = vec!["variant".to_string(), format!("λ ({})", layers.join(", "))];
    headers.extend(budget_headers(&report.config));
    let mut table = Table::new(headers);
    for v in &report.variants {
        let mut row = vec![v.name.clone(), lambda_cell(v)];
        row.extend(attack.points(v).iter().map(|p| p.accuracy.display()));
        table.row(row);
    }
    table.render()
}

impl DemoReport {
    /// The terminal table: one row per (attack, variant), accuracy in % per budget (the
    /// intervals are in `report.md`); `PGD-20*` is PGD with gradients from the LPM layers.
    pub fn text_table(&self) -> String {
        let cfg = &self.config;
        let widest =
            |cells: &mut dyn Iterator<Item = String>| cells.map(|c| c.chars().count()).max();
        let widths = [
            widest(&mut AttackKind::ALL.iter().map(|a| a.short(cfg))).unwrap_or(0),
            widest(&mut self.variants.iter().map(|v| v.name.clone())).unwrap_or(0),
            widest(&mut self.variants.iter().map(lambda_cell)).unwrap_or(0),
        ];
        let row = |cells: [String; 3], values: &mut dyn Iterator<Item = String>| {
            let [a, v, l] = cells;
            let [wa, wv, wl] = widths;
            let values: String = values.map(|x| format!(" {x:>6}")).collect();
            format!("{a:<wa$} {v:<wv$}  {l:<wl$}{values}\n")
        };
        let mut out = format!(
            "Accuracy (%) of the {} test images ({}) under L∞ attacks; ε = 0 is the clean accuracy; \
             {} = PGD with gradients from the LPM layers (BPDA-style)\n",
            self.test_data.1,
            self.test_data.0,
            AttackKind::Bpda.short(cfg)
        );
        let header = ["attack".to_string(), "variant".into(), "λ".into()];
        out += &row(header, &mut cfg.budgets.iter().map(|e| e.to_string()));
        for attack in AttackKind::ALL {
            for v in &self.variants {
                let cells = [attack.short(cfg), v.name.clone(), lambda_cell(v)];
                out += &row(
                    cells,
                    &mut attack
                        .points(v)
                        .iter()
                        .map(|p| format!("{:.1}", p.accuracy.percent)),
                );
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::demo::certification::{
        BracketPoint, BracketSummary, Certification, RadiusPoint, SmoothingCurve,
    };
    use crate::demo::influence::{influence_curve, Probe};
    use crate::demo::{Machine, StageTime};
    use nrpm::report::stats::Proportion;
    use nrpm::train::{EpochReport, Paradigm, Snapshot, TrainReport};

    /// A variant with accuracy `k[i]` of 10 at each budget, under both attacks.
    pub(crate) fn variant(name: &str, paradigm: Option<u8>, lambda: f64, k: &[usize]) -> Variant {
        let budgets = [0.0, 0.1, 0.3];
        let pts: Vec<Point> = budgets
            .iter()
            .zip(k)
            .map(|(&eps, &k)| Point {
                eps,
                accuracy: Proportion::new(k, 10).unwrap(),
                seconds: 0.1,
            })
            .collect();
        Variant {
            name: name.into(),
            paradigm,
            lambdas: vec![("fc1".into(), lambda), ("fc2".into(), lambda)],
            clean: pts[0].accuracy,
            fgsm: pts.clone(),
            pgd: pts.clone(),
            autoattack: pts[..2].to_vec(),
            bpda: pts,
        }
    }

    /// A training report with one epoch and λ going from `before` to `after` in fc1, fc2.
    fn training(paradigm: Paradigm, before: f64, after: f64) -> TrainReport {
        let lambdas = |l: f64| vec![("fc1".to_string(), l), ("fc2".to_string(), l)];
        let snapshot = |l: f64| Snapshot {
            clean: 90.0,
            robust: None,
            lambdas: lambdas(l),
        };
        TrainReport {
            paradigm,
            epochs: 1,
            resumed_from: None,
            history: vec![EpochReport {
                epoch: 1,
                lr: 0.01,
                loss: 0.5,
                train_acc: 80.0,
                test_acc: 90.0,
                lambdas: lambdas(after),
                seconds: 0.2,
            }],
            before: snapshot(before),
            after: snapshot(after),
            seconds: 0.3,
        }
    }

    /// Hand-made certification figures: one smoothing curve and one bracket.
    fn sample_certification() -> Certification {
        let p = |k| Proportion::new(k, 10).unwrap();
        Certification {
            smoothing: vec![SmoothingCurve {
                name: "LPM".into(),
                points: vec![
                    RadiusPoint {
                        radius: 0.0,
                        accuracy: p(8),
                    },
                    RadiusPoint {
                        radius: 0.5,
                        accuracy: p(3),
                    },
                ],
                abstained: 1,
                samples_per_second: 1000.0,
                seconds: 1.0,
            }],
            brackets: vec![BracketSummary {
                name: "LPM".into(),
                method: "crown".into(),
                attack: "PGD".into(),
                points: vec![BracketPoint {
                    eps: 0.01,
                    verified: p(6),
                    attacked: p(7),
                }],
                seconds: 0.5,
            }],
        }
    }

    /// A small, hand-made report: LPM and one Paradigm 1 variant on 10 images, three budgets.
    pub(crate) fn sample_report() -> DemoReport {
        let w = ndarray::array![[0.5, -1.0, 2.0], [0.1, 0.1, 0.1]];
        let x = [0.3, 0.1, 0.8];
        let probe = Probe {
            layer: "fc1",
            weight: w.view(),
            image: 0,
            label: 7,
            x: &x,
        };
        let mut cfg = DemoConfig::quick(0);
        cfg.budgets = vec![0.0, 0.1, 0.3];
        DemoReport {
            influence: influence_curve(&probe, cfg.nrpm(0.0).unwrap(), 0.5, 5).unwrap(),
            config: cfg,
            train_data: ("mnist-subset/train".into(), 1000),
            test_data: ("mnist-subset/test".into(), 10),
            lpm_training: training(Paradigm::Scratch, 1.0, 1.0),
            paradigm2_training: training(Paradigm::LearnLambda, 0.6, 0.5),
            variants: vec![
                variant("LPM", None, 1.0, &[9, 5, 0]),
                variant("P1 λ=0.7", Some(1), 0.7, &[9, 7, 4]),
            ],
            certification: sample_certification(),
            timings: vec![StageTime {
                stage: "train".into(),
                seconds: 1.5,
            }],
            seconds: 2.0,
            machine: Machine {
                description: "test machine".into(),
                threads: 2,
                load_before: Some([0.5, 0.4, 0.3]),
                load_after: None,
            },
        }
    }

    #[test]
    fn text_table_has_a_row_per_attack_and_variant() {
        let t = sample_report().text_table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 3 * 2, "{t}");
        assert!(lines[1].starts_with("attack") && lines[1].contains("0.1"));
        assert!(
            lines[2].starts_with("FGSM") && lines[2].contains("LPM") && lines[2].contains("90.0")
        );
        assert!(
            lines[5].starts_with("PGD-3")
                && lines[5].contains("0.700, 0.700")
                && lines[5].ends_with("40.0")
        );
    }

    #[test]
    fn markdown_table_shows_intervals() {
        let md = markdown_accuracy(&sample_report(), AttackKind::Pgd);
        assert!(
            md.starts_with("| variant | λ (fc1, fc2) | ε = 0 (clean) | 0.1 | 0.3 |"),
            "{md}"
        );
        assert!(
            md.contains("| P1 λ=0.7 | 0.700, 0.700 | 90.0 [55.5, 99.7] |"),
            "{md}"
        );
    }

    #[test]
    fn lambda_cells_name_lpm_and_list_layers() {
        assert_eq!(
            lambda_cell(&variant("LPM", None, 1.0, &[9, 5, 1])),
            "1 (LPM)"
        );
        assert_eq!(
            lambda_cell(&variant("P1", Some(1), 0.7, &[9, 5, 1])),
            "0.700, 0.700"
        );
    }

    #[test]
    fn budget_headers_mark_the_clean_column() {
        let mut cfg = DemoConfig::quick(0);
        cfg.budgets = vec![0.0, 0.05];
        assert_eq!(budget_headers(&cfg), vec!["ε = 0 (clean)", "0.05"]);
    }
}

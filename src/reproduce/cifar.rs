//! CIFAR-10, narrow ResNet18 (widths 8/16/32/64, PGD-7 adversarially trained): Paradigm 1
//! under PGD-20 beside §6.2, and the large-ε gradient-masking test beside §6.7.
//!
//! ```text
//! reprogrammed: the 16 block 3×3 convs (not the stem, the 1×1 shortcuts or the head)
//! operator:     L1, K = 1, ε = 5e-4 (test_cifar10_resnet.py), λ = 1.0, 0.9, …, 0.4
//! attack:       PGD-20 L∞, α = 2/255, uniform random start (LinfPGDAttack of the test script)
//! ```

use serde_json::json;

use crate::reproduce::setup::{Checkpoint, Context, ModelSetup, Subject};
use crate::reproduce::table::{per_255_budget, AttackSpec, Plan, Sheet};
use crate::reproduce::Body;
use nrpm::attacks::StepSize;
use nrpm::error::Result;
use nrpm::progress::Progress;

/// λ of the §6.2 Paradigm 1 rows.
const LAMBDAS: [f64; 6] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];

/// Runs both tables on the first n CIFAR-10 test images of `--data`.
///
/// # Errors
/// Data, checkpoint, model and attack errors.
pub fn run(ctx: &mut Context, progress: &mut dyn Progress) -> Result<Body> {
    let data = ctx.cifar_test()?;
    let (main, masking) = (
        ctx.paper
            .table("cifar-narrow-resnet18")
            .expect("built-in table"),
        ctx.paper.table("gradient-masking").expect("built-in table"),
    );
    let spec = AttackSpec {
        name: "pgd-linf",
        steps: ctx.options.pgd_steps,
        alpha: StepSize::Absolute(2.0 / 255.0),
    };
    let mut sheet = Sheet::default();
    let title = "Narrow ResNet18, Paradigm 1 under PGD, ours beside §6.2";
    let plan = Plan::new(spec.clone(), &main.epsilons());
    sheet.add(title, plan, per_255_budget, Some(main));
    let lpm = ModelSetup::lpm(Checkpoint::TinyResnet18);
    let original = Subject::new(lpm, "LPM (original model)", Some("original".into()));
    ctx.fill(&mut sheet, &original, &data, progress)?;
    for lambda in LAMBDAS {
        let setup = ModelSetup::fixed(Checkpoint::TinyResnet18, lambda);
        let key = Some(format!("p1-{lambda}"));
        ctx.fill(
            &mut sheet,
            &Subject::new(setup, format!("Paradigm 1, λ = {lambda}"), key),
            &data,
            progress,
        )?;
    }
    let mut masking_sheet = Sheet::default();
    let title = "Gradient-masking test (λ = 0.9), ours beside §6.7";
    let plan = Plan::new(spec, &masking.epsilons());
    masking_sheet.add(title, plan, per_255_budget, Some(masking));
    let setup = ModelSetup::fixed(Checkpoint::TinyResnet18, 0.9);
    let subject = Subject::new(setup, "Paradigm 1, λ = 0.9", Some("p1-0.9".into()));
    ctx.fill(&mut masking_sheet, &subject, &data, progress)?;
    let n = data.len();
    let mut notes = vec![format!(
        "Measured on the first {n} CIFAR-10 test images of {}; the authors' test script uses all \
         10 000, so intervals are wider than the paper's implicit precision.",
        data.name()
    )];
    if n < 1000 {
        notes.push(format!(
            "Only {n} images: a smoke run of the code path, not a reproduction."
        ));
    }
    Ok(Body {
        settings: json!({
            "model": Checkpoint::TinyResnet18.model(),
            "checkpoint": Checkpoint::TinyResnet18.file(),
            "operator": { "norm": "l1", "k": 1, "eps_irls": 5e-4, "layers": "block convs" },
            "attack": { "name": "pgd-linf", "steps": ctx.options.pgd_steps, "alpha": "2/255",
                        "random_start": true },
            "test_images": n,
            "seed": ctx.options.seed,
        }),
        tables: [sheet.tables, masking_sheet.tables].concat(),
        notes,
        ..Body::default()
    })
}

//! The paper's numbers, as copied by hand into `data/paper/tables.json` (compiled in).
//!
//! ```text
//! tables.json = { tables: [PaperTable], not_retrieved: [{what, cite}] }
//! PaperTable  = { id, title, cite, dataset, model, attack, budget_unit, budgets [J], rows }
//! PaperRow    = { key, label, lambda [per layer] | null, values [J] }   (accuracy, %)
//! ε_j         = budgets[j] · unit       (unit "1": ε as written; "1/255": ε = b/255)
//! ```
//!
//! Every table cites the section of the digest (`PAPER.md`) it was copied from; the tables the
//! digest lacks are listed in `not_retrieved`, so a report can say what it could not compare.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The data file, as compiled into the binary.
pub const TABLES_JSON: &str = include_str!("../../data/paper/tables.json");

/// Where the data file lives in the repository.
pub const TABLES_PATH: &str = "data/paper/tables.json";

/// All the paper's numbers the digest has, and the list of what it lacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaperData {
    /// Where the numbers come from.
    pub about: String,
    /// The tables.
    pub tables: Vec<PaperTable>,
    /// Results the paper has but the digest does not.
    pub not_retrieved: Vec<Missing>,
}

/// A result of the paper that could not be compared (its numbers were not retrieved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Missing {
    /// Which table or figure.
    pub what: String,
    /// Where the digest says so.
    pub cite: String,
}

/// One table of the paper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaperTable {
    /// Identifier (`table1`, `cifar-narrow-resnet18`, `gradient-masking`).
    pub id: String,
    /// What the table shows.
    pub title: String,
    /// The digest section it was copied from.
    pub cite: String,
    /// Images it was measured on.
    pub dataset: String,
    /// Model name, as `nrpm` spells it.
    pub model: String,
    /// Attack name, as `nrpm` spells it.
    pub attack: String,
    /// `"1"` or `"1/255"`: what one budget unit is.
    pub budget_unit: String,
    /// The column budgets, in `budget_unit`s (0 = clean).
    pub budgets: Vec<f64>,
    /// The rows.
    pub rows: Vec<PaperRow>,
}

/// One row of a paper table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaperRow {
    /// Identifier within the table (`vanilla`, `p1-0.7`, `p2`, …).
    pub key: String,
    /// The row's name in the paper.
    pub label: String,
    /// λ per layer, as printed (`None` where "learnable" without values).
    pub lambda: Option<Vec<f64>>,
    /// Accuracy (%) at each budget.
    pub values: Vec<f64>,
}

impl PaperData {
    /// The compiled-in `data/paper/tables.json`.
    ///
    /// # Example
    /// ```
    /// let paper = nrpm::reproduce::paper::PaperData::builtin();
    /// let vanilla = paper.row("table1", "vanilla").unwrap();
    /// assert_eq!(&vanilla.values[..3], &[90.8, 31.8, 2.6]);
    /// ```
    pub fn builtin() -> Self {
        Self::parse(TABLES_JSON).expect("data/paper/tables.json is checked by the tests")
    }

    /// Parses a tables file and checks that every row has one value per budget.
    ///
    /// # Errors
    /// [`Error::Format`] naming [`TABLES_PATH`] for bad JSON or a row of the wrong length.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |msg: String| Error::format(TABLES_PATH, msg);
        let data: Self = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        for t in &data.tables {
            if let Some(r) = t.rows.iter().find(|r| r.values.len() != t.budgets.len()) {
                return Err(bad(format!(
                    "table {} row {}: {} values for {} budgets",
                    t.id,
                    r.key,
                    r.values.len(),
                    t.budgets.len()
                )));
            }
        }
        Ok(data)
    }

    /// The table `id`.
    pub fn table(&self, id: &str) -> Option<&PaperTable> {
        self.tables.iter().find(|t| t.id == id)
    }

    /// Row `key` of table `id`.
    pub fn row(&self, id: &str, key: &str) -> Option<&PaperRow> {
        self.table(id)?.rows.iter().find(|r| r.key == key)
    }
}

impl PaperTable {
    /// The budgets as attack budgets ε (`budgets[j] · unit`).
    pub fn epsilons(&self) -> Vec<f64> {
        let unit = if self.budget_unit == "1/255" {
            1.0 / 255.0
        } else {
            1.0
        };
        self.budgets.iter().map(|b| b * unit).collect()
    }

    /// The paper's value of row `key` at budget ε (matched within 1e-9), if it has one.
    pub fn value(&self, key: &str, eps: f64) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.key == key)?;
        let j = self
            .epsilons()
            .iter()
            .position(|e| (e - eps).abs() < 1e-9)?;
        row.values.get(j).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_budgets_convert() {
        let paper = PaperData::builtin();
        let cifar = paper.table("cifar-narrow-resnet18").unwrap();
        assert!((cifar.epsilons()[1] - 8.0 / 255.0).abs() < 1e-15);
        assert_eq!(cifar.value("p3", 16.0 / 255.0), Some(39.58));
        assert_eq!(paper.table("table1").unwrap().value("p2", 0.1), Some(61.2));
        assert_eq!(paper.table("table1").unwrap().value("p2", 0.11), None);
    }

    #[test]
    fn rows_of_the_wrong_length_are_rejected() {
        let text = r#"{"about": "", "not_retrieved": [], "tables": [{"id": "t", "title": "",
            "cite": "", "dataset": "", "model": "", "attack": "", "budget_unit": "1",
            "budgets": [0, 1], "rows": [{"key": "r", "label": "", "lambda": null, "values": [1]}]}]}"#;
        let err = PaperData::parse(text).unwrap_err().to_string();
        assert!(err.contains("row r: 1 values for 2 budgets"), "{err}");
    }
}

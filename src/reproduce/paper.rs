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

use nrpm::error::{Error, Result};

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

    /// Numbers in the cells of a Markdown table row of PAPER.md (bold marks dropped).
    fn numbers(line: &str) -> Vec<f64> {
        line.split('|')
            .filter_map(|c| c.trim().trim_matches('*').parse::<f64>().ok())
            .collect()
    }

    /// The rows of the first Markdown table after `heading` in PAPER.md whose cells hold at least
    /// `count` numbers, each cut to its first `count` numbers.
    fn digest_rows(digest: &str, heading: &str, count: usize) -> Vec<Vec<f64>> {
        let start = digest.find(heading).unwrap_or_else(|| panic!("{heading}"));
        digest[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .map(numbers)
            .filter(|v| v.len() >= count)
            .map(|v| v[..count].to_vec())
            .collect()
    }

    #[test]
    fn paper_numbers_match_the_digest() {
        let paper = PaperData::builtin();
        let t1 = paper.table("table1").unwrap();
        let row = |t: &str, k: &str| paper.row(t, k).unwrap().values.clone();
        assert_eq!(
            row("table1", "vanilla"),
            [90.8, 31.8, 2.6, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            row("table1", "p1-0.7"),
            [89.7, 73.7, 43.5, 25.5, 16.9, 11.7, 9.2]
        );
        assert_eq!(
            row("table1", "p3"),
            [86.1, 81.7, 75.8, 66.7, 58.7, 50.1, 39.8]
        );
        assert_eq!(row("table1", "nrpm-tuned")[6], 35.2);
        assert_eq!(
            paper.row("table1", "p2").unwrap().lambda,
            Some(vec![0.459, 0.033, 0.131])
        );
        assert_eq!(
            row("cifar-narrow-resnet18", "original"),
            [67.89, 41.46, 16.99, 3.17]
        );
        assert_eq!(
            row("gradient-masking", "p1-0.9")[4..],
            [2.54, 0.98, 0.0, 0.0]
        );
        assert_eq!(t1.rows.len(), 14);
        assert!(paper.tables.iter().all(|t| t.cite.contains("PAPER.md §6.")));
        assert!(paper
            .not_retrieved
            .iter()
            .any(|m| m.what.contains("Table 2")));
        // Every number against the digest itself, when it is there.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/PAPER.md");
        if !std::path::Path::new(path).exists() {
            nrpm::testing::skip(
                "shared",
                "paper numbers vs PAPER.md",
                &format!("{path} is absent"),
            );
            return;
        }
        let digest = std::fs::read_to_string(path).unwrap();
        for (id, heading, count) in [
            ("table1", "### 6.1 Table 1", 7),
            ("cifar-narrow-resnet18", "### 6.2 CIFAR-10", 4),
        ] {
            let ours: Vec<Vec<f64>> = paper
                .table(id)
                .unwrap()
                .rows
                .iter()
                .map(|r| r.values.clone())
                .collect();
            assert_eq!(ours, digest_rows(&digest, heading, count), "{id}");
        }
        let masking = digest_rows(&digest, "### 6.7 Gradient-masking", 8);
        assert_eq!(masking, vec![row("gradient-masking", "p1-0.9")]);
    }
}

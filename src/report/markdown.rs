//! GitHub-flavoured Markdown tables.

/// A table: header cells and rows of cells (`|` in cells is escaped).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Header cells.
    pub headers: Vec<String>,
    /// Rows; each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (padded or cut to the header width).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = cells.into_iter().map(Into::into).collect();
        r.resize(self.headers.len(), String::new());
        self.rows.push(r);
    }

    /// The Markdown text: header, separator (first column left-aligned, others right), rows.
    pub fn render(&self) -> String {
        let esc = |c: &String| c.replace('|', "\\|");
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells.iter().map(esc).collect::<Vec<_>>().join(" | ")
            )
        };
        let sep: Vec<String> = (0..self.headers.len())
            .map(|i| if i == 0 { "---".into() } else { "---:".into() })
            .collect();
        let mut out = line(&self.headers);
        out.push_str(&format!("|{}|\n", sep.join("|")));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_github_table() {
        let mut t = Table::new(["model", "acc"]);
        t.row(["a|b", "91.2"]);
        t.row(["short"]);
        assert_eq!(
            t.render(),
            "| model | acc |\n|---|---:|\n| a\\|b | 91.2 |\n| short |  |\n"
        );
    }
}

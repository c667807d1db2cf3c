//! Skips that fail where they must not happen: the switch `NRPM_REQUIRE`.
//!
//! Tests that need something a laptop may lack — `../shared` (checkpoints and data), a C++
//! compiler, libnvrtc, a GPU — print why and pass when it is absent. On a CI machine that has
//! it, such a skip would hide a broken setup, so `NRPM_REQUIRE` (a comma-separated list of
//! [`REQUIREMENTS`], or `all`) turns the skips of those requirements into failures:
//!
//! ```text
//! NRPM_REQUIRE=shared,cxx,nvrtc cargo test --release --features cuda
//! ```

/// The requirements a test may skip for.
pub const REQUIREMENTS: [&str; 4] = ["shared", "cxx", "nvrtc", "gpu"];

/// The requirements `value` (the text of `NRPM_REQUIRE`) names; `all` names every one.
///
/// # Errors
/// The first name that is not one of [`REQUIREMENTS`] or `all`.
pub fn parse_required(value: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "all" {
            return Ok(REQUIREMENTS.to_vec());
        }
        match REQUIREMENTS.iter().find(|r| **r == name) {
            Some(r) => out.push(*r),
            None => {
                return Err(format!(
                    "NRPM_REQUIRE: unknown requirement `{name}` (known: {}, all)",
                    REQUIREMENTS.join(", ")
                ))
            }
        }
    }
    Ok(out)
}

/// Skips a test for want of `requirement`: prints `{test}: skipped: {why}` to stderr (past
/// libtest's capture), or fails the test when `NRPM_REQUIRE` demands the requirement.
///
/// # Panics
/// When `NRPM_REQUIRE` demands `requirement` (the intended failure), or names an unknown one
/// (a typo must not turn the switch off), or `requirement` is not one of [`REQUIREMENTS`].
pub fn skip(requirement: &str, test: &str, why: &str) {
    skip_under(
        &std::env::var("NRPM_REQUIRE").unwrap_or_default(),
        requirement,
        test,
        why,
    );
}

/// [`skip`] with the text of `NRPM_REQUIRE` given as `value`.
///
/// # Panics
/// As [`skip`].
pub fn skip_under(value: &str, requirement: &str, test: &str, why: &str) {
    assert!(
        REQUIREMENTS.contains(&requirement),
        "unknown requirement `{requirement}`"
    );
    let demanded = parse_required(value).unwrap_or_else(|e| panic!("{e}"));
    if demanded.contains(&requirement) {
        panic!("{test}: {why}, and NRPM_REQUIRE demands `{requirement}`");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_all_and_rejects_typos() {
        assert_eq!(parse_required(""), Ok(vec![]));
        assert_eq!(parse_required("shared, cxx"), Ok(vec!["shared", "cxx"]));
        assert_eq!(parse_required("all"), Ok(REQUIREMENTS.to_vec()));
        assert!(parse_required("shared,nvcc")
            .unwrap_err()
            .contains("`nvcc`"));
    }

    #[test]
    fn a_skip_not_demanded_prints_and_returns() {
        skip_under("cxx,nvrtc", "shared", "t", "../shared is absent");
        skip_under("", "gpu", "t", "no GPU");
    }

    #[test]
    #[should_panic(expected = "NRPM_REQUIRE demands `shared`")]
    fn a_demanded_skip_fails() {
        skip_under("cxx, shared", "shared", "t", "../shared is absent");
    }

    #[test]
    #[should_panic(expected = "NRPM_REQUIRE demands `gpu`")]
    fn all_demands_every_requirement() {
        skip_under("all", "gpu", "t", "no GPU");
    }

    #[test]
    #[should_panic(expected = "unknown requirement `sharde`")]
    fn a_typo_fails_instead_of_turning_the_switch_off() {
        skip_under("sharde", "shared", "t", "../shared is absent");
    }
}

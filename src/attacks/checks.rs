//! Gradient-masking checks (to come).

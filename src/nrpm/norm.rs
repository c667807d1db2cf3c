//! Robust norms: the IRLS weight `w(r)`, its derivative, and the loss `ρ(r)` / score `ψ(r)`
//! whose minimisation the reweighting performs.
//!
//! Each norm is the authors' weight (`models/conv2d.py`, `RobustSum.median`), with `r ≥ 0` the
//! residual `|t_d − z/D|` and `ε > 0` the smoothing constant:
//!
//! ```text
//! Lpm          w(r) = 1                                   (least squares: z = Σ t_d)
//! L1           w(r) = 1 / (r + ε)
//! Huber(δ)     w(r) = min(δ / (r + ε), 1)
//! Mcp(γ)       w(r) = max(1 / (r + ε) − 1/γ, ε)
//! Hm(γ, δ)     w(r) = clamp(δ/(γ−δ) · (γ/(r + ε) − 1), ε, 1)
//! ```
//!
//! Every weight is positive and non-increasing in `r`, so it is `ψ(r)/r` for the even loss
//!
//! ```text
//! ρ(r) = ∫₀^|r| s·w(s) ds        ψ(r) = ρ'(r) = r·w(|r|)
//! ```
//!
//! and IRLS with it is a majorise–minimise algorithm for `Σ_d ρ(t_d − z/D)`
//! (proofs/02-irls-majorise-minimise.md). For `L1`,
//! `ρ_ε(r) = |r| − ε·ln(1 + |r|/ε)`, which tends to `|r|` as `ε → 0`.
//!
//! On each piece between the clamping points the weight has the form `α/(s + ε) + β`, so `ρ`
//! has the closed form `α·(s − ε·ln(1 + s/ε)) + β·s²/2` per piece; [`Norm::pieces`] lists them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::real::Real;

/// Which robust norm (and so which IRLS weight) an NRPM layer uses.
///
/// `Lpm` is the plain linear pattern match (the weighted sum of the layer); the others are the
/// robust variants of the authors' code. γ and δ default to the authors' 4 and 3.
///
/// Deserialising checks γ and δ as [`Norm::validate`] does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", try_from = "NormFields")]
pub enum Norm {
    /// Linear pattern matching: `w = 1`, `z = Σ_d t_d`.
    Lpm,
    /// Least absolute deviation, smoothed: `w = 1/(r + ε)`.
    L1,
    /// Huber: `w = min(δ/(r + ε), 1)`.
    Huber {
        /// Threshold δ > 0 (authors' default 3).
        delta: f64,
    },
    /// Minimax concave penalty: `w = max(1/(r + ε) − 1/γ, ε)`.
    Mcp {
        /// Concavity γ > 0 (authors' default 4).
        gamma: f64,
    },
    /// Huber–MCP hybrid: `w = clamp(δ/(γ−δ)·(γ/(r + ε) − 1), ε, 1)`.
    Hm {
        /// γ > δ (authors' default 4).
        gamma: f64,
        /// δ > 0 (authors' default 3).
        delta: f64,
    },
}

impl Default for Norm {
    /// [`Norm::L1`], the paper's least absolute deviation.
    fn default() -> Self {
        Norm::L1
    }
}

impl std::fmt::Display for Norm {
    /// `lpm`, `l1`, `huber(delta=3)`, `mcp(gamma=4)`, `hm(gamma=4,delta=3)`: what
    /// [`Norm::from_str`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Norm::Lpm | Norm::L1 => f.write_str(self.name()),
            Norm::Huber { delta } => write!(f, "huber(delta={delta})"),
            Norm::Mcp { gamma } => write!(f, "mcp(gamma={gamma})"),
            Norm::Hm { gamma, delta } => write!(f, "hm(gamma={gamma},delta={delta})"),
        }
    }
}

impl std::str::FromStr for Norm {
    type Err = Error;

    /// A name (`lpm`, `l1`, `huber`, `mcp`, `hm`; γ and δ at the authors' defaults 4 and 3),
    /// optionally with parameters: `huber(delta=2)`, `mcp(gamma=5)`, `hm(gamma=4,delta=1)`.
    ///
    /// ```
    /// use nrpm::Norm;
    /// assert_eq!("hm(gamma=5,delta=1)".parse::<Norm>()?, Norm::Hm { gamma: 5.0, delta: 1.0 });
    /// assert_eq!("huber".parse::<Norm>()?, Norm::Huber { delta: 3.0 });
    /// let n = Norm::Mcp { gamma: 2.5 };
    /// assert_eq!(n.to_string().parse::<Norm>()?, n);
    /// assert!("huber(gamma=2)".parse::<Norm>().is_err()); // huber has no γ
    /// # Ok::<(), nrpm::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace(' ', "");
        let (name, params) = match t.split_once('(') {
            Some((n, rest)) => match rest.strip_suffix(')') {
                Some(p) => (n.to_string(), p.to_string()),
                None => return Err(Error::config("norm", s, "a '(' needs its ')'")),
            },
            None => (t.clone(), String::new()),
        };
        let (mut gamma, mut delta) = (None, None);
        for item in params.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::config("norm", s, "parameters are gamma=… or delta=…"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| Error::config("norm", s, "a parameter value is not a number"))?;
            match key {
                "gamma" => gamma = Some(value),
                "delta" => delta = Some(value),
                _ => {
                    return Err(Error::config(
                        "norm",
                        s,
                        "parameters are gamma=… or delta=…",
                    ))
                }
            }
        }
        let norm = Norm::from_name(&name)?.with_params(gamma, delta)?;
        Ok(norm)
    }
}

/// The serialised form of [`Norm`], checked on the way in.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum NormFields {
    Lpm,
    L1,
    Huber { delta: f64 },
    Mcp { gamma: f64 },
    Hm { gamma: f64, delta: f64 },
}

impl TryFrom<NormFields> for Norm {
    type Error = Error;

    fn try_from(f: NormFields) -> Result<Self> {
        let norm = match f {
            NormFields::Lpm => Norm::Lpm,
            NormFields::L1 => Norm::L1,
            NormFields::Huber { delta } => Norm::Huber { delta },
            NormFields::Mcp { gamma } => Norm::Mcp { gamma },
            NormFields::Hm { gamma, delta } => Norm::Hm { gamma, delta },
        };
        norm.validate()?;
        Ok(norm)
    }
}

/// The authors' default γ.
pub const DEFAULT_GAMMA: f64 = 4.0;
/// The authors' default δ.
pub const DEFAULT_DELTA: f64 = 3.0;

/// One piece of a weight function: on `s ∈ [start, next start)`, `w(s) = alpha/(s + ε) + beta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Piece {
    /// Where the piece starts (`s ≥ 0`).
    pub start: f64,
    /// Coefficient of `1/(s + ε)`.
    pub alpha: f64,
    /// Constant term.
    pub beta: f64,
}

impl Norm {
    /// Every norm name the CLI accepts.
    pub const NAMES: &'static str = "lpm, l1, huber, mcp, hm";

    /// The norm called `name` (`lpm|l1|huber|mcp|hm`, case-insensitive; `l2` is an alias of
    /// `lpm`, `lad` of `l1`), with the authors' γ = 4 and δ = 3 where the norm has them; change
    /// them with [`Norm::with_gamma`] and [`Norm::with_delta`], or build the norm with
    /// [`Norm::huber`], [`Norm::mcp`], [`Norm::hm`], or parse `hm(gamma=5,delta=1)`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for any other name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "lpm" | "l2" => Norm::Lpm,
            "l1" | "lad" => Norm::L1,
            "huber" => Norm::Huber {
                delta: DEFAULT_DELTA,
            },
            "mcp" => Norm::Mcp {
                gamma: DEFAULT_GAMMA,
            },
            "hm" => Norm::Hm {
                gamma: DEFAULT_GAMMA,
                delta: DEFAULT_DELTA,
            },
            _ => {
                return Err(Error::UnknownName {
                    what: "norm",
                    name: name.to_string(),
                    expected: Self::NAMES.to_string(),
                })
            }
        })
    }

    /// Huber with threshold δ > 0: `w = min(δ/(r + ε), 1)`.
    ///
    /// # Errors
    /// [`Error::Config`] unless δ is finite and > 0.
    pub fn huber(delta: f64) -> Result<Self> {
        let n = Norm::Huber { delta };
        n.validate().map(|_| n)
    }

    /// MCP with concavity γ > 0: `w = max(1/(r + ε) − 1/γ, ε)`.
    ///
    /// # Errors
    /// [`Error::Config`] unless γ is finite and > 0.
    pub fn mcp(gamma: f64) -> Result<Self> {
        let n = Norm::Mcp { gamma };
        n.validate().map(|_| n)
    }

    /// The Huber–MCP hybrid with γ > δ > 0 (a swapped pair is refused, since it breaks γ > δ).
    ///
    /// # Errors
    /// [`Error::Config`] unless both are finite and γ > δ > 0.
    pub fn hm(gamma: f64, delta: f64) -> Result<Self> {
        let n = Norm::Hm { gamma, delta };
        n.validate().map(|_| n)
    }

    /// The same norm with γ replaced (mcp, hm).
    ///
    /// # Errors
    /// [`Error::Config`] for a norm without γ, or a γ out of range.
    pub fn with_gamma(self, gamma: f64) -> Result<Self> {
        self.with_params(Some(gamma), None)
    }

    /// The same norm with δ replaced (huber, hm).
    ///
    /// # Errors
    /// [`Error::Config`] for a norm without δ, or a δ out of range.
    pub fn with_delta(self, delta: f64) -> Result<Self> {
        self.with_params(None, Some(delta))
    }

    /// The same norm with γ and/or δ replaced, checked once both are in place (so that `hm`
    /// can move both across the γ > δ line).
    ///
    /// # Errors
    /// [`Error::Config`] for a parameter the norm does not have, or values out of range.
    pub fn with_params(self, gamma: Option<f64>, delta: Option<f64>) -> Result<Self> {
        let missing = |what: &'static str, v: f64| {
            Error::config(
                what,
                format!("{v} for norm {}", self.name()),
                "this norm has no such parameter",
            )
        };
        if let (Some(g), None) = (gamma, self.gamma()) {
            return Err(missing("gamma", g));
        }
        if let (Some(d), None) = (delta, self.delta()) {
            return Err(missing("delta", d));
        }
        let n = match self {
            Norm::Mcp { gamma: g0 } => Norm::Mcp {
                gamma: gamma.unwrap_or(g0),
            },
            Norm::Huber { delta: d0 } => Norm::Huber {
                delta: delta.unwrap_or(d0),
            },
            Norm::Hm {
                gamma: g0,
                delta: d0,
            } => Norm::Hm {
                gamma: gamma.unwrap_or(g0),
                delta: delta.unwrap_or(d0),
            },
            other => other,
        };
        n.validate().map(|_| n)
    }

    /// γ, if the norm has one.
    pub fn gamma(&self) -> Option<f64> {
        match *self {
            Norm::Mcp { gamma } | Norm::Hm { gamma, .. } => Some(gamma),
            _ => None,
        }
    }

    /// δ, if the norm has one.
    pub fn delta(&self) -> Option<f64> {
        match *self {
            Norm::Huber { delta } | Norm::Hm { delta, .. } => Some(delta),
            _ => None,
        }
    }

    /// Short lower-case name (`lpm`, `l1`, `huber`, `mcp`, `hm`).
    pub fn name(&self) -> &'static str {
        match self {
            Norm::Lpm => "lpm",
            Norm::L1 => "l1",
            Norm::Huber { .. } => "huber",
            Norm::Mcp { .. } => "mcp",
            Norm::Hm { .. } => "hm",
        }
    }

    /// Checks γ and δ.
    ///
    /// # Errors
    /// [`Error::Config`] for non-finite values, δ ≤ 0, γ ≤ 0, or γ ≤ δ for `Hm`.
    pub fn validate(&self) -> Result<()> {
        let positive = |name, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(name, v, "must be finite and > 0"))
            }
        };
        match *self {
            Norm::Lpm | Norm::L1 => Ok(()),
            Norm::Huber { delta } => positive("delta", delta),
            Norm::Mcp { gamma } => positive("gamma", gamma),
            Norm::Hm { gamma, delta } => {
                positive("delta", delta)?;
                positive("gamma", gamma)?;
                if gamma > delta {
                    Ok(())
                } else {
                    Err(Error::config("gamma", gamma, "hm needs gamma > delta"))
                }
            }
        }
    }

    /// `true` for [`Norm::Lpm`], whose output is the plain sum whatever K and λ.
    pub fn is_lpm(&self) -> bool {
        matches!(self, Norm::Lpm)
    }

    /// The weight `w(r)` at residual `r ≥ 0` (uses `|r|`), in f64.
    pub fn weight(&self, r: f64, eps: f64) -> f64 {
        self.weight_fn::<f64>(eps).weight(r.abs())
    }

    /// The derivative `dw/dr` at `r ≥ 0`, 0 where a clamp is active (as autograd sees it).
    pub fn weight_derivative(&self, r: f64, eps: f64) -> f64 {
        self.weight_fn::<f64>(eps).weight_and_derivative(r.abs()).1
    }

    /// The score `ψ(r) = r·w(|r|)`.
    pub fn psi(&self, r: f64, eps: f64) -> f64 {
        r * self.weight(r, eps)
    }

    /// The loss `ρ(r) = ∫₀^|r| s·w(s) ds` whose sum IRLS with this weight decreases.
    pub fn rho(&self, r: f64, eps: f64) -> f64 {
        let s = r.abs();
        let pieces = self.pieces(eps);
        let mut total = 0.0;
        for (i, p) in pieces.iter().enumerate() {
            if s <= p.start {
                break;
            }
            let end = pieces.get(i + 1).map_or(s, |next| next.start.min(s));
            total += piece_integral(p, eps, end) - piece_integral(p, eps, p.start);
        }
        total
    }

    /// The weight as pieces `alpha/(s + ε) + beta` on `[start, next start)`, starts increasing
    /// from 0. Used for `ρ` and by the analysis code.
    pub fn pieces(&self, eps: f64) -> Vec<Piece> {
        let piece = |start: f64, alpha, beta| Piece {
            start: start.max(0.0),
            alpha,
            beta,
        };
        let mut out = match *self {
            Norm::Lpm => vec![piece(0.0, 0.0, 1.0)],
            Norm::L1 => vec![piece(0.0, 1.0, 0.0)],
            // δ/(s+ε) ≥ 1 ⇔ s ≤ δ − ε
            Norm::Huber { delta } => vec![piece(0.0, 0.0, 1.0), piece(delta - eps, delta, 0.0)],
            // 1/(s+ε) − 1/γ ≤ ε ⇔ s ≥ 1/(ε + 1/γ) − ε
            Norm::Mcp { gamma } => vec![
                piece(0.0, 1.0, -1.0 / gamma),
                piece(1.0 / (eps + 1.0 / gamma) - eps, 0.0, eps),
            ],
            Norm::Hm { gamma, delta } => {
                let c = delta / (gamma - delta);
                // c(γ/(s+ε) − 1) ≥ 1 ⇔ s ≤ δ − ε ;  ≤ ε ⇔ s ≥ γ/(1 + ε/c) − ε  (ε < 1)
                vec![
                    piece(0.0, 0.0, 1.0),
                    piece(delta - eps, c * gamma, -c),
                    piece(gamma / (1.0 + eps / c) - eps, 0.0, eps),
                ]
            }
        };
        // Drop pieces that a later one starts before (e.g. Huber with δ ≤ ε is 1/(s+ε)·δ throughout).
        let mut i = 0;
        while i + 1 < out.len() {
            if out[i + 1].start <= out[i].start {
                out.remove(i);
            } else {
                i += 1;
            }
        }
        out
    }

    /// The weight compiled for the hot loops in precision `T`.
    pub fn weight_fn<T: Real>(&self, eps: f64) -> WeightFn<T> {
        let (kind, p, q) = match *self {
            Norm::Lpm => (WeightKind::Lpm, 0.0, 0.0),
            Norm::L1 => (WeightKind::L1, 1.0, 0.0),
            Norm::Huber { delta } => (WeightKind::Huber, delta, 0.0),
            Norm::Mcp { gamma } => (WeightKind::Mcp, 1.0 / gamma, 0.0),
            Norm::Hm { gamma, delta } => {
                let c = delta / (gamma - delta);
                (WeightKind::Hm, c * gamma, c)
            }
        };
        WeightFn {
            kind,
            eps: T::of(eps),
            p: T::of(p),
            q: T::of(q),
        }
    }
}

/// `∫ s·(α/(s+ε) + β) ds = α·(s − ε·ln(s + ε)) + β·s²/2` (antiderivative, up to a constant).
fn piece_integral(p: &Piece, eps: f64, s: f64) -> f64 {
    p.alpha * (s - eps * (s + eps).ln()) + p.beta * s * s / 2.0
}

/// The family of a [`WeightFn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// `w = 1`.
    Lpm,
    /// `w = p/(r+ε)` with `p = 1`.
    L1,
    /// `w = min(p/(r+ε), 1)`, `p = δ`.
    Huber,
    /// `w = max(1/(r+ε) − p, ε)`, `p = 1/γ`.
    Mcp,
    /// `w = clamp(p/(r+ε) − q, ε, 1)`, `p = cγ`, `q = c`, `c = δ/(γ−δ)`.
    Hm,
}

/// A norm's weight with its constants converted to `T`: what the inner loops evaluate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightFn<T> {
    /// Which formula.
    pub kind: WeightKind,
    /// ε, the smoothing constant (and the floor of `Mcp`, `Hm`).
    pub eps: T,
    /// First constant of the formula (see [`WeightKind`]).
    pub p: T,
    /// Second constant of the formula (see [`WeightKind`]).
    pub q: T,
}

impl<T: Real> WeightFn<T> {
    /// `w(r)` for `r ≥ 0`.
    #[inline(always)]
    pub fn weight(&self, r: T) -> T {
        let one = T::one();
        let inv = one / (r + self.eps);
        match self.kind {
            WeightKind::Lpm => one,
            WeightKind::L1 => inv,
            WeightKind::Huber => {
                let v = self.p * inv;
                if v > one {
                    one
                } else {
                    v
                }
            }
            WeightKind::Mcp => {
                let v = inv - self.p;
                if v < self.eps {
                    self.eps
                } else {
                    v
                }
            }
            WeightKind::Hm => {
                let mut v = self.p * inv - self.q;
                if v > one {
                    v = one;
                }
                if v < self.eps {
                    v = self.eps;
                }
                v
            }
        }
    }

    /// `(w(r), dw/dr)` for `r ≥ 0`; the derivative is 0 where a clamp is active, as in autograd
    /// through the authors' masked assignments.
    #[inline(always)]
    pub fn weight_and_derivative(&self, r: T) -> (T, T) {
        let one = T::one();
        let zero = T::zero();
        let inv = one / (r + self.eps);
        match self.kind {
            WeightKind::Lpm => (one, zero),
            WeightKind::L1 => (inv, -inv * inv),
            WeightKind::Huber => {
                let v = self.p * inv;
                if v > one {
                    (one, zero)
                } else {
                    (v, -v * inv)
                }
            }
            WeightKind::Mcp => {
                let v = inv - self.p;
                if v < self.eps {
                    (self.eps, zero)
                } else {
                    (v, -inv * inv)
                }
            }
            WeightKind::Hm => {
                let v = self.p * inv - self.q;
                let mut w = v;
                let mut dw = -self.p * inv * inv;
                if w > one {
                    w = one;
                    dw = zero;
                }
                if w < self.eps {
                    w = self.eps;
                    dw = zero;
                }
                (w, dw)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn all_norms() -> [Norm; 5] {
        [
            Norm::Lpm,
            Norm::L1,
            Norm::Huber { delta: 3.0 },
            Norm::Mcp { gamma: 4.0 },
            Norm::Hm {
                gamma: 4.0,
                delta: 3.0,
            },
        ]
    }

    /// Exactly on a floor (w = ε before clamping) the weight is not clamped, so it keeps its
    /// derivative, as autograd through the authors' `w[w < eps] = eps` does (the mask is
    /// strict). Chosen so that every value is exact in binary.
    #[test]
    fn a_weight_exactly_on_its_floor_keeps_its_derivative() {
        // MCP, γ = 4, ε = 0.25, r = 1.75: 1/(r + ε) − 1/γ = 0.5 − 0.25 = ε; dw/dr = −1/4.
        let mcp = Norm::Mcp { gamma: 4.0 }.weight_fn::<f64>(0.25);
        assert_eq!(mcp.weight_and_derivative(1.75), (0.25, -0.25));
        assert_eq!(mcp.weight(1.75), 0.25);
        // HM, γ = 6, δ = 3 (c = 1), ε = 0.5, r = 3.5: 6/4 − 1 = ε; dw/dr = −6/16.
        let hm = Norm::Hm {
            gamma: 6.0,
            delta: 3.0,
        }
        .weight_fn::<f64>(0.5);
        assert_eq!(hm.weight_and_derivative(3.5), (0.5, -0.375));
        assert_eq!(hm.weight(3.5), 0.5);
        // Just below the floor the clamp is on and the derivative is 0.
        assert_eq!(mcp.weight_and_derivative(1.8), (0.25, 0.0));
        assert_eq!(hm.weight_and_derivative(3.6), (0.5, 0.0));
    }

    /// Exactly on the ceiling (w = 1 before clamping) the weight is not clamped either, as in
    /// the authors' `w[w > 1] = 1`: Huber and HM keep their derivative there. Values exact in
    /// binary.
    #[test]
    fn a_weight_exactly_on_its_ceiling_keeps_its_derivative() {
        // Huber, δ = 2, ε = 0.5, r = 1.5: δ/(r + ε) = 1; dw/dr = −δ/(r + ε)² = −0.5.
        let huber = Norm::Huber { delta: 2.0 }.weight_fn::<f64>(0.5);
        assert_eq!(huber.weight_and_derivative(1.5), (1.0, -0.5));
        // HM, γ = 8, δ = 4 (c = 1), ε = 0.5, r = 3.5: 8/4 − 1 = 1; dw/dr = −8/16 = −0.5.
        let hm = Norm::Hm {
            gamma: 8.0,
            delta: 4.0,
        }
        .weight_fn::<f64>(0.5);
        assert_eq!(hm.weight_and_derivative(3.5), (1.0, -0.5));
        // Just inside the ceiling the clamp is on and the derivative is 0.
        assert_eq!(huber.weight_and_derivative(1.0), (1.0, 0.0));
        assert_eq!(hm.weight_and_derivative(3.0), (1.0, 0.0));
    }

    /// Names with parameters parse to those parameters and print back to the same text;
    /// a parameter the norm does not have, or a malformed list, is an error.
    #[test]
    fn names_with_parameters_round_trip() {
        let cases = [
            ("mcp(gamma=2.5)", Norm::Mcp { gamma: 2.5 }),
            ("Huber(delta=0.5)", Norm::Huber { delta: 0.5 }),
            (
                "hm(gamma=4, delta=1.5)",
                Norm::Hm {
                    gamma: 4.0,
                    delta: 1.5,
                },
            ),
            ("l1", Norm::L1),
        ];
        for (text, norm) in cases {
            assert_eq!(text.parse::<Norm>().unwrap(), norm, "{text}");
            assert_eq!(norm.to_string().parse::<Norm>().unwrap(), norm, "{norm}");
        }
        for bad in [
            "huber(gamma=2)",
            "mcp(gamma=2",
            "mcp(gamma)",
            "mcp(gamma=x)",
            "mcp(rho=1)",
        ] {
            assert!(bad.parse::<Norm>().is_err(), "{bad}");
        }
    }

    /// Every norm round-trips through its serialised form (`{"kind": "huber", "delta": 0.5}`),
    /// and a record whose parameters fail [`Norm::validate`] is refused on the way in.
    #[test]
    fn serde_round_trips_every_norm_and_checks_parameters() {
        for norm in all_norms() {
            let text = serde_json::to_string(&norm).unwrap();
            assert_eq!(serde_json::from_str::<Norm>(&text).unwrap(), norm, "{text}");
        }
        for bad in [
            r#"{"kind":"huber","delta":-1.0}"#,
            r#"{"kind":"mcp","gamma":0.0}"#,
            r#"{"kind":"hm","gamma":1.0,"delta":2.0}"#,
            r#"{"kind":"cauchy"}"#,
        ] {
            assert!(serde_json::from_str::<Norm>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rho_derivative_is_psi() {
        let eps = 1e-2;
        for norm in all_norms() {
            for &r in &[0.003, 0.1, 0.7, 1.5, 2.5, 2.995, 3.2, 5.0, 40.0] {
                let h = 1e-6;
                let fd = (norm.rho(r + h, eps) - norm.rho(r - h, eps)) / (2.0 * h);
                assert_relative_eq!(fd, norm.psi(r, eps), max_relative = 1e-5, epsilon = 1e-9);
            }
        }
    }

    #[test]
    fn weight_derivative_matches_finite_difference_away_from_kinks() {
        let eps = 1e-2;
        for norm in all_norms() {
            for &r in &[0.05, 0.9, 2.0, 4.5, 9.0] {
                let h = 1e-7;
                let fd = (norm.weight(r + h, eps) - norm.weight(r - h, eps)) / (2.0 * h);
                assert_relative_eq!(
                    fd,
                    norm.weight_derivative(r, eps),
                    max_relative = 1e-4,
                    epsilon = 1e-8
                );
            }
        }
    }

    /// The pieces start at 0, their starts strictly increase, and they give the weight. The
    /// cases with ε ≥ δ (Huber, HM) or a floor above the whole curve (MCP at ε = 4) make pieces
    /// that start together; only the last of them may remain.
    #[test]
    fn pieces_reproduce_weight() {
        let overlapping = [
            (Norm::Huber { delta: 3.0 }, 4.0, 1),
            (Norm::Huber { delta: 0.1 }, 0.1, 1),
            (Norm::Mcp { gamma: 4.0 }, 4.0, 1),
            (Norm::hm(0.4, 0.1).unwrap(), 0.2, 2),
        ];
        let cases = all_norms().into_iter().zip([1, 1, 2, 2, 3]);
        let cases = cases.map(|(norm, count)| (norm, 1e-3, count));
        for (norm, eps, count) in cases.chain(overlapping) {
            let pieces = norm.pieces(eps);
            assert_eq!(pieces.len(), count, "{norm:?} ε = {eps}");
            assert_eq!(pieces[0].start, 0.0);
            assert!(
                pieces.windows(2).all(|p| p[0].start < p[1].start),
                "{pieces:?}"
            );
            for &s in &[0.0, 0.4, 1.0, 2.9, 3.1, 10.0, 1e4] {
                let p = pieces.iter().rev().find(|p| p.start <= s).unwrap();
                let w = p.alpha / (s + eps) + p.beta;
                assert_relative_eq!(w, norm.weight(s, eps), max_relative = 1e-12);
            }
        }
    }

    #[test]
    fn l1_rho_has_closed_form() {
        let eps = 0.05_f64;
        for r in [-3.0_f64, -0.01, 0.0, 0.2, 8.0] {
            let want = r.abs() - eps * (1.0 + r.abs() / eps).ln();
            assert_relative_eq!(Norm::L1.rho(r, eps), want, epsilon = 1e-14);
        }
    }

    #[test]
    fn weights_are_positive_and_non_increasing() {
        for norm in all_norms() {
            let mut prev = f64::INFINITY;
            for i in 0..2000 {
                let r = i as f64 * 0.01;
                let w = norm.weight(r, 1e-3);
                assert!(w > 0.0 && w <= prev, "{norm:?} at {r}: {w} after {prev}");
                prev = w;
            }
        }
    }

    #[test]
    fn from_name_rejects_unknown_and_bad_parameters() {
        assert!(matches!(
            Norm::from_name("l3"),
            Err(Error::UnknownName { .. })
        ));
        assert!(matches!(Norm::hm(3.0, 3.0), Err(Error::Config { .. })));
        assert!(matches!(Norm::hm(3.0, 4.0), Err(Error::Config { .. }))); // swapped
        assert!(matches!(Norm::huber(f64::NAN), Err(Error::Config { .. })));
        assert!(matches!(Norm::mcp(0.0), Err(Error::Config { .. })));
        assert_eq!(Norm::mcp(2.5).unwrap(), Norm::Mcp { gamma: 2.5 });
        assert_eq!(Norm::huber(0.5).unwrap(), Norm::Huber { delta: 0.5 });
        for norm in [Norm::Lpm, Norm::L1, Norm::Huber { delta: 0.5 }] {
            assert!(norm.with_gamma(2.0).is_err(), "{norm:?} has no γ");
        }
        for norm in [Norm::Lpm, Norm::L1, Norm::Mcp { gamma: 2.0 }] {
            assert!(norm.with_delta(0.5).is_err(), "{norm:?} has no δ");
        }
        let hm = Norm::Hm {
            gamma: 3.0,
            delta: 2.0,
        };
        let params = [
            (Norm::Lpm, None, None),
            (Norm::L1, None, None),
            (Norm::Huber { delta: 0.5 }, None, Some(0.5)),
            (Norm::Mcp { gamma: 2.5 }, Some(2.5), None),
            (hm, Some(3.0), Some(2.0)),
        ];
        for (norm, gamma, delta) in params {
            assert_eq!((norm.gamma(), norm.delta()), (gamma, delta), "{norm:?}");
        }
        assert_eq!(Norm::from_name("L2").unwrap(), Norm::Lpm);
        assert_eq!(
            Norm::from_name("hm").unwrap().with_delta(1.0).unwrap(),
            Norm::hm(4.0, 1.0).unwrap()
        );
        assert_eq!(Norm::default(), Norm::L1);
    }
}

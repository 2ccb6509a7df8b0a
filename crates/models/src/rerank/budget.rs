//! A latency budget for the rerank stage: from a cost model measured when the model loads and
//! the tokens of one query's candidates, pick how to rerank them — the full model, a cascade
//! (from an early exit, or from the candidates' own order: the leading ones only) or an early
//! exit — so the estimate stays within the budget.
//!
//! Why a model of cost rather than timing as we go: the choice has to be made before the first
//! forward pass (a cascade's first stage already decides the layers every candidate gets), and
//! a cross-encoder's time on one machine is close to linear in tokens × layers (measured in
//! docs/quality.md beside the per-exit table).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{Cascade, PreparedPairs};
use crate::error::{ModelError, Result};

/// Candidates a cascade finishes at least; below this the budget falls back to an early exit
/// on every candidate. 20: two pages of ten, so the early head's mistakes near rank 10 can
/// still be repaired by the last layer.
pub const MIN_CASCADE_KEEP: usize = 20;

/// Milliseconds per token a model spends, measured at load on this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Per token, whatever the depth (embeddings, the head, tokenization-free overheads).
    pub ms_per_token: f64,
    /// Per token and layer.
    pub ms_per_token_layer: f64,
}

impl CostModel {
    /// Estimated milliseconds for `tokens` tokens through `layers` layers.
    pub fn estimate(&self, tokens: usize, layers: usize) -> f64 {
        tokens as f64 * (self.ms_per_token + self.ms_per_token_layer * layers as f64)
    }

    /// Fits the model to two timings of the same `tokens`: `shallow_ms` through `shallow`
    /// layers and `deep_ms` through `deep` layers (`shallow == deep` for a model without early
    /// exits: everything is then charged per layer).
    pub fn fit(
        tokens: usize,
        (shallow, shallow_ms): (usize, f64),
        (deep, deep_ms): (usize, f64),
    ) -> Self {
        let tokens = tokens.max(1) as f64;
        if deep <= shallow {
            return CostModel {
                ms_per_token: 0.0,
                ms_per_token_layer: deep_ms / tokens / deep.max(1) as f64,
            };
        }
        let per_layer = ((deep_ms - shallow_ms) / tokens / (deep - shallow) as f64).max(1e-9);
        CostModel {
            ms_per_token: (deep_ms / tokens - per_layer * deep as f64).max(0.0),
            ms_per_token_layer: per_layer,
        }
    }

    /// Times `run` (best of `repeats` after one warm-up run), in milliseconds.
    pub(crate) fn time(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
        run()?;
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            run()?;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(best)
    }
}

/// How one query's candidates are reranked under a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankPlan {
    /// Every candidate through every layer.
    Full,
    /// Every candidate through the first `n` layers.
    Exit(usize),
    Cascade(Cascade),
}

impl std::fmt::Display for RerankPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RerankPlan::Full => write!(f, "every layer"),
            RerankPlan::Exit(n) => write!(f, "exit after layer {n}"),
            RerankPlan::Cascade(c) => write!(f, "cascade {c}"),
        }
    }
}

/// A budget in milliseconds per query with the model's measured costs and exits.
#[derive(Debug, Clone)]
pub struct LatencyBudget {
    pub ms: f64,
    pub cost: CostModel,
    /// Layers with a head, the last included, ascending.
    pub exits: Vec<usize>,
    /// How much slower than estimated the queries scored so far ran (a moving average of
    /// observed ÷ estimated time, f64 bits; 1 until a query reports): plans are made for the
    /// budget divided by it. Why: the load-time cost model sees one batch of 16 pairs on an
    /// idle machine and no per-query costs, and on SciFact it underestimated a query's rerank
    /// by 28–41 % (docs/quality.md); the machine's load also changes after loading. Shared by
    /// the views of one loaded model.
    slowdown: Arc<AtomicU64>,
}

/// Weight of the latest query in [`LatencyBudget::record`]'s moving average.
const SLOWDOWN_SMOOTHING: f64 = 0.2;

impl PartialEq for LatencyBudget {
    fn eq(&self, other: &Self) -> bool {
        self.ms == other.ms && self.cost == other.cost && self.exits == other.exits
    }
}

/// What the budget chose for one query, and what it expects that to cost (NaN where no budget
/// chose: a fixed plan).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetChoice {
    pub plan: RerankPlan,
    pub estimated_ms: f64,
}

impl std::fmt::Display for BudgetChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.estimated_ms.is_finite() {
            write!(f, "{} (estimated {:.0} ms)", self.plan, self.estimated_ms)
        } else {
            write!(f, "{}", self.plan)
        }
    }
}

impl LatencyBudget {
    /// A budget must be a positive, finite number of milliseconds.
    pub fn check_ms(ms: f64) -> Result<()> {
        if !(ms.is_finite() && ms > 0.0) {
            return Err(ModelError::InvalidInput(format!(
                "a rerank budget must be a positive number of milliseconds, not {ms}"
            )));
        }
        Ok(())
    }

    pub fn new(ms: f64, cost: CostModel, exits: Vec<usize>) -> Result<Self> {
        Self::check_ms(ms)?;
        if exits.is_empty() {
            return Err(ModelError::Internal("a model without layers".into()));
        }
        Ok(LatencyBudget {
            ms,
            cost,
            exits,
            slowdown: Arc::new(AtomicU64::new(1f64.to_bits())),
        })
    }

    /// The same model's budget of `ms` instead: the cost model, exits and observed slowdown
    /// are shared (a request's own budget learns from, and teaches, every other query).
    pub fn with_ms(&self, ms: f64) -> Result<Self> {
        let mut budget = LatencyBudget::new(ms, self.cost, self.exits.clone())?;
        budget.slowdown = self.slowdown.clone();
        Ok(budget)
    }

    /// Observed ÷ estimated time of the queries so far (1 before any).
    pub fn slowdown(&self) -> f64 {
        f64::from_bits(self.slowdown.load(Ordering::Relaxed))
    }

    /// Reports that a query planned at `estimated_ms` (a [`BudgetChoice`]'s, which includes the
    /// slowdown so far) took `observed_ms`; later plans are made
    /// for the budget divided by the moving average of observed ÷ estimated (kept within 1/4–4,
    /// so one stalled query cannot shut the model out).
    pub fn record(&self, estimated_ms: f64, observed_ms: f64) {
        if !(estimated_ms > 0.0 && observed_ms.is_finite() && observed_ms >= 0.0) {
            return;
        }
        let _ = self
            .slowdown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                // The estimate was already scaled by `old`: the cost model's own estimate is
                // `estimated_ms / old`.
                let ratio = (observed_ms * old / estimated_ms).clamp(0.25, 4.0);
                let new = (1.0 - SLOWDOWN_SMOOTHING) * old + SLOWDOWN_SMOOTHING * ratio;
                Some(new.clamp(0.25, 4.0).to_bits())
            });
    }

    /// The plan for candidates whose pairs have `document_tokens` tokens each (a document's
    /// windows summed), in the first stage's order. In order of preference: the full model;
    /// a cascade from the deepest early exit that leaves room to finish at least
    /// [`MIN_CASCADE_KEEP`] documents (as many as fit); the full model on as many leading
    /// candidates as fit, the rest kept in their order (a cascade from exit 0); the deepest
    /// early exit alone; and when nothing fits, the shallowest exit (over budget: the estimate
    /// says by how much).
    ///
    /// Why leading candidates come before an early exit alone: an exit alone replaces the
    /// first stage's complete ranking with a shallow head's, which on SciFact ranked far worse
    /// (exit 1 alone: nDCG@10 0.10 against recall's 0.78, docs/quality.md), while the first
    /// stage's order past the budget loses only what the model would have moved there.
    pub fn choose(&self, document_tokens: &[usize]) -> BudgetChoice {
        // One reading: another query may report in between.
        let slowdown = self.slowdown();
        let mut choice = self.choose_within(self.ms / slowdown, document_tokens);
        choice.estimated_ms *= slowdown;
        choice
    }

    /// [`LatencyBudget::choose`] for `ms` on the load-time cost model alone.
    fn choose_within(&self, ms: f64, document_tokens: &[usize]) -> BudgetChoice {
        let last = *self.exits.last().expect("checked in new");
        let all: usize = document_tokens.iter().sum();
        let documents = document_tokens.len().max(1);
        let full = self.cost.estimate(all, last);
        if full <= ms {
            return BudgetChoice {
                plan: RerankPlan::Full,
                estimated_ms: full,
            };
        }
        let early = &self.exits[..self.exits.len() - 1];
        let mean_tokens = all as f64 / documents as f64;
        for &exit in early.iter().rev() {
            let first = self.cost.estimate(all, exit);
            let per_document = mean_tokens * self.cost.ms_per_token_layer * (last - exit) as f64;
            if first >= ms || per_document <= 0.0 {
                continue;
            }
            let keep = (((ms - first) / per_document).floor() as usize).min(documents);
            if keep >= MIN_CASCADE_KEEP.min(documents) {
                return BudgetChoice {
                    plan: RerankPlan::Cascade(Cascade { exit, keep }),
                    estimated_ms: first + per_document * keep as f64,
                };
            }
        }
        let mut spent = 0.0;
        let leading = document_tokens
            .iter()
            .take_while(|&&t| {
                spent += self.cost.estimate(t, last);
                spent <= ms
            })
            .count();
        if leading > 0 {
            let tokens: usize = document_tokens[..leading].iter().sum();
            return BudgetChoice {
                plan: RerankPlan::Cascade(Cascade {
                    exit: 0,
                    keep: leading,
                }),
                estimated_ms: self.cost.estimate(tokens, last),
            };
        }
        let fits = early
            .iter()
            .rev()
            .find(|&&exit| self.cost.estimate(all, exit) <= ms);
        let exit = fits.or(early.first()).copied().unwrap_or(last);
        BudgetChoice {
            plan: if exit == last {
                RerankPlan::Full
            } else {
                RerankPlan::Exit(exit)
            },
            estimated_ms: self.cost.estimate(all, exit),
        }
    }

    /// [`LatencyBudget::choose`] for prepared pairs.
    pub fn choose_for(&self, prepared: &PreparedPairs) -> BudgetChoice {
        self.choose(&prepared.document_tokens())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ms: f64) -> LatencyBudget {
        // 0.01 ms per token and layer, 0.002 ms per token: 100 documents × 200 tokens through
        // 6 layers = 20,000 × 0.062 = 1,240 ms.
        let cost = CostModel {
            ms_per_token: 0.002,
            ms_per_token_layer: 0.01,
        };
        LatencyBudget::new(ms, cost, vec![1, 2, 3, 4, 5, 6]).unwrap()
    }

    /// A budget derived for another number of milliseconds plans for that number and shares
    /// what the queries so far taught about this machine.
    #[test]
    fn a_derived_budget_shares_the_observed_slowdown() {
        let b = budget(300.0);
        let docs = vec![200; 100];
        let wide = b.with_ms(10_000.0).unwrap();
        assert_eq!(wide.choose(&docs).plan, RerankPlan::Full);
        let c = b.choose(&docs);
        b.record(c.estimated_ms, 3.0 * c.estimated_ms);
        assert_eq!(wide.slowdown(), b.slowdown());
        assert!(wide.slowdown() > 1.0);
        for ms in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(b.with_ms(ms).is_err(), "{ms}");
        }
    }

    /// Queries that run slower than estimated shrink later plans until estimates match.
    #[test]
    fn observed_times_correct_later_plans() {
        let b = budget(300.0);
        let docs = vec![200; 100];
        let first = b.choose(&docs);
        assert_eq!(
            first.plan,
            RerankPlan::Cascade(Cascade { exit: 0, keep: 24 })
        );
        // Every query takes twice its estimate: the slowdown converges to 2 and 12 fit.
        for _ in 0..60 {
            let c = b.choose(&docs);
            b.record(c.estimated_ms, 2.0 * c.estimated_ms / b.slowdown());
        }
        assert!((b.slowdown() - 2.0).abs() < 0.01, "{}", b.slowdown());
        let later = b.choose(&docs);
        assert_eq!(
            later.plan,
            RerankPlan::Cascade(Cascade { exit: 0, keep: 12 })
        );
        assert!(
            later.estimated_ms <= 300.0 && later.estimated_ms > 290.0,
            "{later}"
        );
        b.record(later.estimated_ms, f64::NAN);
        b.record(0.0, 5.0);
        assert!((b.slowdown() - 2.0).abs() < 0.01, "bad reports are ignored");
        // The views of one loaded model share what they learned.
        let view = b.clone();
        view.record(later.estimated_ms, 1e9);
        assert!(b.slowdown() > 2.0);
    }

    #[test]
    fn the_budget_picks_the_deepest_plan_that_fits() {
        let docs = vec![200; 100];
        assert_eq!(budget(1300.0).choose(&docs).plan, RerankPlan::Full);
        // 300 ms: exit 1 costs 240 and finishing a document 200 × 0.01 × 5 = 10 more: 6
        // documents, too few for a cascade from it; deeper exits cost more than 300 alone. The
        // full model on leading candidates costs 200 × 0.062 = 12.4 each: 24 fit.
        let c = budget(300.0).choose(&docs);
        assert_eq!(
            c.plan,
            RerankPlan::Cascade(Cascade { exit: 0, keep: 24 }),
            "{c}"
        );
        assert!((c.estimated_ms - 24.0 * 12.4).abs() < 1e-6);
        // Leading candidates are counted by their own lengths, in the order they came: two of
        // 1,000 tokens (62 ms each), then 12 of 100 (6.2 ms each) within 200 ms.
        let mut uneven = vec![1000; 2];
        uneven.extend(vec![100; 98]);
        let c = budget(200.0).choose(&uneven);
        assert_eq!(
            c.plan,
            RerankPlan::Cascade(Cascade { exit: 0, keep: 14 }),
            "{c}"
        );
        // 700 ms: exit 3 costs 640, then 6 per document → 10, too few; exit 2 costs 440,
        // then 8 per document → 32.
        let c = budget(700.0).choose(&docs);
        assert_eq!(
            c.plan,
            RerankPlan::Cascade(Cascade { exit: 2, keep: 32 }),
            "{c}"
        );
        assert!(c.estimated_ms <= 700.0);
        // Not even one candidate fits: the shallowest exit, over budget.
        let c = budget(10.0).choose(&docs);
        assert_eq!(c.plan, RerankPlan::Exit(1));
        assert!(c.estimated_ms > 10.0);
        // A model without early exits runs in full, on all candidates or the leading ones.
        let plain = |ms| LatencyBudget::new(ms, budget(1.0).cost, vec![6]).unwrap();
        assert_eq!(plain(2000.0).choose(&docs).plan, RerankPlan::Full);
        assert_eq!(
            plain(100.0).choose(&docs).plan,
            RerankPlan::Cascade(Cascade { exit: 0, keep: 8 })
        );
        assert_eq!(plain(10.0).choose(&docs).plan, RerankPlan::Full);
        assert!(LatencyBudget::new(0.0, budget(1.0).cost, vec![6]).is_err());
        assert!(LatencyBudget::new(f64::NAN, budget(1.0).cost, vec![6]).is_err());
    }

    #[test]
    fn the_cost_model_fits_two_timings() {
        // 1,000 tokens: 150 ms at one layer, 650 ms at six → 0.1 ms per token-layer, 0.05
        // per token.
        let c = CostModel::fit(1000, (1, 150.0), (6, 650.0));
        assert!((c.ms_per_token_layer - 0.1).abs() < 1e-9);
        assert!((c.ms_per_token - 0.05).abs() < 1e-9);
        assert!((c.estimate(1000, 6) - 650.0).abs() < 1e-6);
        let plain = CostModel::fit(1000, (6, 600.0), (6, 600.0));
        assert_eq!(plain.ms_per_token, 0.0);
        assert!((plain.estimate(1000, 6) - 600.0).abs() < 1e-6);
    }
}

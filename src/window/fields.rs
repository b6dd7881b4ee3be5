//! Per-field aggregates a window builds lazily, the first time a rule asks
//! about a field: distinct values, and sum/min/max/percentiles of numeric
//! values. Each is updated as events enter and leave; none scans the
//! window after its initial build. The window decides when to call them.

use std::collections::HashMap;

use super::order::{nearest_rank, OrderStats};
use crate::event::{Event, Field};

/// A field value as a hashable key for `distinct`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DistinctValue {
    Str(Box<str>),
    Int(i64),
    /// Bits of the float, with `-0.0` folded into `0.0` so equal numbers match.
    Float(u64),
    Bool(bool),
}

impl From<Field<'_>> for DistinctValue {
    fn from(f: Field<'_>) -> Self {
        match f {
            Field::Str(s) => DistinctValue::Str(s.into()),
            Field::Int(i) => DistinctValue::Int(i),
            Field::Float(x) => DistinctValue::Float(if x == 0.0 { 0 } else { x.to_bits() }),
            Field::Bool(b) => DistinctValue::Bool(b),
        }
    }
}

/// Which question an aggregate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    Distinct,
    Numeric,
}

/// Numeric summary of one field: an exact integer sum (so integer fields
/// never drift however many events expire), a float sum, and the ordered
/// multiset for min/max/percentiles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Numeric {
    int_sum: i128,
    float_sum: f64,
    floats: u32,
    values: OrderStats,
}

impl Numeric {
    fn add(&mut self, f: Field<'_>) {
        match f {
            Field::Int(i) => self.int_sum += i128::from(i),
            Field::Float(x) => {
                self.float_sum += x;
                self.floats += 1;
            }
            Field::Str(_) | Field::Bool(_) => return,
        }
        if let Some(x) = f.as_f64() {
            self.values.insert(x);
        }
    }

    fn remove(&mut self, f: Field<'_>) {
        match f {
            Field::Int(i) => self.int_sum -= i128::from(i),
            Field::Float(x) => {
                self.floats -= 1;
                // Restart from exact zero once no float is left, so rounding
                // errors of subtraction cannot accumulate forever.
                self.float_sum = if self.floats == 0 {
                    0.0
                } else {
                    self.float_sum - x
                };
            }
            Field::Str(_) | Field::Bool(_) => return,
        }
        if let Some(x) = f.as_f64() {
            self.values.remove(x);
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn sum(&self) -> Option<f64> {
        (self.count() > 0).then_some(self.int_sum as f64 + self.float_sum)
    }

    pub(crate) fn avg(&self) -> Option<f64> {
        Some(self.sum()? / self.count() as f64)
    }

    pub(crate) fn min(&self) -> Option<f64> {
        self.values.min()
    }

    pub(crate) fn max(&self) -> Option<f64> {
        self.values.max()
    }

    pub(crate) fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        self.values.kth(nearest_rank(p, n) - 1)
    }
}

#[derive(Debug, Clone)]
enum Agg {
    /// Occurrences per distinct value.
    Distinct(HashMap<DistinctValue, u32>),
    Numeric(Numeric),
}

/// One lazily built aggregate of one field.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    field: Box<str>,
    agg: Agg,
}

impl Tracked {
    /// Builds the aggregate over the events already in the window.
    pub(crate) fn build<'a>(
        field: &str,
        kind: AggKind,
        events: impl Iterator<Item = &'a Event>,
    ) -> Tracked {
        let agg = match kind {
            AggKind::Distinct => Agg::Distinct(HashMap::new()),
            AggKind::Numeric => Agg::Numeric(Numeric::default()),
        };
        let mut t = Tracked {
            field: field.into(),
            agg,
        };
        for e in events {
            t.add(e);
        }
        t
    }

    pub(crate) fn is(&self, field: &str, kind: AggKind) -> bool {
        let k = match self.agg {
            Agg::Distinct(_) => AggKind::Distinct,
            Agg::Numeric(_) => AggKind::Numeric,
        };
        k == kind && &*self.field == field
    }

    pub(crate) fn add(&mut self, e: &Event) {
        let Some(f) = e.get(&self.field) else { return };
        match &mut self.agg {
            Agg::Distinct(m) => *m.entry(f.into()).or_insert(0) += 1,
            Agg::Numeric(n) => n.add(f),
        }
    }

    pub(crate) fn remove(&mut self, e: &Event) {
        let Some(f) = e.get(&self.field) else { return };
        match &mut self.agg {
            Agg::Distinct(m) => {
                let key = DistinctValue::from(f);
                if let Some(c) = m.get_mut(&key) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(&key);
                    }
                }
            }
            Agg::Numeric(n) => n.remove(f),
        }
    }

    pub(crate) fn distinct(&self) -> usize {
        match &self.agg {
            Agg::Distinct(m) => m.len(),
            Agg::Numeric(_) => 0,
        }
    }

    pub(crate) fn numeric(&self) -> Option<&Numeric> {
        match &self.agg {
            Agg::Numeric(n) => Some(n),
            Agg::Distinct(_) => None,
        }
    }
}

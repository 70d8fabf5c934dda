//! The compiled programs one transformation thread keeps, so a transformation is compiled
//! once per thread while it is unchanged.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use super::pool::{panicked, Sizes};
use super::{compile, Limits, LogSink, Output, Program, RunContext, TransformError, Unit};
use crate::domain::Timestamp;

/// The compiled programs one thread keeps, bounded in number and in memory.
pub(super) struct Cache {
    pub(super) units: HashMap<(Uuid, Timestamp), Cached>,
    tick: u64,
    sizes: Sizes,
}

/// One compiled program, when it was last used and what it holds.
pub(super) struct Cached {
    unit: Box<dyn Unit>,
    used: u64,
    bytes: usize,
}

impl Cache {
    pub(super) fn new(sizes: Sizes) -> Cache {
        Cache {
            units: HashMap::new(),
            tick: 0,
            sizes,
        }
    }

    pub(super) fn run(
        &mut self,
        program: &Program,
        record: &Value,
        ctx: &RunContext,
        limits: &Limits,
        logs: &mut LogSink,
    ) -> Result<Output, TransformError> {
        self.tick += 1;
        let key = (program.id, program.version);
        let tick = self.tick;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let entry = match self.units.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(Cached {
                    unit: compile(program, limits)?,
                    used: tick,
                    bytes: 0,
                }),
            };
            entry.used = tick;
            let result = entry.unit.run(record, ctx, limits, logs);
            Ok((result, entry.unit.memory()))
        }));
        let result = match outcome {
            Ok(Ok((result, bytes))) => {
                let keep = match &result {
                    Err(e) => self
                        .units
                        .get(&key)
                        .is_some_and(|c| c.unit.reusable_after(e)),
                    Ok(_) => true,
                };
                if keep {
                    if let Some(c) = self.units.get_mut(&key) {
                        c.bytes = bytes;
                    }
                } else {
                    self.units.remove(&key);
                }
                result
            }
            // Compilation failed: nothing was kept.
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                // The unit may be half-way through anything: never used again.
                self.units.remove(&key);
                Err(panicked(panic))
            }
        };
        self.trim(key);
        result
    }

    /// Drops the least recently used units past the count and memory bounds; the one just
    /// used goes last, and also when it alone is over the memory bound.
    fn trim(&mut self, current: (Uuid, Timestamp)) {
        loop {
            let total: usize = self.units.values().map(|c| c.bytes).sum();
            if self.units.len() <= self.sizes.cache_units && total <= self.sizes.cache_bytes {
                return;
            }
            let victim = self
                .units
                .iter()
                .filter(|(k, _)| **k != current || self.units.len() == 1)
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    self.units.remove(&k);
                }
                None => return,
            }
        }
    }
}

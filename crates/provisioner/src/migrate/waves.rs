//! `--waves`: how a rollout splits its tenants into waves, e.g. `1,10%,rest`: a canary of one
//! tenant, then a tenth of them, then the others. Each item is a count (`5`), a percentage of
//! all selected tenants (`10%`, rounded up, at least one) or `rest` (everyone left; last item
//! only). A spec that does not end in `rest` gets one appended, so no tenant is left out.

use serde::{Deserialize, Serialize};

use super::MAX_WAVES;

/// The spec a rollout uses when none is given.
pub const DEFAULT_WAVES: &str = "1,10%,rest";

/// One item of a wave spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaveSize {
    Count(usize),
    Percent(u32),
    Rest,
}

/// A parsed, valid wave spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveSpec {
    sizes: Vec<WaveSize>,
}

/// Why a wave spec was refused: the rule it breaks and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; write counts, percentages and a final `rest` separated by commas, e.g. 1,10%,rest")]
pub struct WaveSpecError(String);

impl WaveSpec {
    pub fn parse(raw: &str) -> Result<Self, WaveSpecError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(WaveSpecError("is empty".into()));
        }
        let items: Vec<&str> = raw.split(',').map(str::trim).collect();
        let mut sizes = Vec::with_capacity(items.len() + 1);
        for (i, item) in items.iter().enumerate() {
            let position = i + 1;
            let size = if item.eq_ignore_ascii_case("rest") {
                if position != items.len() {
                    return Err(WaveSpecError(format!(
                        "item {position} is `rest`, which may only be the last item"
                    )));
                }
                WaveSize::Rest
            } else if let Some(number) = item.strip_suffix('%') {
                match number.trim().parse::<u32>() {
                    Ok(p) if (1..=100).contains(&p) => WaveSize::Percent(p),
                    _ => {
                        return Err(WaveSpecError(format!(
                            "item {position} (`{item}`) is not a percentage from 1% to 100%"
                        )));
                    }
                }
            } else {
                match item.parse::<usize>() {
                    Ok(n) if n >= 1 => WaveSize::Count(n),
                    _ => {
                        return Err(WaveSpecError(format!(
                            "item {position} (`{item}`) is not a count of at least 1, a percentage or `rest`"
                        )));
                    }
                }
            };
            sizes.push(size);
        }
        if sizes.last() != Some(&WaveSize::Rest) {
            sizes.push(WaveSize::Rest);
        }
        if sizes.len() > MAX_WAVES {
            return Err(WaveSpecError(format!(
                "has {} waves (counting the final `rest`), more than the {MAX_WAVES} a rollout runs",
                sizes.len()
            )));
        }
        Ok(Self { sizes })
    }

    pub fn sizes(&self) -> &[WaveSize] {
        &self.sizes
    }

    /// `tenants`, in order, cut into waves; waves left with nobody are dropped (a spec of
    /// three waves over two tenants makes two waves).
    pub fn split<T: Clone>(&self, tenants: &[T]) -> Vec<Vec<T>> {
        let total = tenants.len();
        let mut waves = Vec::new();
        let mut next = 0;
        for size in &self.sizes {
            let left = total - next;
            if left == 0 {
                break;
            }
            let wanted = match *size {
                WaveSize::Count(n) => n,
                // Rounded up, and never zero: 10% of 5 tenants is one.
                WaveSize::Percent(p) => (total * p as usize).div_ceil(100).max(1),
                WaveSize::Rest => left,
            };
            let take = wanted.min(left);
            waves.push(tenants[next..next + take].to_vec());
            next += take;
        }
        waves
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sizes(spec: &str, n: usize) -> Vec<usize> {
        let tenants: Vec<usize> = (0..n).collect();
        WaveSpec::parse(spec)
            .unwrap()
            .split(&tenants)
            .iter()
            .map(Vec::len)
            .collect()
    }

    #[test]
    fn counts_percentages_and_rest_split_every_tenant_once_in_order() {
        assert_eq!(sizes("1,10%,rest", 100), [1, 10, 89]);
        assert_eq!(sizes("1,20,rest", 100), [1, 20, 79]);
        assert_eq!(sizes("1,5,rest", 24), [1, 5, 18]);
        // Rounded up, at least one.
        assert_eq!(sizes("10%,rest", 5), [1, 4]);
        assert_eq!(sizes("34%,rest", 10), [4, 6]);
        // No `rest`: one is added.
        assert_eq!(sizes("2,3", 10), [2, 3, 5]);
        // Fewer tenants than waves: empty waves are dropped.
        assert_eq!(sizes("1,10%,rest", 1), [1]);
        assert_eq!(sizes("5,rest", 3), [3]);
        assert_eq!(sizes("rest", 7), [7]);
        assert!(sizes("1,rest", 0).is_empty());
        let tenants: Vec<usize> = (0..30).collect();
        let waves = WaveSpec::parse("1,10%,rest").unwrap().split(&tenants);
        assert_eq!(waves.concat(), tenants);
    }

    #[test]
    fn bad_specs_are_refused_with_the_rule_they_break() {
        let error = |spec: &str| WaveSpec::parse(spec).unwrap_err().to_string();
        assert!(error("").contains("is empty"), "{}", error(""));
        assert!(error("rest,1").contains("item 1 is `rest`, which may only be the last item"));
        assert!(error("1,0,rest").contains("item 2 (`0`) is not a count of at least 1"));
        assert!(error("1,,rest").contains("item 2 (``)"));
        assert!(error("0%,rest").contains("not a percentage from 1% to 100%"));
        assert!(error("101%").contains("not a percentage from 1% to 100%"));
        assert!(error("-1").contains("not a count"));
        assert!(error("1,ten").contains("item 2 (`ten`)"));
        let many = error("1,1,1,1,1,1,1,1,rest");
        assert!(
            many.contains(&format!(
                "has 9 waves (counting the final `rest`), more than the {MAX_WAVES}"
            )),
            "{many}"
        );
        assert!(WaveSpec::parse("1,1,1,1,1,1,1,rest").is_ok());
        assert!(error("x").ends_with("e.g. 1,10%,rest"));
    }
}

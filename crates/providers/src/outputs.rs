//! Outputs built from `(name, value)` pairs, as every provider reports them.

use fediversity_engine::provider::Outputs;
use serde_json::Value;

/// Outputs from `(name, value)` pairs, none of them sensitive (a provider adds the names of
/// its secret outputs to `sensitive` itself).
pub(crate) fn outputs<const N: usize>(values: [(&str, Value); N]) -> Outputs {
    Outputs {
        values: values
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        sensitive: Default::default(),
    }
}

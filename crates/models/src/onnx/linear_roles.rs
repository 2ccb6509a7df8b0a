//! The linear layers of one encoder layer, by role: shared vocabulary of the graph writer and
//! the int8 calibration, which indexes its per-channel maxima by these roles.

/// The encoder's linear layers, by role; the discriminant indexes calibration slots and probe
/// outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linear {
    Qkv = 0,
    AttentionOutput = 1,
    FfnIn = 2,
    FfnOut = 3,
}

/// How many linear layers a transformer layer has ([`Linear`]'s variants).
pub(crate) const LINEAR_ROLES: usize = 4;

/// Name of the graph output carrying the input of linear `role` in layer `layer`
/// (`[b, t, in]` f32); only probe graphs have them.
pub(crate) fn probe_output(layer: usize, role: usize) -> String {
    format!("probe_{layer}_{role}")
}

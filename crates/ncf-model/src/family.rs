//! The models by name: which one a checkpoint holds, building one from `--model`, and NeuMF's
//! pre-training from a GMF and an MLP (He et al., section 3.4.1).

use crate::model::{AnyModel, Model};
use crate::neumf::Branches;
use crate::{Gmf, GmfConfig, Mf, MfConfig, Mlp, MlpConfig, ModelError, NeuMf, NeuMfConfig};
use std::path::Path;
use tch::{Device, Tensor};

/// The models of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// [`NeuMf`]: GMF and MLP side by side (the reference's model).
    NeuMf,
    /// [`Gmf`]: generalized matrix factorisation.
    Gmf,
    /// [`Mlp`]: the MLP tower alone.
    Mlp,
    /// [`Mf`]: dot-product matrix factorisation with biases.
    Mf,
}

impl ModelKind {
    /// Every kind, in `--model`'s order.
    pub const ALL: [ModelKind; 4] = [ModelKind::NeuMf, ModelKind::Gmf, ModelKind::Mlp, ModelKind::Mf];

    /// The name `--model` takes and logs show (`neumf`, `gmf`, `mlp`, `mf`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::NeuMf => "neumf",
            ModelKind::Gmf => "gmf",
            ModelKind::Mlp => "mlp",
            ModelKind::Mf => "mf",
        }
    }

    /// The name as the literature writes it (`NeuMF`, `GMF`, `MLP`, `MF`).
    pub fn title(self) -> &'static str {
        match self {
            ModelKind::NeuMf => "NeuMF",
            ModelKind::Gmf => "GMF",
            ModelKind::Mlp => "MLP",
            ModelKind::Mf => "MF",
        }
    }

    /// Which model a state dict belongs to, from its keys: `mf_user_embed` and `mlp_user_embed`
    /// (NeuMF), one of them (GMF, MLP), or `user_embed` (MF). `module.` prefixes are ignored.
    pub fn of_state_dict(entries: &[(String, Tensor)]) -> Result<ModelKind, ModelError> {
        ModelKind::of_keys(&entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
    }

    /// [`ModelKind::of_state_dict`] from the keys alone (e.g. a checkpoint's, read without its data).
    pub fn of_keys(keys: &[&str]) -> Result<ModelKind, ModelError> {
        let has = |name: &str| keys.iter().any(|k| k.strip_prefix("module.").unwrap_or(k) == name);
        match (has("mf_user_embed.weight"), has("mlp_user_embed.weight"), has("user_embed.weight")) {
            (true, true, false) => Ok(ModelKind::NeuMf),
            (true, false, false) => Ok(ModelKind::Gmf),
            (false, true, false) => Ok(ModelKind::Mlp),
            (false, false, true) => Ok(ModelKind::Mf),
            _ => {
                let shown: Vec<&str> = keys.iter().copied().take(8).collect();
                Err(ModelError::StateDict {
                    problems: vec![format!(
                        "not a NeuMF, GMF, MLP or MF state dict (keys: {}{})",
                        shown.join(", "),
                        if keys.len() > 8 { ", ..." } else { "" }
                    )],
                })
            }
        }
    }

    /// Which model the checkpoint at `path` holds, read from its keys (no tensor data is read).
    pub fn of_file(path: &Path) -> Result<ModelKind, ModelError> {
        let entries = torchfile::TorchFile::open(path)?.tensor_map()?;
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        ModelKind::of_keys(&keys).map_err(|e| e.in_file(path))
    }

    /// A freshly initialised model of this kind. `shape` holds every knob of the family; each model
    /// reads its own: NeuMF all, GMF and MF `mf_dim` (their embedding width), MLP `mlp_layers` and
    /// `dropout`.
    pub fn build(self, shape: &NeuMfConfig, device: Device) -> Result<AnyModel, ModelError> {
        let (users, items) = (shape.users, shape.items);
        Ok(match self {
            ModelKind::NeuMf => Box::new(NeuMf::new(shape.clone(), device)?),
            ModelKind::Gmf => Box::new(Gmf::new(GmfConfig { users, items, factors: shape.mf_dim }, device)?),
            ModelKind::Mlp => Box::new(Mlp::new(
                MlpConfig { users, items, layers: shape.mlp_layers.clone(), dropout: shape.dropout },
                device,
            )?),
            ModelKind::Mf => Box::new(Mf::new(MfConfig { users, items, factors: shape.mf_dim }, device)?),
        })
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown model `{s}`: expected one of neumf, gmf, mlp, mf"))
    }
}

/// The model a checkpoint holds, whichever it is (its kind from its keys, its shape from their
/// shapes), with its parameters, on `device`. `dropout` applies to models with an MLP.
pub fn load_any(path: &Path, dropout: f64, device: Device) -> Result<(ModelKind, AnyModel), ModelError> {
    let entries = tch_data::load_tch_map(path, Device::Cpu)?;
    let kind = ModelKind::of_state_dict(&entries).map_err(|e| e.in_file(path))?;
    let shape = match kind {
        ModelKind::Mf => {
            let c = Mf::shape_of(&entries).map_err(|e| e.in_file(path))?;
            NeuMfConfig { users: c.users, items: c.items, mf_dim: c.factors, mlp_layers: vec![], dropout }
        }
        _ => NeuMfConfig::shape_of(&entries, dropout).map_err(|e| e.in_file(path))?.0,
    };
    let mut model = kind.build(&shape, device)?;
    model.load_state_dict(entries).map_err(|e| e.in_file(path))?;
    Ok((kind, model))
}

impl NeuMf {
    /// NeuMF initialised from a trained GMF and MLP, as the NCF paper pre-trains it: every
    /// embedding and MLP layer copied, the final layer the two final layers side by side weighted
    /// `alpha` and `1 - alpha` (`h = [alpha h_GMF; (1 - alpha) h_MLP]`, the bias likewise
    /// `alpha b_GMF + (1 - alpha) b_MLP`). The two must agree on users and items; NeuMF takes
    /// GMF's width as its factors and MLP's layers. `dropout` is NeuMF's.
    pub fn from_pretrained(gmf: &Gmf, mlp: &Mlp, alpha: f64, dropout: f64, device: Device) -> Result<Self, ModelError> {
        let (g, m) = (gmf.config(), mlp.config());
        if (g.users, g.items) != (m.users, m.items) {
            return Err(ModelError::Config(format!(
                "the pre-trained GMF has {} users and {} items, the MLP {} users and {} items: both must come from the same dataset",
                g.users, g.items, m.users, m.items
            )));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(ModelError::Config(format!("alpha must be in [0, 1], got {alpha}")));
        }
        let config = NeuMfConfig { users: g.users, items: g.items, mf_dim: g.factors, mlp_layers: m.layers, dropout };
        let mut neumf = NeuMf::with_branches(config, Branches::NEUMF, device)?;
        let find = |entries: &[(String, Tensor)], name: &str| {
            entries.iter().find(|(k, _)| k == name).map(|(_, t)| t.shallow_clone())
        };
        let (gs, ms) = (gmf.inner().state_dict(), mlp.inner().state_dict());
        let mut entries: Vec<(String, Tensor)> = Vec::new();
        for (name, t) in gs.iter().chain(&ms) {
            if !name.starts_with("final.") {
                entries.push((name.clone(), t.shallow_clone()));
            }
        }
        let part = |entries: &[(String, Tensor)], name: &str| {
            find(entries, name).ok_or_else(|| ModelError::StateDict { problems: vec![format!("missing `{name}`")] })
        };
        let weight = Tensor::cat(&[part(&gs, "final.weight")? * alpha, part(&ms, "final.weight")? * (1.0 - alpha)], 1);
        let bias = part(&gs, "final.bias")? * alpha + part(&ms, "final.bias")? * (1.0 - alpha);
        entries.push(("final.weight".into(), weight));
        entries.push(("final.bias".into(), bias));
        neumf.load_state_dict(entries)?;
        Ok(neumf)
    }
}

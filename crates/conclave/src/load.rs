//! Loads the one typed configuration: defaults, then the TOML file, then
//! `CONCLAVE_*` environment variables, each overriding the last.

use std::path::Path;

use conclave_server::Config;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(p) = path {
        if !p.exists() {
            return Err(format!(
                "configuration file {} does not exist (run `conclave config example > {}` to create one)",
                p.display(),
                p.display()
            ));
        }
        fig = fig.merge(Toml::file(p));
    }
    fig = fig.merge(Env::prefixed("CONCLAVE_").split("__").ignore(&["config"]));
    let cfg: Config = fig.extract().map_err(|e| {
        let mut msg = String::from("invalid configuration:");
        for err in e {
            msg.push_str(&format!("\n  {err}"));
        }
        msg
    })?;
    cfg.validate()
        .map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(cfg)
}

//! Which provenance vouches for a library, per location, and how much an
//! unvouched library matters there. Rules are globs over paths as seen
//! inside the root; the first matching rule applies.
//!
//! Defaults (used when the config has no `[[provenance.rule]]`):
//!
//! | glob | accepted | severity when nothing vouches |
//! |---|---|---|
//! | `/usr/lib/modules/**`, `/lib/modules/**` | module_signature, package, ima | high |
//! | `/windows/**` (any case) | authenticode, catalog | high |
//! | `/usr/local/**`, `/opt/**` | package, manifest, ima, authenticode | low |
//! | `/usr/lib/**`, `/usr/lib64/**`, `/usr/lib32/**`, `/usr/libx32/**` | package, ima, authenticode, catalog | high |
//! | `/**` | package, ima, authenticode, catalog, module_signature | medium |
//!
//! `manifest` means "in the baseline with this very content": an admin
//! who ran `init`/`update` vouched for it. It is accepted by default only
//! where unpackaged software is normal (`/usr/local`, `/opt`).

use serde::Deserialize;

use crate::finding::Severity;

/// A kind of provenance evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Owned by an installed dpkg package, content matching its md5sums.
    Package,
    /// A valid embedded Authenticode signature (PE).
    Authenticode,
    /// Listed in a Windows security catalog.
    Catalog,
    /// A `security.ima` hash that matches the content (or an IMA signature).
    Ima,
    /// In the baseline with the same content.
    Manifest,
    /// An appended kernel module signature.
    ModuleSignature,
}

/// One rule as written in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub glob: String,
    pub accept: Vec<Evidence>,
    #[serde(default = "default_severity")]
    pub severity: SeverityName,
    /// Match the glob case-insensitively (Windows images).
    #[serde(default)]
    pub ignore_case: bool,
}

fn default_severity() -> SeverityName {
    SeverityName::Medium
}

/// A severity as written in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityName {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityName> for Severity {
    fn from(s: SeverityName) -> Severity {
        match s {
            SeverityName::Info => Severity::Info,
            SeverityName::Low => Severity::Low,
            SeverityName::Medium => Severity::Medium,
            SeverityName::High => Severity::High,
            SeverityName::Critical => Severity::Critical,
        }
    }
}

/// The `[provenance]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// Turn provenance checks off entirely.
    #[serde(default)]
    pub disabled: bool,
    /// dpkg's admin dir inside the root [default: /var/lib/dpkg].
    pub dpkg_admin_dir: Option<std::path::PathBuf>,
    /// PEM bundle (host path) of roots trusted for Authenticode.
    pub authenticode_roots: Option<std::path::PathBuf>,
    /// PEM files (host paths) of certificates or public keys that IMA
    /// signatures are verified against.
    #[serde(default)]
    pub ima_keys: Vec<std::path::PathBuf>,
    /// Rules, first match wins; replace the defaults when given.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

/// The compiled rules.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<(globset::GlobMatcher, Vec<Evidence>, Severity)>,
}

impl Policy {
    /// Compiles `cfg`'s rules, or the defaults when it has none.
    pub fn new(cfg: &ProvenanceConfig) -> Result<Policy, String> {
        let rules = if cfg.rules.is_empty() {
            defaults()
        } else {
            cfg.rules.clone()
        };
        let mut out = Vec::new();
        for r in rules {
            let g = globset::GlobBuilder::new(&r.glob)
                .literal_separator(true)
                .case_insensitive(r.ignore_case)
                .build()
                .map_err(|e| format!("provenance rule glob {:?}: {e}", r.glob))?;
            out.push((g.compile_matcher(), r.accept, r.severity.into()));
        }
        Ok(Policy { rules: out })
    }

    /// What vouches for `path` and the severity when nothing does. A path
    /// no rule matches needs nothing.
    pub fn rule_for(&self, path: &[u8]) -> Option<(&[Evidence], Severity)> {
        let p = std::path::Path::new(<std::ffi::OsStr as crate::sys::OsStrExt>::from_bytes(path));
        self.rules
            .iter()
            .find(|(g, _, _)| g.is_match(p))
            .map(|(_, a, s)| (a.as_slice(), *s))
    }
}

fn defaults() -> Vec<RuleConfig> {
    use Evidence::*;
    let rule = |glob: &str, accept: &[Evidence], severity| RuleConfig {
        glob: glob.to_string(),
        accept: accept.to_vec(),
        severity,
        ignore_case: false,
    };
    let mut v = Vec::new();
    for g in ["/usr/lib/modules/**", "/lib/modules/**"] {
        v.push(rule(
            g,
            &[ModuleSignature, Package, Ima],
            SeverityName::High,
        ));
    }
    v.push(RuleConfig {
        ignore_case: true,
        ..rule("/windows/**", &[Authenticode, Catalog], SeverityName::High)
    });
    for g in ["/usr/local/**", "/opt/**"] {
        v.push(rule(
            g,
            &[Package, Manifest, Ima, Authenticode],
            SeverityName::Low,
        ));
    }
    for g in [
        "/usr/lib/**",
        "/usr/lib64/**",
        "/usr/lib32/**",
        "/usr/libx32/**",
    ] {
        v.push(rule(
            g,
            &[Package, Ima, Authenticode, Catalog],
            SeverityName::High,
        ));
    }
    v.push(rule(
        "/**",
        &[Package, Ima, Authenticode, Catalog, ModuleSignature],
        SeverityName::Medium,
    ));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_by_location() {
        let p = Policy::new(&ProvenanceConfig::default()).unwrap();
        assert_eq!(p.rule_for(b"/usr/local/lib/x.so").unwrap().1, Severity::Low);
        assert_eq!(
            p.rule_for(b"/usr/lib/x86_64-linux-gnu/x.so").unwrap().1,
            Severity::High
        );
        assert!(p
            .rule_for(b"/usr/lib/modules/6.1/kernel/a.ko")
            .unwrap()
            .0
            .contains(&Evidence::ModuleSignature));
        assert_eq!(p.rule_for(b"/srv/lib/x.so").unwrap().1, Severity::Medium);
        let win = p.rule_for(b"/WinDows/System32/k.dll").unwrap();
        assert_eq!(win.0, &[Evidence::Authenticode, Evidence::Catalog]);
    }

    #[test]
    fn config_rules_replace_defaults() {
        let c: ProvenanceConfig = toml::from_str(
            "[[rule]]\nglob = \"/opt/**\"\naccept = [\"manifest\"]\nseverity = \"critical\"\n",
        )
        .unwrap();
        let p = Policy::new(&c).unwrap();
        assert_eq!(p.rule_for(b"/opt/x.so").unwrap().1, Severity::Critical);
        assert!(p.rule_for(b"/usr/lib/x.so").is_none());
        assert!(
            toml::from_str::<ProvenanceConfig>("[[rule]]\nglob = \"/\"\naccept = [\"gpg\"]\n")
                .is_err()
        );
    }
}

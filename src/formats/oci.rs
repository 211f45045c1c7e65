//! The JSON of container images: an OCI image layout's `index.json` and
//! manifests (image-spec v1), and a `docker save` archive's
//! `manifest.json`. Only the fields needed to find the layers in order and
//! the config are read; unknown fields are ignored. Digests are checked to
//! be `sha256:` + 64 hex digits before they ever name a file.

use serde::Deserialize;

/// Cap on one JSON document of an image (real ones are a few KiB).
pub const JSON_CAP: u64 = 4 << 20;
/// More layers than this is not an image anyone builds (Docker's own
/// limit is 127).
pub const MAX_LAYERS: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// `index.json` (or an image index blob).
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// The parts of an image config libwarden looks at.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: Option<RunConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of the blob (media types lie more often than
    /// magic numbers: docker archives say nothing at all).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar+gzip",
            Compression::Zstd => "tar+zstd",
        }
    }
}

/// The hex part of a `sha256:` digest, if it is one.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}

pub fn parse_index(b: &[u8]) -> Result<Index, String> {
    serde_json::from_slice(b).map_err(|e| format!("index: {e}"))
}

pub fn parse_manifest(b: &[u8]) -> Result<Manifest, String> {
    let m: Manifest = serde_json::from_slice(b).map_err(|e| format!("manifest: {e}"))?;
    if m.layers.len() > MAX_LAYERS {
        return Err(format!("manifest lists {} layers", m.layers.len()));
    }
    Ok(m)
}

pub fn parse_docker(b: &[u8]) -> Result<Vec<DockerEntry>, String> {
    let v: Vec<DockerEntry> =
        serde_json::from_slice(b).map_err(|e| format!("manifest.json: {e}"))?;
    if v.iter().any(|e| e.layers.len() > MAX_LAYERS) {
        return Err("manifest.json lists too many layers".into());
    }
    Ok(v)
}

pub fn parse_config(b: &[u8]) -> ImageConfig {
    serde_json::from_slice(b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_manifests() {
        let h = "a".repeat(64);
        assert_eq!(sha256_hex(&format!("sha256:{h}")), Some(h.as_str()));
        assert!(sha256_hex("sha256:../../etc/passwd").is_none());
        assert!(sha256_hex(&format!("sha512:{h}")).is_none());
        let m = parse_manifest(
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},
                "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:11","size":2}]}"#,
        )
        .unwrap();
        assert_eq!(m.layers.len(), 1);
        assert!(parse_manifest(b"[").is_err());
        let d = parse_docker(
            br#"[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l1.tar","l2.tar"]}]"#,
        )
        .unwrap();
        assert_eq!(d[0].layers, vec!["l1.tar", "l2.tar"]);
        let c = parse_config(br#"{"config":{"Env":["PATH=/bin","LD_PRELOAD=/x.so"]}}"#);
        assert_eq!(c.config.unwrap().env.unwrap().len(), 2);
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"usr/"), Compression::None);
    }
}

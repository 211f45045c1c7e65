//! A container image scanned in place: an OCI image layout directory or a
//! `docker save` archive. The manifest gives the layers in order; each
//! layer's tar stream (plain, gzip or zstd) is read once, straight from the
//! blob, and applied to an in-memory [`View`] with the OCI whiteout rules
//! (`.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties
//! its directory of what the layers below put there). Every regular file
//! is hashed (BLAKE3) from the stream; small files under `/etc` are kept
//! (the loader's configuration is read from them). Nothing from the image
//! is extracted, executed or written anywhere, and each layer blob is
//! checked against its manifest digest in the same read.
//!
//! [`View`] implements [`ldconf::ConfSource`], so `ld.so.conf` and its
//! includes are parsed by the same code as a real root's, and
//! [`rootfs::Tree`], so a [`rootfs::Root`] over it lets provenance and the
//! audits judge the image with the code that judges a host. For them the
//! view also keeps the package databases (dpkg's `status`, `info/*.md5sums`
//! and `.list`, `diversions`; `rpmdb.sqlite`; apk's `installed`), each
//! capped, and [`Image::package_digests`] computes, in a second pass over
//! the layers that hold them, the package digests (MD5, SHA-256, SHA-1) of
//! the files asked for: which files a package database owns is only known
//! once every layer is applied.

mod hold;
pub mod records;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use sha2::Digest;

use crate::facts::Facts;
use crate::formats::ldconf;
use crate::formats::oci::{self, Compression};
use crate::record::FileClass;
use crate::rootfs::{self, Meta};
use crate::sys::OsStrExt;

/// Files kept in memory: those under `/etc` up to this size.
const KEEP_CAP: u64 = 1 << 20;
/// The package databases kept in memory, each up to this size (dpkg's
/// `status` of a full distribution is a few MiB, `rpmdb.sqlite` tens).
const DB_KEEP_CAP: u64 = 256 << 20;
/// One `info/*.md5sums` / `.list` file.
const INFO_KEEP_CAP: u64 = 64 << 20;
/// All package database files kept together.
const DB_KEEP_TOTAL: u64 = 1 << 30;
/// Entries in one image (a full distribution is a few hundred thousand).
const MAX_ENTRIES: usize = 4_000_000;
/// Bytes [`FileClass::sniff`] looks at.
const HEAD: usize = 64;
/// One path's length.
const MAX_PATH: usize = 4096;
/// Symlinks followed in one lookup (as the kernel's 40).
const MAX_LINKS: usize = 40;
/// Files up to this size are held in memory while they stream past, so
/// their facts (ELF headers, a loader's preload string) are parsed with
/// the same parsers as a file on disk; the bytes are dropped right after.
/// Larger files get a digest and a class, no facts.
pub const FACTS_CAP: u64 = 64 << 20;

/// What the view holds at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
        blake3: [u8; 32],
        /// Sniffed from the first bytes, as a scan does.
        class: FileClass,
        /// What the judges need of the content (as [`crate::inspect`]
        /// gathers it on a host), for files up to [`FACTS_CAP`].
        facts: Option<Arc<Facts>>,
        /// The content, for small files under `/etc`.
        data: Option<Vec<u8>>,
    },
    Symlink(Vec<u8>),
    /// Devices, FIFOs: present, never read.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits as the tar header gives them (no file type).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds, from the tar header.
    pub mtime: i64,
    /// The layer (0-based) that put it there.
    pub layer: usize,
}

/// Something a whiteout removed: what it was, and which layer removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: Vec<u8>,
    pub node: Node,
    pub by_layer: usize,
}

/// Package digests by content: BLAKE3 → (algorithm name, digest).
pub type Digests = BTreeMap<[u8; 32], Vec<(&'static str, Vec<u8>)>>;

/// The merged filesystem of an image.
#[derive(Debug, Default)]
pub struct View {
    pub nodes: BTreeMap<Vec<u8>, Node>,
    pub removed: Vec<Removed>,
    /// Package digests computed by [`Image::package_digests`], keyed by the
    /// BLAKE3 of the bytes they were computed from (so a layer changed
    /// between the passes gives no digest, never a wrong one).
    pub digests: std::sync::OnceLock<Digests>,
    /// Bytes of package database files kept so far (bounded by
    /// [`DB_KEEP_TOTAL`]).
    kept_db: u64,
}

/// One layer as read.
#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: String,
    pub compression: Compression,
    /// Bytes of the blob (compressed) and of its tar stream.
    pub blob_bytes: u64,
    pub tar_bytes: u64,
    pub entries: usize,
}

/// An opened image.
#[derive(Debug)]
pub struct Image {
    /// `oci` or `docker-archive`.
    pub format: &'static str,
    /// The digest of the image config (the image id): what identifies
    /// this image, whichever format holds it.
    pub id: String,
    /// The OCI manifest's digest (`None` for a docker archive).
    pub manifest_digest: Option<String>,
    pub tags: Vec<String>,
    pub layers: Vec<Layer>,
    /// `Env` of the image config (`LD_PRELOAD` there is a hijack of every
    /// container started from it).
    pub env: Vec<String>,
    /// Shared with the [`rootfs::Root`] the judges read it through.
    pub view: Arc<View>,
    pub warnings: Vec<String>,
    /// The layer blobs in order (for [`Image::package_digests`]).
    blobs: Vec<(String, Blob)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Format(String),
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
    let w = what.to_string();
    move |e| ImageError::Io(w, e)
}

/// Where a blob's bytes are: a file of its own, or a member of an archive.
#[derive(Debug, Clone)]
struct Blob {
    file: PathBuf,
    offset: u64,
    len: Option<u64>,
}

impl Blob {
    fn open(&self) -> Result<Box<dyn Read>, ImageError> {
        let mut f = open_nofollow(&self.file).map_err(io(self.file.display()))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(io(self.file.display()))?;
        Ok(match self.len {
            Some(n) => Box::new(f.take(n)),
            None => Box::new(f),
        })
    }

    fn read_small(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        self.open()?
            .take(oci::JSON_CAP + 1)
            .read_to_end(&mut out)
            .map_err(io(self.file.display()))?;
        if out.len() as u64 > oci::JSON_CAP {
            return Err(ImageError::Format(format!(
                "{}: JSON over {} bytes",
                self.file.display(),
                oci::JSON_CAP
            )));
        }
        Ok(out)
    }
}

/// Opens an image file without following a symlink at its last component
/// (blob names are digests; a symlink there is not a blob).
fn open_nofollow(p: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Which image a file holds (or the one chosen of several), read from
/// its index or `manifest.json` and config alone, no layer.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `oci` or `docker-archive`.
    pub format: &'static str,
    /// The digest of the image config: the image id, the same for an OCI
    /// layout and the `docker save` archive of it.
    pub id: String,
    /// The OCI manifest's digest (what older versions named an OCI image
    /// by), `None` for a docker archive.
    pub manifest_digest: Option<String>,
    pub tags: Vec<String>,
}

/// An image found, before its layers are read.
struct Located {
    identity: Identity,
    config: Vec<u8>,
    layers: Vec<(String, Blob)>,
}

/// The OCI annotation naming a manifest of a layout (what `umoci` and
/// `skopeo` write for `oci:DIR:TAG`).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Splits an `--image` argument into the image's path and a tag, as
/// `skopeo` and `umoci` users write them: `DIR:TAG`, `FILE.tar:NAME:TAG`,
/// optionally with the transport first (`oci:DIR:TAG`,
/// `docker-archive:FILE:NAME:TAG`). A path that exists as given is never
/// split (a `:` may be part of a file name); otherwise the shortest
/// existing prefix before a `:` is the path and the rest the tag.
pub fn split_ref(arg: &Path) -> (PathBuf, Option<String>) {
    if arg.exists() {
        return (arg.to_path_buf(), None);
    }
    let Some(s) = arg.to_str() else {
        return (arg.to_path_buf(), None);
    };
    let s = ["oci:", "docker-archive:", "oci-archive:"]
        .iter()
        .find_map(|t| s.strip_prefix(t))
        .filter(|rest| !Path::new(s).exists() && !rest.is_empty())
        .unwrap_or(s);
    for (i, _) in s.match_indices(':') {
        let (p, tag) = (&s[..i], &s[i + 1..]);
        if !p.is_empty() && !tag.is_empty() && Path::new(p).exists() {
            return (PathBuf::from(p), Some(tag.to_string()));
        }
    }
    (PathBuf::from(s), None)
}

/// Whether a docker `RepoTags` entry is what a user means by `tag`:
/// exactly, or with the registry defaults Docker adds
/// (`docker.io/library/`, `:latest`).
fn repo_tag_matches(repo_tag: &str, tag: &str) -> bool {
    let short = |t: &str| -> String {
        let t = t
            .strip_prefix("docker.io/library/")
            .or_else(|| t.strip_prefix("docker.io/"))
            .unwrap_or(t);
        let last = t.rsplit('/').next().unwrap_or(t);
        if last.contains(':') || last.contains('@') {
            t.to_string()
        } else {
            format!("{t}:latest")
        }
    };
    repo_tag == tag || short(repo_tag) == short(tag)
}

/// The refusal for a file holding several images and no choice made.
fn ambiguous(what: &str, tags: &[String]) -> ImageError {
    ImageError::Format(format!(
        "{what} holds {} images: choose one with --image PATH:TAG or --tag TAG (tags: {})",
        tags.len(),
        tags.join(", ")
    ))
}

fn no_tag(what: &str, tag: &str, tags: &[String]) -> ImageError {
    ImageError::Format(format!(
        "{what} has no image tagged {tag:?} (tags: {})",
        if tags.is_empty() {
            "none".to_string()
        } else {
            tags.join(", ")
        }
    ))
}

/// The manifest of an OCI index the user asked for: by `tag` (its
/// `ref.name`), else the only image, else (platform variants of one
/// image) linux/amd64 or the first. Several differently named images
/// and no tag are refused, listing the tags.
fn choose_oci(index: &oci::Index, tag: Option<&str>) -> Result<oci::Descriptor, ImageError> {
    let name = |d: &oci::Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let mut tags: Vec<String> = index.manifests.iter().filter_map(name).collect();
    tags.dedup();
    if let Some(t) = tag {
        return index
            .manifests
            .iter()
            .find(|d| name(d).as_deref() == Some(t))
            .cloned()
            .ok_or_else(|| no_tag("the OCI layout", t, &tags));
    }
    let mut digests: Vec<&str> = index.manifests.iter().map(|d| d.digest.as_str()).collect();
    digests.sort_unstable();
    digests.dedup();
    let variants = index.manifests.iter().all(|d| d.platform.is_some());
    if digests.len() > 1 && !variants {
        let listed: Vec<String> = index
            .manifests
            .iter()
            .map(|d| name(d).unwrap_or_else(|| format!("(untagged {})", d.digest)))
            .collect();
        return Err(ambiguous("the OCI layout", &listed));
    }
    pick(index)
}

impl Image {
    /// Opens the image at `path`: an OCI layout directory (with
    /// `index.json`) or a `docker save` tar (with `manifest.json`). A file
    /// holding several images is refused (see [`Image::open_tagged`]).
    pub fn open(path: &Path) -> Result<Image, ImageError> {
        Self::open_tagged(path, None)
    }

    /// Opens the image tagged `tag` in `path` (an OCI `ref.name`, a
    /// docker `RepoTags` entry); with no tag, the only image there.
    pub fn open_tagged(path: &Path, tag: Option<&str>) -> Result<Image, ImageError> {
        let l = Self::locate(path, tag)?;
        Self::assemble(l)
    }

    /// Which image `path` (and `tag`) names, without reading its layers.
    pub fn identify(path: &Path, tag: Option<&str>) -> Result<Identity, ImageError> {
        Ok(Self::locate(path, tag)?.identity)
    }

    fn locate(path: &Path, tag: Option<&str>) -> Result<Located, ImageError> {
        let meta = std::fs::metadata(path).map_err(io(path.display()))?;
        if meta.is_dir() {
            Self::locate_oci(path, tag)
        } else {
            Self::locate_archive(path, tag)
        }
    }

    fn locate_oci(dir: &Path, tag: Option<&str>) -> Result<Located, ImageError> {
        let blob = |digest: &str| -> Result<Blob, ImageError> {
            let hex = oci::sha256_hex(digest)
                .ok_or_else(|| ImageError::Format(format!("unsupported digest {digest:?}")))?;
            Ok(Blob {
                file: dir.join("blobs/sha256").join(hex),
                offset: 0,
                len: None,
            })
        };
        let index = Blob {
            file: dir.join("index.json"),
            offset: 0,
            len: None,
        }
        .read_small()?;
        let top = choose_oci(&oci::parse_index(&index).map_err(ImageError::Format)?, tag)?;
        let tags = top
            .annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
            .into_iter()
            .collect();
        let mut desc = top;
        // An index may point at another index (a multi-platform image).
        for _ in 0..4 {
            if desc.media_type != oci::MEDIA_INDEX && desc.media_type != oci::MEDIA_DOCKER_LIST {
                break;
            }
            let b = blob(&desc.digest)?.read_small()?;
            desc = pick(&oci::parse_index(&b).map_err(ImageError::Format)?)?;
        }
        let mb = blob(&desc.digest)?.read_small()?;
        check_sha256(&mb, &desc.digest, "manifest")?;
        let m = oci::parse_manifest(&mb).map_err(ImageError::Format)?;
        let config = blob(&m.config.digest)?.read_small()?;
        check_sha256(&config, &m.config.digest, "config")?;
        let mut layers = Vec::new();
        for l in &m.layers {
            layers.push((l.digest.clone(), blob(&l.digest)?));
        }
        Ok(Located {
            identity: Identity {
                format: "oci",
                id: m.config.digest.clone(),
                manifest_digest: Some(desc.digest.clone()),
                tags,
            },
            config,
            layers,
        })
    }

    fn locate_archive(file: &Path, tag: Option<&str>) -> Result<Located, ImageError> {
        // One pass over the outer tar: where each member's bytes are.
        let f = open_nofollow(file).map_err(io(file.display()))?;
        let mut ar = tar::Archive::new(f);
        let mut members: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for e in ar.entries().map_err(io(file.display()))? {
            let e = e.map_err(io(file.display()))?;
            if !e.header().entry_type().is_file() {
                continue;
            }
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_string();
            members.insert(name, (e.raw_file_position(), e.size()));
            if members.len() > 100_000 {
                return Err(ImageError::Format("archive with too many members".into()));
            }
        }
        let member = |name: &str| -> Result<Blob, ImageError> {
            let name = name.trim_start_matches("./");
            let (offset, len) = members
                .get(name)
                .ok_or_else(|| ImageError::Format(format!("archive has no {name}")))?;
            Ok(Blob {
                file: file.to_path_buf(),
                offset: *offset,
                len: Some(*len),
            })
        };
        let entries = oci::parse_docker(&member("manifest.json")?.read_small()?)
            .map_err(ImageError::Format)?;
        let all_tags: Vec<String> = entries
            .iter()
            .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
            .collect();
        let e = match tag {
            Some(t) => entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|r| repo_tag_matches(r, t)))
                .ok_or_else(|| no_tag("the docker archive", t, &all_tags))?,
            None => {
                let mut configs: Vec<&str> = entries.iter().map(|e| e.config.as_str()).collect();
                configs.sort_unstable();
                configs.dedup();
                if configs.len() > 1 {
                    let listed: Vec<String> = entries
                        .iter()
                        .map(|e| match e.repo_tags.as_deref() {
                            Some(t) if !t.is_empty() => t.join(" = "),
                            _ => format!("(untagged {})", e.config),
                        })
                        .collect();
                    return Err(ambiguous("the docker archive", &listed));
                }
                entries
                    .first()
                    .ok_or_else(|| ImageError::Format("manifest.json lists no image".into()))?
            }
        };
        let config = member(&e.config)?.read_small()?;
        let id = format!("sha256:{}", hex(&sha2::Sha256::digest(&config)));
        let mut layers = Vec::new();
        for l in &e.layers {
            // Names are `<sha256>.tar`, `<id>/layer.tar` or
            // `blobs/sha256/<sha256>`: the digest is checked when the name
            // holds one.
            let digest = l
                .trim_end_matches(".tar")
                .rsplit('/')
                .next()
                .filter(|h| oci::sha256_hex(&format!("sha256:{h}")).is_some())
                .map(|h| format!("sha256:{h}"))
                .unwrap_or_default();
            layers.push((digest, member(l)?));
        }
        Ok(Located {
            identity: Identity {
                format: "docker-archive",
                id,
                manifest_digest: None,
                tags: e.repo_tags.clone().unwrap_or_default(),
            },
            config,
            layers,
        })
    }

    fn assemble(l: Located) -> Result<Image, ImageError> {
        let Located {
            identity,
            config,
            layers,
        } = l;
        let env = oci::parse_config(&config)
            .config
            .and_then(|c| c.env)
            .unwrap_or_default();
        let mut img = Image {
            format: identity.format,
            id: identity.id,
            manifest_digest: identity.manifest_digest,
            tags: identity.tags,
            layers: Vec::new(),
            env,
            view: Arc::new(View::default()),
            warnings: Vec::new(),
            blobs: Vec::new(),
        };
        let mut view = View::default();
        for (i, (digest, blob)) in layers.into_iter().enumerate() {
            let layer = img.apply(i, &digest, &blob, &mut view)?;
            img.layers.push(layer);
            img.blobs.push((digest, blob));
        }
        img.view = Arc::new(view);
        Ok(img)
    }

    /// A root over the view, for the judges (`label` stands for its host
    /// directory: the image's name).
    pub fn root(&self, label: &str) -> rootfs::Root {
        rootfs::Root::of_tree(label, self.view.clone())
    }

    /// Computes, for each path of `wanted` that is a regular file in the
    /// view, its digests with the algorithms named (`md5`, `sha1`,
    /// `sha256`, `sha512`...), by reading again the layers that put those
    /// files there (only those). Recorded once in [`View::digests`]; a
    /// second call does nothing. Returns how many files were hashed.
    pub fn package_digests(
        &self,
        wanted: &[Vec<u8>],
        algos: &[&'static str],
    ) -> Result<usize, ImageError> {
        let mut by_layer: BTreeMap<usize, std::collections::HashSet<&[u8]>> = BTreeMap::new();
        if !algos.is_empty() {
            for p in wanted {
                if let Some(n) = self.view.nodes.get(p) {
                    if matches!(n.kind, Kind::File { .. }) {
                        by_layer.entry(n.layer).or_default().insert(p.as_slice());
                    }
                }
            }
        }
        let mut out = Digests::new();
        let mut hashed = 0usize;
        for (layer, paths) in &by_layer {
            let Some((_, blob)) = self.blobs.get(*layer) else {
                continue;
            };
            hashed += digest_layer(blob, *layer, &self.view, paths, algos, &mut out)
                .map_err(|e| ImageError::Format(format!("layer {}: {e}", layer + 1)))?;
        }
        let _ = self.view.digests.set(out);
        Ok(hashed)
    }

    /// Reads layer `i` and applies it to `view`.
    fn apply(
        &mut self,
        i: usize,
        digest: &str,
        blob: &Blob,
        view: &mut View,
    ) -> Result<Layer, ImageError> {
        let mut raw = Tee {
            inner: blob.open()?,
            sha: sha2::Sha256::new(),
            bytes: 0,
        };
        let mut head = [0u8; 4];
        let n = read_up_to(&mut raw, &mut head).map_err(io(format!("layer {}", i + 1)))?;
        let compression = Compression::sniff(&head[..n]);
        let chained = std::io::Cursor::new(head[..n].to_vec()).chain(&mut raw);
        let stream: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(chained),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
            Compression::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(chained)
                    .map_err(|e| ImageError::Format(format!("layer {}: zstd: {e}", i + 1)))?,
            ),
        };
        let mut counted = Counted {
            inner: stream,
            bytes: 0,
        };
        let entries = apply_tar(view, i, &mut counted, &mut self.warnings)
            .map_err(|e| ImageError::Format(format!("layer {} ({digest}): {e}", i + 1)))?;
        let tar_bytes = counted.bytes;
        drop(counted);
        // The rest of the blob counts for its digest (tar padding, gzip
        // trailer).
        std::io::copy(&mut raw, &mut std::io::sink()).map_err(io(format!("layer {}", i + 1)))?;
        let got = format!("sha256:{}", hex(&raw.sha.finalize_reset()));
        if !digest.is_empty() && got != digest {
            return Err(ImageError::Format(format!(
                "layer {} does not match its digest: manifest says {digest}, the blob is {got}",
                i + 1
            )));
        }
        Ok(Layer {
            digest: if digest.is_empty() {
                got
            } else {
                digest.to_string()
            },
            compression,
            blob_bytes: raw.bytes,
            tar_bytes,
            entries,
        })
    }
}

/// The tar stream of a blob, decompressed as its first bytes say.
fn tar_stream<'r>(raw: &'r mut dyn Read) -> Result<Box<dyn Read + 'r>, ImageError> {
    let mut head = [0u8; 4];
    let n = read_up_to(raw, &mut head).map_err(io("layer"))?;
    let chained = std::io::Cursor::new(head[..n].to_vec()).chain(raw);
    Ok(match Compression::sniff(&head[..n]) {
        Compression::None => Box::new(chained),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(chained)
                .map_err(|e| ImageError::Format(format!("zstd: {e}")))?,
        ),
    })
}

/// One hasher of [`Image::package_digests`].
enum PkgHasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl PkgHasher {
    fn new(algo: &str) -> Option<PkgHasher> {
        Some(match algo {
            "md5" => PkgHasher::Md5(md5::Md5::new()),
            "sha1" => PkgHasher::Sha1(sha1::Sha1::new()),
            "sha256" => PkgHasher::Sha256(sha2::Sha256::new()),
            "sha512" => PkgHasher::Sha512(sha2::Sha512::new()),
            _ => return None,
        })
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            PkgHasher::Md5(h) => h.update(b),
            PkgHasher::Sha1(h) => h.update(b),
            PkgHasher::Sha256(h) => h.update(b),
            PkgHasher::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            PkgHasher::Md5(h) => h.finalize().to_vec(),
            PkgHasher::Sha1(h) => h.finalize().to_vec(),
            PkgHasher::Sha256(h) => h.finalize().to_vec(),
            PkgHasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// The second pass over one layer: the members at `paths` that are still
/// what the view shows (put there by this layer) are hashed with BLAKE3
/// and `algos`; the digests go into `out` under the BLAKE3 just computed.
fn digest_layer(
    blob: &Blob,
    layer: usize,
    view: &View,
    paths: &std::collections::HashSet<&[u8]>,
    algos: &[&'static str],
    out: &mut Digests,
) -> Result<usize, ImageError> {
    let mut raw = blob.open()?;
    let stream = tar_stream(&mut raw)?;
    let mut ar = tar::Archive::new(stream);
    let mut buf = vec![0u8; 1 << 16];
    let mut found: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let err = |e: std::io::Error| ImageError::Format(e.to_string());
    for e in ar.entries().map_err(err)? {
        let mut e = e.map_err(err)?;
        let ty = e.header().entry_type();
        if !(ty.is_file() || ty == tar::EntryType::Continuous) {
            continue;
        }
        let Some(path) = normalize(&e.path_bytes()) else {
            continue;
        };
        if !paths.contains(path.as_slice()) || view.nodes.get(&path).map(|n| n.layer) != Some(layer)
        {
            continue;
        }
        let mut b3 = blake3::Hasher::new();
        let mut hs: Vec<(&'static str, PkgHasher)> = algos
            .iter()
            .filter_map(|a| PkgHasher::new(a).map(|h| (*a, h)))
            .collect();
        loop {
            let n = e.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            b3.update(&buf[..n]);
            for (_, h) in &mut hs {
                h.update(&buf[..n]);
            }
        }
        let digests = hs.into_iter().map(|(a, h)| (a, h.finish())).collect();
        out.insert(*b3.finalize().as_bytes(), digests);
        found.insert(path);
        // The rest of the layer is not decompressed once every file asked
        // for is hashed. (A name repeated later in the layer replaced
        // this member in the view: its BLAKE3 then differs and the file
        // gets no digest, never a wrong one.)
        if found.len() >= paths.len() {
            break;
        }
    }
    Ok(found.len())
}

/// How much of a file at `path` the view keeps in memory: the small files
/// under `/etc` (the loader's configuration, environment files, sudoers)
/// and the package databases the judges read.
fn keep_cap(path: &[u8]) -> Option<u64> {
    if path.starts_with(b"/etc/") {
        return Some(KEEP_CAP);
    }
    for dir in [
        &b"/var/lib/dpkg/"[..],
        b"/usr/lib/sysimage/rpm/",
        b"/var/lib/rpm/",
    ] {
        if let Some(rest) = path.strip_prefix(dir) {
            if let Some(name) = rest.strip_prefix(b"info/") {
                let listed = name.ends_with(b".md5sums")
                    || name.ends_with(b".list")
                    || name.ends_with(b".conffiles");
                return (listed && !name.contains(&b'/')).then_some(INFO_KEEP_CAP);
            }
            let db = matches!(
                rest,
                b"status" | b"diversions" | b"rpmdb.sqlite" | b"rpmdb.sqlite-wal"
            );
            return db.then_some(DB_KEEP_CAP);
        }
    }
    // `/lib` is often `usr/lib` (merged `/usr`): the member is then there.
    matches!(
        path,
        b"/lib/apk/db/installed" | b"/usr/lib/apk/db/installed"
    )
    .then_some(INFO_KEEP_CAP)
}

/// The manifest to read from an index: linux/amd64 if the index says
/// platforms, else the first.
fn pick(index: &oci::Index) -> Result<oci::Descriptor, ImageError> {
    let m = &index.manifests;
    m.iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or_else(|| m.first())
        .cloned()
        .ok_or_else(|| ImageError::Format("index lists no manifest".into()))
}

fn check_sha256(bytes: &[u8], digest: &str, what: &str) -> Result<(), ImageError> {
    let got = format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)));
    if got != digest {
        return Err(ImageError::Format(format!(
            "{what} does not match its digest {digest}"
        )));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes (SHA-256) and counts what passes through.
struct Tee<R> {
    inner: R,
    sha: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// `/a/b` from a tar member name (`./a/b/`, `a//b`); `None` for names
/// that climb (`..`) or are too long.
fn normalize(name: &[u8]) -> Option<Vec<u8>> {
    if name.len() > MAX_PATH {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 1);
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => {
                out.push(b'/');
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"/", path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Paths strictly below `dir`.
fn below<'a>(
    nodes: &'a BTreeMap<Vec<u8>, Node>,
    dir: &[u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Node)> + 'a {
    let mut prefix = dir.to_vec();
    if prefix != b"/" {
        prefix.push(b'/');
    }
    let start = prefix.clone();
    nodes
        .range(start..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
}

impl View {
    /// Removes `path` and everything below it that a layer before `layer`
    /// put there, remembering what went.
    fn whiteout(&mut self, path: &[u8], layer: usize) {
        let mut gone: Vec<Vec<u8>> = below(&self.nodes, path)
            .filter(|(_, n)| n.layer < layer)
            .map(|(k, _)| k.clone())
            .collect();
        if self.nodes.get(path).is_some_and(|n| n.layer < layer) {
            gone.push(path.to_vec());
        }
        for k in gone {
            if let Some(node) = self.nodes.remove(&k) {
                self.removed.push(Removed {
                    path: k,
                    node,
                    by_layer: layer,
                });
            }
        }
    }

    /// Turns every ancestor of `path` that is not a directory into one
    /// (put there by `layer`), dropping what was below it.
    fn make_parents_dirs(&mut self, path: &[u8], layer: usize) {
        let mut at = 1;
        while let Some(i) = path[at..].iter().position(|&b| b == b'/') {
            let anc = &path[..at + i];
            at += i + 1;
            match self.nodes.get(anc) {
                Some(n) if n.kind != Kind::Dir => {
                    let stale: Vec<Vec<u8>> =
                        below(&self.nodes, anc).map(|(k, _)| k.clone()).collect();
                    for k in stale {
                        self.nodes.remove(&k);
                    }
                    self.nodes.insert(
                        anc.to_vec(),
                        Node {
                            kind: Kind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime: 0,
                            layer,
                        },
                    );
                }
                _ => {}
            }
        }
    }

    /// Resolves symlinks in `path` inside the view (absolute targets are
    /// relative to the image's root). `None` past [`MAX_LINKS`].
    pub fn resolve(&self, path: &[u8]) -> Option<Vec<u8>> {
        let mut todo: Vec<Vec<u8>> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(|c| c.to_vec())
            .collect();
        let mut cur: Vec<u8> = b"/".to_vec();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"." => continue,
                b".." => {
                    cur = split(&cur).0.to_vec();
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, &c);
            match self.nodes.get(&next).map(|n| &n.kind) {
                Some(Kind::Symlink(t)) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if t.starts_with(b"/") {
                        cur = b"/".to_vec();
                    }
                    todo.extend(
                        t.split(|&b| b == b'/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(|c| c.to_vec()),
                    );
                }
                _ => cur = next,
            }
        }
        Some(cur)
    }

    /// The node at `path`, symlinks followed.
    pub fn get(&self, path: &[u8]) -> Option<&Node> {
        self.nodes.get(&self.resolve(path)?)
    }
}

/// Applies one layer's tar stream; returns how many entries it held.
fn apply_tar(
    view: &mut View,
    layer: usize,
    stream: &mut dyn Read,
    warnings: &mut Vec<String>,
) -> std::io::Result<usize> {
    let mut ar = tar::Archive::new(stream);
    let mut count = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    // Reused for every member: one allocation per layer, not per file.
    let mut held: Vec<u8> = Vec::new();
    for e in ar.entries()? {
        let mut e = e?;
        count += 1;
        if view.nodes.len() > MAX_ENTRIES {
            warnings.push(format!(
                "layer {}: more than {MAX_ENTRIES} entries; the rest is not read",
                layer + 1
            ));
            break;
        }
        let raw = e.path_bytes().into_owned();
        let Some(path) = normalize(&raw) else {
            warnings.push(format!(
                "layer {}: entry {} skipped (climbs out of the image or too long)",
                layer + 1,
                crate::escape::for_terminal(&raw)
            ));
            continue;
        };
        let (dir, name) = split(&path);
        if name == b".wh..wh..opq" {
            // Opaque: the layers below contribute nothing to this dir.
            let dir = dir.to_vec();
            let gone: Vec<Vec<u8>> = below(&view.nodes, &dir)
                .filter(|(_, n)| n.layer < layer)
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                view.whiteout(&k, layer);
            }
            continue;
        }
        if let Some(target) = name.strip_prefix(b".wh.") {
            view.whiteout(&join(dir, target), layer);
            continue;
        }
        let h = e.header();
        let mode = h.mode().unwrap_or(0);
        let uid = h
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0);
        let gid = h
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0);
        let mtime = h
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(0);
        let ty = h.entry_type();
        let kind = if ty.is_dir() {
            Kind::Dir
        } else if ty.is_symlink() {
            Kind::Symlink(
                e.link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            )
        } else if ty.is_hard_link() {
            // The content of the member it links to (in this layer or one
            // below), as it is at this point.
            let target = e
                .link_name_bytes()
                .and_then(|l| normalize(&l))
                .and_then(|t| view.nodes.get(&t).map(|n| n.kind.clone()));
            match target {
                Some(k) => k,
                None => {
                    warnings.push(format!(
                        "layer {}: hard link {} to a missing file",
                        layer + 1,
                        crate::escape::for_terminal(&path)
                    ));
                    continue;
                }
            }
        } else if ty.is_file() || ty == tar::EntryType::Continuous {
            let size = e.size();
            let keep = match keep_cap(&path) {
                Some(cap) if size <= cap && !path.starts_with(b"/etc/") => {
                    // A package database: bounded in total, too.
                    let room = view.kept_db + size <= DB_KEEP_TOTAL;
                    if room {
                        view.kept_db += size;
                    } else {
                        warnings.push(format!(
                            "layer {}: {} not kept (package databases over {} in all)",
                            layer + 1,
                            crate::escape::for_terminal(&path),
                            DB_KEEP_TOTAL
                        ));
                    }
                    room
                }
                Some(cap) => size <= cap,
                None => false,
            };
            // As little as the facts need, decided from the first bytes
            // (`hold`): everything, the first bytes, or the ranges the ELF
            // parser reads; what is kept (small `/etc` files, the package
            // databases, bounded above) is held whole.
            held.clear();
            let mut hold = hold::Holding::new(&path, size, keep);
            let mut hasher = blake3::Hasher::new();
            loop {
                let n = e.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                hold.feed(&buf[..n], &mut held);
            }
            let (class, facts, warning) = hold.finish(&held);
            if let Some(w) = warning {
                warnings.push(format!("layer {}: {w}", layer + 1));
            }
            let facts = facts.map(Arc::new);
            let data = keep.then(|| held.clone());
            // One member's bytes are not kept for the next: a large one
            // held whole gives its memory back.
            if held.capacity() > hold::SPARSE_HEAD {
                held = Vec::new();
            }
            Kind::File {
                size,
                blake3: *hasher.finalize().as_bytes(),
                class,
                facts,
                data,
            }
        } else if matches!(
            ty,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        } else {
            Kind::Other
        };
        // A member under a name a lower layer made a symlink (or a file):
        // extracted into its own layer, that name is a directory there,
        // and the merged filesystem shows the directory. Left a symlink
        // here, the member would sit at a key nothing resolves to, hidden
        // from the records and the audits.
        view.make_parents_dirs(&path, layer);
        // A directory over a directory keeps what is below it; anything
        // else replaces the path (and, replacing a directory, its tree).
        let was_dir = view.nodes.get(&path).is_some_and(|n| n.kind == Kind::Dir);
        if !(was_dir && kind == Kind::Dir) {
            let stale: Vec<Vec<u8>> = below(&view.nodes, &path).map(|(k, _)| k.clone()).collect();
            for k in stale {
                view.nodes.remove(&k);
            }
        }
        view.nodes.insert(
            path,
            Node {
                kind,
                mode,
                uid,
                gid,
                mtime,
                layer,
            },
        );
    }
    Ok(count)
}

/// A stable stand-in for an inode number: the path's hash (a tar stream
/// has no inodes; two paths must not look like one file to the audits
/// that compare identities).
fn pseudo_ino(path: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() | 1
}

fn not_found() -> std::io::Error {
    std::io::ErrorKind::NotFound.into()
}

/// The view as a root's tree ([`rootfs::Tree`]): the judges read the
/// image through [`rootfs::Root`] as they read a host directory.
impl rootfs::Tree for View {
    fn lstat(&self, logical: &std::ffi::OsStr) -> std::io::Result<Meta> {
        let p = logical.as_bytes();
        let node = match self.nodes.get(p) {
            Some(n) => n,
            // The image's root directory, when no layer names `./`, or
            // a directory a layer names only through its members (an
            // extraction creates it).
            None if p == b"/" || below(&self.nodes, p).next().is_some() => {
                return Ok(Meta {
                    mode: crate::sys::S_IFDIR | 0o755,
                    dev: 1,
                    ino: pseudo_ino(p),
                    nlink: 1,
                    ..Meta::default()
                })
            }
            None => return Err(not_found()),
        };
        let (ty, size) = match &node.kind {
            Kind::Dir => (crate::sys::S_IFDIR, 0),
            Kind::File { size, .. } => (crate::sys::S_IFREG, *size),
            Kind::Symlink(t) => (crate::sys::S_IFLNK, t.len() as u64),
            // A device or FIFO: never opened; its type is not kept, and
            // a FIFO is what the audits treat as "not a file" alike.
            Kind::Other => (crate::sys::S_IFIFO, 0),
        };
        Ok(Meta {
            mode: ty | (node.mode & 0o7777),
            uid: node.uid,
            gid: node.gid,
            size,
            dev: 1,
            ino: pseudo_ino(p),
            nlink: 1,
            mtime: node.mtime,
            ..Meta::default()
        })
    }

    fn read_link(&self, logical: &std::ffi::OsStr) -> std::io::Result<PathBuf> {
        match self.nodes.get(logical.as_bytes()).map(|n| &n.kind) {
            Some(Kind::Symlink(t)) => Ok(PathBuf::from(std::ffi::OsStr::from_bytes(t))),
            Some(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a symlink",
            )),
            None => Err(not_found()),
        }
    }

    fn list(&self, logical: &std::ffi::OsStr) -> std::io::Result<Vec<std::ffi::OsString>> {
        let p = logical.as_bytes();
        match self.nodes.get(p).map(|n| &n.kind) {
            Some(Kind::Dir) => {}
            None if p == b"/" || below(&self.nodes, p).next().is_some() => {}
            Some(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a directory",
                ))
            }
            None => return Err(not_found()),
        }
        // The children, and the first component of deeper paths whose
        // directories no member names.
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        let skip = if p == b"/" { 1 } else { p.len() + 1 };
        for (k, _) in below(&self.nodes, p) {
            let rest = &k[skip.min(k.len())..];
            let name = rest.split(|&b| b == b'/').next().unwrap_or_default();
            if names.last().map(|n| n.as_bytes()) != Some(name) {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
        }
        // `a`, `a-b`, `a/x`: byte order puts a sibling between a name
        // and its subtree.
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn read(&self, logical: &std::ffi::OsStr, cap: u64) -> std::io::Result<Vec<u8>> {
        match self.nodes.get(logical.as_bytes()).map(|n| &n.kind) {
            Some(Kind::File { data: Some(d), .. }) => {
                Ok(d[..d.len().min(usize::try_from(cap).unwrap_or(usize::MAX))].to_vec())
            }
            Some(Kind::File { .. }) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "content not kept in memory from the image's layers",
            )),
            Some(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )),
            None => Err(not_found()),
        }
    }

    fn facts(&self, logical: &std::ffi::OsStr) -> Option<Arc<Facts>> {
        match &self.nodes.get(logical.as_bytes())?.kind {
            Kind::File { facts, .. } => facts.clone(),
            _ => None,
        }
    }

    fn digest(&self, logical: &std::ffi::OsStr, algo: &str) -> Option<Vec<u8>> {
        let Kind::File { blake3, .. } = &self.nodes.get(logical.as_bytes())?.kind else {
            return None;
        };
        self.digests
            .get()?
            .get(blake3)?
            .iter()
            .find(|(a, _)| *a == algo)
            .map(|(_, d)| d.clone())
    }
}

impl ldconf::ConfSource for View {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let p = crate::rootfs::normalize(path);
        let key = self.resolve(p.as_os_str().as_encoded_bytes());
        match key
            .as_ref()
            .and_then(|k| self.nodes.get(k))
            .map(|n| &n.kind)
        {
            Some(Kind::File { data: Some(d), .. }) => Ok(d.clone()),
            Some(Kind::File { .. }) => Err(std::io::Error::other(
                "not kept in memory (over 1 MiB or outside /etc)",
            )),
            Some(_) => Err(std::io::Error::other("not a regular file")),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        let pat = pattern.as_os_str().as_encoded_bytes();
        let (dir, name) = split(pat);
        let Ok(g) = globset::GlobBuilder::new(&String::from_utf8_lossy(name))
            .literal_separator(true)
            .build()
        else {
            return Vec::new();
        };
        let m = g.compile_matcher();
        let Some(real) = self.resolve(dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = below(&self.nodes, &real)
            .filter(|(k, _)| split(k).0 == real.as_slice())
            .filter(|(k, _)| {
                let n = split(k).1;
                !n.starts_with(b".") && m.is_match(String::from_utf8_lossy(n).as_ref())
            })
            .map(|(k, _)| {
                let n = split(k).1;
                PathBuf::from(String::from_utf8_lossy(&join(dir, n)).into_owned())
            })
            .collect();
        out.sort();
        out
    }

    fn identity(&self, path: &Path) -> PathBuf {
        let b = path.as_os_str().as_encoded_bytes();
        self.resolve(b)
            .map(|r| PathBuf::from(String::from_utf8_lossy(&r).into_owned()))
            .unwrap_or_else(|| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, file content, symlink target); neither: a directory.
    type Member<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

    fn tar_of(entries: &[Member]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            match (data, link) {
                (Some(d), _) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    // Raw name bytes: the builder refuses `..`, a hostile
                    // layer does not.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, *d).unwrap();
                }
                (None, Some(l)) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, l).unwrap();
                }
                (None, None) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, name, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_replacements() {
        let mut v = View::default();
        let mut w = Vec::new();
        let l1 = tar_of(&[
            ("usr/", None, None),
            ("usr/lib/", None, None),
            ("usr/lib/liba.so", Some(b"a"), None),
            ("usr/lib/libb.so", Some(b"b"), None),
            ("opt/x/", None, None),
            ("opt/x/old", Some(b"o"), None),
            ("lib", None, Some("usr/lib")),
            ("../evil", Some(b"e"), None),
        ]);
        apply_tar(&mut v, 0, &mut l1.as_slice(), &mut w).unwrap();
        assert!(!v.nodes.contains_key(b"/evil".as_slice()));
        assert_eq!(w.len(), 1, "{w:?}");
        let l2 = tar_of(&[
            ("usr/lib/.wh.libb.so", Some(b""), None),
            ("opt/x/.wh..wh..opq", Some(b""), None),
            ("opt/x/new", Some(b"n"), None),
            ("etc/ld.so.preload", Some(b"/lib/liba.so\n"), None),
        ]);
        apply_tar(&mut v, 1, &mut l2.as_slice(), &mut w).unwrap();
        assert!(v.nodes.contains_key(b"/usr/lib/liba.so".as_slice()));
        assert!(!v.nodes.contains_key(b"/usr/lib/libb.so".as_slice()));
        assert!(!v.nodes.contains_key(b"/opt/x/old".as_slice()));
        assert!(v.nodes.contains_key(b"/opt/x/new".as_slice()));
        let removed: Vec<&[u8]> = v.removed.iter().map(|r| r.path.as_slice()).collect();
        assert_eq!(removed, vec![b"/usr/lib/libb.so".as_slice(), b"/opt/x/old"]);
        assert_eq!(v.removed[0].by_layer, 1);
        // Symlinks resolve inside the view; /etc content is kept.
        assert_eq!(v.resolve(b"/lib/liba.so").unwrap(), b"/usr/lib/liba.so");
        assert!(matches!(
            v.get(b"/lib/liba.so").map(|n| &n.kind),
            Some(Kind::File { size: 1, .. })
        ));
        use crate::formats::ldconf::ConfSource;
        assert_eq!(
            v.read(Path::new("/etc/ld.so.preload")).unwrap(),
            b"/lib/liba.so\n"
        );
    }

    #[test]
    fn a_member_under_a_lower_layers_symlink_is_seen_at_its_own_path() {
        let mut v = View::default();
        let mut w = Vec::new();
        let l1 = tar_of(&[
            ("usr/", None, None),
            ("usr/lib/", None, None),
            ("usr/lib/libc.so.6", Some(b"c"), None),
            ("lib", None, Some("usr/lib")),
        ]);
        apply_tar(&mut v, 0, &mut l1.as_slice(), &mut w).unwrap();
        // Layer 2 names lib/ only through its member, no directory entry.
        let l2 = tar_of(&[("lib/libhide.so", Some(b"h"), None)]);
        apply_tar(&mut v, 1, &mut l2.as_slice(), &mut w).unwrap();
        assert_eq!(
            v.nodes.get(b"/lib".as_slice()).map(|n| &n.kind),
            Some(&Kind::Dir)
        );
        assert!(v.get(b"/lib/libhide.so").is_some());
        assert!(v.get(b"/usr/lib/libc.so.6").is_some());
    }

    #[test]
    fn a_root_over_the_view_answers_as_a_host_root_does() {
        let mut v = View::default();
        let mut w = Vec::new();
        let l1 = tar_of(&[
            ("usr/", None, None),
            ("usr/lib/", None, None),
            ("usr/lib/libz.so.1", Some(b"\x7fELF not really"), None),
            ("lib", None, Some("usr/lib")),
            ("etc/", None, None),
            ("etc/ld.so.conf", Some(b"/opt\n"), None),
            ("var/lib/dpkg/status", Some(b"Package: z\n"), None),
            (
                "var/lib/dpkg/info/z.md5sums",
                Some(b"0  usr/lib/libz.so.1\n"),
                None,
            ),
            ("var/lib/dpkg/info/z.postinst", Some(b"#!/bin/sh\n"), None),
            ("srv/big", Some(b"not kept"), None),
        ]);
        apply_tar(&mut v, 0, &mut l1.as_slice(), &mut w).unwrap();
        let root = rootfs::Root::of_tree("image:x", Arc::new(v));
        assert!(!root.is_slash());
        assert_eq!(
            root.resolve(Path::new("/lib/libz.so.1")).unwrap(),
            Path::new("/usr/lib/libz.so.1")
        );
        assert!(root.lstat(Path::new("/lib")).unwrap().is_symlink());
        let m = root.stat(Path::new("/lib/libz.so.1")).unwrap();
        assert!(m.is_file() && m.len() == 15 && m.mode & 0o777 == 0o644);
        assert!(root.is_dir(Path::new("/")));
        let mut names = root.list(Path::new("/usr/lib")).unwrap();
        names.sort();
        assert_eq!(names, vec!["libz.so.1"]);
        // /var is named only through its members: a directory all the same.
        assert!(root.is_dir(Path::new("/var/lib")));
        assert_eq!(root.list(Path::new("/var")).unwrap(), vec!["lib"]);
        let mut top = root.list(Path::new("/")).unwrap();
        top.sort();
        assert_eq!(top, vec!["etc", "lib", "srv", "usr", "var"]);
        // Kept: /etc and the package databases (capped reads); not kept:
        // anything else, and package scripts.
        assert_eq!(
            root.read_file(Path::new("/etc/ld.so.conf"), 3).unwrap(),
            b"/op"
        );
        assert!(root
            .read_file(Path::new("/var/lib/dpkg/status"), 1 << 20)
            .is_ok());
        assert!(root
            .read_file(Path::new("/var/lib/dpkg/info/z.md5sums"), 1 << 20)
            .is_ok());
        assert!(root
            .read_file(Path::new("/var/lib/dpkg/info/z.postinst"), 1 << 20)
            .is_err());
        assert!(root.read_file(Path::new("/srv/big"), 1 << 20).is_err());
        assert!(root.read_file(Path::new("/usr/lib"), 1 << 20).is_err());
        // No descriptors on a tree: whatever needs one fails.
        assert!(root.open_file(Path::new("/etc/ld.so.conf")).is_err());
        assert!(root.lstat(Path::new("/nope")).is_err());
        // Package digests are only what the second pass computed.
        let t = root.tree().unwrap();
        assert_eq!(
            t.digest(std::ffi::OsStr::new("/usr/lib/libz.so.1"), "md5"),
            None
        );
    }

    #[test]
    fn symlink_loops_end() {
        let mut v = View::default();
        let l = tar_of(&[("a", None, Some("b")), ("b", None, Some("a"))]);
        apply_tar(&mut v, 0, &mut l.as_slice(), &mut Vec::new()).unwrap();
        assert_eq!(v.resolve(b"/a/x"), None);
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize(b"./usr//lib/"), Some(b"/usr/lib".to_vec()));
        assert_eq!(normalize(b"a/../../b"), None);
        assert_eq!(normalize(b"."), Some(b"/".to_vec()));
    }
}

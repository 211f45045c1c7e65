//! The host's judges on a container image: provenance (the image's own
//! dpkg, rpm or apk database) and the loader audit, run by the same
//! [`Judge`] as a host's `audit` and `check`, reading the image through a
//! [`crate::rootfs::Root`] over its in-memory view. Only what makes no
//! sense for an image is left out: the process and kernel audits (nothing
//! runs in an image) and the self-check (of libwarden's own process, not
//! of the image).

use crate::image::{records, Image};
use crate::pipeline::{Judge, Judges, Plan, Reference, Verdict};
use crate::provenance;
use crate::record::FileType;

/// `judges` as an image takes them: no processes, no kernel, no self-check.
pub fn for_image(judges: Judges) -> Judges {
    Judges {
        processes: false,
        selfcheck: false,
        ..judges
    }
}

/// The plan of `plan` with the image's view as its root (`label` stands
/// for the root's host directory); no extra paths (they name the host's
/// directories, not the image's).
pub fn plan_of(plan: &Plan, img: &Image, label: &str) -> Plan {
    Plan {
        root: img.root(label),
        extra_paths: Vec::new(),
        scan: plan.scan.clone(),
        provenance: plan.provenance.clone(),
        policy: plan.policy.clone(),
        trusted_uids: plan.trusted_uids.clone(),
        exec_dirs: plan.exec_dirs.clone(),
    }
}

/// What judging an image gave.
pub struct Judged {
    pub monitored: records::Monitored,
    pub verdict: Verdict,
}

/// Judges `img` (records from its view) against `reference` with
/// `judges` (cut by [`for_image`]). The package digests provenance needs
/// are computed first, in a second pass over the layers holding the files
/// the image's package database knows.
pub fn judge(
    iplan: &Plan,
    img: &Image,
    reference: Reference,
    judges: Judges,
) -> Result<Judged, crate::image::ImageError> {
    let judges = for_image(judges);
    let monitored = records::monitored(&img.view);
    let mut j = Judge::new(iplan, &monitored.records, judges, false);
    let algos = j.package_algos();
    let mut pre = Vec::new();
    if judges.provenance && !algos.is_empty() {
        let wanted: Vec<Vec<u8>> = monitored
            .records
            .iter()
            .filter(|r| r.ftype == FileType::File && provenance::is_candidate(r))
            .map(|r| r.path.clone())
            .collect();
        let t = std::time::Instant::now();
        let n = img.package_digests(&wanted, &algos)?;
        pre.push(crate::finding::Note::Status(format!(
            "image: package digests ({}) of {n} files, from a second read of their layers, in {:.3} s",
            algos.join(", "),
            t.elapsed().as_secs_f64()
        )));
    }
    let mut verdict = j.run(
        reference,
        (&monitored.sp, None, &monitored.records),
        judges,
        None,
    );
    pre.append(&mut verdict.notes);
    verdict.notes = pre;
    Ok(Judged { monitored, verdict })
}

//! Authenticode chains checked the way Windows checks a code-signing chain:
//! certificates made here with `openssl` (a root, intermediates, leaves with
//! chosen extensions), DLLs built with mingw and signed with `osslsigncode`,
//! judged by `check` under a config trusting the root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::provenance::{compile_dll, issue_cert, make_ca, roots_config, sh};
use crate::util::{json_lines, TestRoot};

const SYS: &str = "Windows/System32";

/// A key and certificate.
type Pair = (PathBuf, PathBuf);

/// Issues `cn` under `issuer` with the extension lines `ext` (openssl
/// `x509v3_config` syntax), a serial of its own.
fn issue(dir: &Path, issuer: &Pair, cn: &str, serial: u32, ext: &str) -> Pair {
    issue_cert(dir, issuer, cn, &["-newkey", "rsa:2048"], serial, ext)
}

/// Signs `dll` with `signer`, embedding `chain` (signer first).
fn sign(dll: &Path, signer: &Pair, chain: &[&Path]) {
    let certs = dll.with_extension("chain.pem");
    let mut b = Vec::new();
    for c in chain {
        b.extend(std::fs::read(c).unwrap());
    }
    std::fs::write(&certs, b).unwrap();
    let tmp = dll.with_extension("signed");
    sh(Command::new("osslsigncode")
        .args(["sign", "-h", "sha256", "-certs"])
        .arg(&certs)
        .arg("-key")
        .arg(&signer.0)
        .arg("-in")
        .arg(dll)
        .arg("-out")
        .arg(&tmp));
    std::fs::rename(tmp, dll).unwrap();
}

const CA: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
const CODE_LEAF: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n";

/// `check` under a config trusting `root`: the findings by path (inside the
/// root) and the stderr.
fn judge(t: &TestRoot, root: &Pair) -> Vec<serde_json::Value> {
    let cfg = roots_config(t, &root.1);
    t.run_ok(&["--config", &cfg, "init"]);
    let o = t.run(&["--config", &cfg, "--format", "json", "check"]);
    json_lines(&o.stdout)
}

/// The findings about `/Windows/System32/<name>`.
fn about<'a>(f: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    let p = format!("/{SYS}/{name}");
    f.iter().filter(|x| x["path"] == p.as_str()).collect()
}

/// Exactly one `untrusted_signer` finding for `name`; its detail.
fn untrusted(f: &[serde_json::Value], name: &str) -> String {
    let a = about(f, name);
    assert_eq!(a.len(), 1, "{name}: {a:#?}");
    assert_eq!(a[0]["kind"], "untrusted_signer", "{name}: {:#?}", a[0]);
    a[0]["detail"].as_str().unwrap().to_string()
}

#[test]
fn a_proper_code_signing_chain_with_an_intermediate_is_accepted() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "Chain Root");
    let int = issue(
        d,
        &root,
        "Chain Intermediate",
        10,
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         extendedKeyUsage=codeSigning\n",
    );
    let leaf = issue(d, &int, "Chain Publisher", 11, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/good.dll"), 40);
    sign(&dll, &leaf, &[&leaf.1, &int.1, &root.1]);
    let f = judge(&t, &root);
    assert_eq!(about(&f, "good.dll"), Vec::<&serde_json::Value>::new());
}

#[test]
fn a_tls_leaf_cannot_sign_a_dll() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "TLS Root");
    let leaf = issue(
        d,
        &root,
        "www.example.com",
        20,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    );
    let dll = compile_dll(&t, &format!("{SYS}/tls.dll"), 41);
    sign(&dll, &leaf, &[&leaf.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "tls.dll");
    assert!(
        why.contains("CN=www.example.com")
            && why.contains("extendedKeyUsage (1.3.6.1.5.5.7.3.1)")
            && why.contains("does not allow code signing"),
        "{why}"
    );
}

#[test]
fn a_certificate_without_the_ca_flag_cannot_issue() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "Flag Root");
    // A code-signing leaf (cA FALSE) that issued another leaf...
    let fake_ca = issue(d, &root, "Leaf As CA", 30, CODE_LEAF);
    let below = issue(d, &fake_ca, "Issued By A Leaf", 31, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/leaf-ca.dll"), 42);
    sign(&dll, &below, &[&below.1, &fake_ca.1, &root.1]);
    // ...and a certificate with no basicConstraints at all.
    let bare = issue(
        d,
        &root,
        "No Constraints",
        32,
        "extendedKeyUsage=codeSigning\n",
    );
    let below_bare = issue(d, &bare, "Issued By Bare", 33, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/bare-ca.dll"), 43);
    sign(&dll, &below_bare, &[&below_bare.1, &bare.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "leaf-ca.dll");
    assert!(
        why.contains("CN=Leaf As CA issued CN=Issued By A Leaf but is not a CA")
            && why.contains("cA is FALSE"),
        "{why}"
    );
    let why = untrusted(&f, "bare-ca.dll");
    assert!(
        why.contains("CN=No Constraints issued CN=Issued By Bare but is not a CA")
            && why.contains("no basicConstraints"),
        "{why}"
    );
}

#[test]
fn a_chain_longer_than_a_path_length_constraint_is_refused() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "PathLen Root");
    let top = issue(
        d,
        &root,
        "PathLen Zero",
        40,
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n",
    );
    let under = issue(d, &top, "PathLen Under", 41, CA);
    let leaf = issue(d, &under, "PathLen Publisher", 42, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/pathlen.dll"), 44);
    sign(&dll, &leaf, &[&leaf.1, &under.1, &top.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "pathlen.dll");
    assert!(
        why.contains("CN=PathLen Zero allows 0 intermediate CA(s) below it")
            && why.contains("the chain has 1"),
        "{why}"
    );
}

#[test]
fn a_signer_whose_key_usage_lacks_digital_signature_is_refused() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "KU Root");
    let leaf = issue(
        d,
        &root,
        "Encipher Only",
        50,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,keyEncipherment\nextendedKeyUsage=codeSigning\n",
    );
    let dll = compile_dll(&t, &format!("{SYS}/ku.dll"), 45);
    sign(&dll, &leaf, &[&leaf.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "ku.dll");
    assert!(
        why.contains("CN=Encipher Only's keyUsage does not allow digitalSignature"),
        "{why}"
    );
}

#[test]
fn an_intermediate_restricted_to_tls_cannot_issue_a_code_signing_leaf() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "EKU Root");
    let int = issue(
        d,
        &root,
        "TLS Only CA",
        60,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    );
    let leaf = issue(d, &int, "Under TLS CA", 61, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/eku-int.dll"), 46);
    sign(&dll, &leaf, &[&leaf.1, &int.1, &root.1]);
    // An issuer whose keyUsage lacks keyCertSign.
    let no_sign = issue(
        d,
        &root,
        "CRL Only CA",
        62,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,cRLSign\n",
    );
    let leaf2 = issue(d, &no_sign, "Under CRL CA", 63, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/ku-int.dll"), 47);
    sign(&dll, &leaf2, &[&leaf2.1, &no_sign.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "eku-int.dll");
    assert!(
        why.contains("CN=TLS Only CA's extendedKeyUsage") && why.contains("constrains"),
        "{why}"
    );
    let why = untrusted(&f, "ku-int.dll");
    assert!(
        why.contains(
            "CN=CRL Only CA issued CN=Under CRL CA but its keyUsage does not allow keyCertSign"
        ),
        "{why}"
    );
}

#[test]
fn an_unknown_critical_extension_rejects_the_chain() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "Critical Root");
    let leaf = issue(
        d,
        &root,
        "Critical Publisher",
        70,
        &format!("{CODE_LEAF}1.3.6.1.4.1.99999.1=critical,ASN1:NULL\n"),
    );
    let dll = compile_dll(&t, &format!("{SYS}/critical.dll"), 48);
    sign(&dll, &leaf, &[&leaf.1, &root.1]);
    // A non-critical unknown extension is fine.
    let ok = issue(
        d,
        &root,
        "Extra Publisher",
        71,
        &format!("{CODE_LEAF}1.3.6.1.4.1.99999.1=ASN1:NULL\n"),
    );
    let dll = compile_dll(&t, &format!("{SYS}/extra.dll"), 49);
    sign(&dll, &ok, &[&ok.1, &root.1]);
    let f = judge(&t, &root);
    let why = untrusted(&f, "critical.dll");
    assert!(
        why.contains("CN=Critical Publisher has a critical extension 1.3.6.1.4.1.99999.1"),
        "{why}"
    );
    assert_eq!(about(&f, "extra.dll"), Vec::<&serde_json::Value>::new());
}

/// Rewrites the first signer's signed attributes of the signed `dll` with
/// `edit`, and signs them again with `key` (same length: a 2048-bit key),
/// so only what `edit` changed differs from a valid signature.
fn resign_attrs(dll: &Path, key: &Path, edit: impl Fn(&mut [u8])) {
    use libwarden::formats::{der, pe};
    let mut b = std::fs::read(dll).unwrap();
    let l = pe::layout(&b).unwrap();
    let blob = pe::pkcs7_blob(&b, &l).unwrap();
    let base = blob.as_ptr() as usize - b.as_ptr() as usize;
    let sd = der::signed_data(blob).unwrap();
    let si = &sd.signers[0];
    let attrs = si.signed_attrs.unwrap().raw;
    let at = attrs.as_ptr() as usize - b.as_ptr() as usize;
    let (sig_at, sig_len) = (
        si.signature.as_ptr() as usize - b.as_ptr() as usize,
        si.signature.len(),
    );
    assert!(at > base && sig_at > at);
    let mut new = attrs.to_vec();
    edit(&mut new);
    b[at..at + new.len()].copy_from_slice(&new);
    // What is signed is the attributes as a SET (RFC 5652 §5.4).
    new[0] = 0x31;
    let dir = dll.parent().unwrap();
    let msg = dir.join("attrs.der");
    let sig = dir.join("attrs.sig");
    std::fs::write(&msg, &new).unwrap();
    sh(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg("-out")
        .arg(&sig)
        .arg(&msg));
    let sig = std::fs::read(&sig).unwrap();
    assert_eq!(sig.len(), sig_len);
    b[sig_at..sig_at + sig_len].copy_from_slice(&sig);
    std::fs::write(dll, b).unwrap();
}

/// The offset of the last octet of the signed contentType value (the OID
/// 1.3.6.1.4.1.311.2.1.4 right after the contentType attribute's OID).
fn content_type_last_octet(attrs: &[u8]) -> usize {
    let needle = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03, // contentType
        0x31, 0x0c, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04,
    ];
    let i = attrs
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("a contentType attribute naming SPC_INDIRECT_DATA");
    i + needle.len() - 1
}

#[test]
fn a_signed_content_type_other_than_spc_indirect_data_is_refused() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "CT Root");
    let leaf = issue(d, &root, "CT Publisher", 80, CODE_LEAF);
    // Re-signed unchanged: still valid (the re-signing is sound)...
    let same = compile_dll(&t, &format!("{SYS}/resigned.dll"), 50);
    sign(&same, &leaf, &[&leaf.1, &root.1]);
    resign_attrs(&same, &leaf.0, |a| {
        content_type_last_octet(a);
    });
    // ...and with contentType 1.3.6.1.4.1.311.2.1.12 (SpcSpOpusInfo).
    let wrong = compile_dll(&t, &format!("{SYS}/content-type.dll"), 51);
    sign(&wrong, &leaf, &[&leaf.1, &root.1]);
    resign_attrs(&wrong, &leaf.0, |a| {
        let i = content_type_last_octet(a);
        a[i] = 0x0c;
    });
    let f = judge(&t, &root);
    assert_eq!(about(&f, "resigned.dll"), Vec::<&serde_json::Value>::new());
    let a = about(&f, "content-type.dll");
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["kind"], "signature_invalid", "{:#?}", a[0]);
    let why = a[0]["detail"].as_str().unwrap();
    assert!(
        why.contains("signed contentType attribute is not SPC_INDIRECT_DATA"),
        "{why}"
    );
}

#[test]
fn authenticode_roots_naming_a_device_or_fifo_is_refused_without_reading_it() {
    let t = TestRoot::new();
    let d = t.dir.path();
    let root = make_ca(d, "Device Root");
    let leaf = issue(d, &root, "Device Publisher", 90, CODE_LEAF);
    let dll = compile_dll(&t, &format!("{SYS}/dev.dll"), 52);
    sign(&dll, &leaf, &[&leaf.1, &root.1]);
    let fifo = d.join("roots.fifo");
    crate::util::mkfifo(&fifo, 0o600);
    t.init();
    for pem in [Path::new("/dev/zero"), fifo.as_path()] {
        let cfg = roots_config(&t, pem);
        let mut child = t
            .cmd(&["--config", &cfg, "--format", "json", "check"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A bound to detect a hang, not a timing assertion.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("check with authenticode_roots = {} hangs", pem.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "authenticode_roots {}: not a regular file",
                pem.display()
            )),
            "{err}"
        );
        // Nothing trusted: the signature is judged, its signer is not.
        let f = json_lines(&o.stdout);
        assert!(untrusted(&f, "dev.dll").contains("no authenticode_roots"));
    }
}

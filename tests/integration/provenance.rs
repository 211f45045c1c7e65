//! Provenance: dpkg ownership and package updates (real `dpkg -i` into the
//! fixture root), kernel module signatures, IMA xattrs, Authenticode DLLs
//! built with mingw and signed with osslsigncode by a CA made here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{find, json_lines, kinds, TestRoot};

const MA: &str = "usr/lib/x86_64-linux-gnu";

pub(crate) fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An empty dpkg database inside the root.
pub(crate) fn dpkg_root(t: &TestRoot) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(t.path(d)).unwrap();
    }
    t.write("var/lib/dpkg/status", "");
}

/// Builds a package `name` at `version` holding the given libraries (paths
/// relative to `/`, e.g. `lib/x86_64-linux-gnu/libp.so.1`, each compiled
/// from `int f(void){return N;}`) and installs it with `dpkg --root`.
pub(crate) fn install(t: &TestRoot, name: &str, version: &str, libs: &[(&str, i32)]) {
    let pkg = t.dir.path().join(format!("pkg-{name}-{version}"));
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    let mut sums = String::new();
    for (rel, n) in libs {
        let out = pkg.join(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = t.dir.path().join(format!("p{n}.c"));
        std::fs::write(&src, format!("int f(void){{return {n};}}\n")).unwrap();
        sh(Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&src));
        let o = Command::new("md5sum")
            .arg(rel)
            .current_dir(&pkg)
            .output()
            .unwrap();
        sums.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    std::fs::write(pkg.join("DEBIAN/md5sums"), sums).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: fixture\n"
        ),
    )
    .unwrap();
    let deb = t.dir.path().join(format!("{name}_{version}.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(&deb));
    dpkg(t, &["-i".as_ref(), deb.as_os_str()]);
}

/// Runs dpkg on the test root as an unprivileged, chrootless install
/// would (`dpkg(&t, &["-r".as_ref(), "libtwo1".as_ref()])`).
pub fn dpkg<S: AsRef<std::ffi::OsStr>>(t: &TestRoot, args: &[S]) {
    let mut root = std::ffi::OsString::from("--root=");
    root.push(t.root());
    sh(Command::new("dpkg")
        .arg(root)
        .args(["--force-not-root", "--force-script-chrootless"])
        .args(args));
}

fn check(t: &TestRoot, extra: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut args = extra.to_vec();
    args.extend(["--format", "json", "check"]);
    let o = t.run(&args);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Writes `etc/lw.toml` trusting the Authenticode roots in `pem`;
/// returns its path for `--config`.
pub fn roots_config(t: &TestRoot, pem: &std::path::Path) -> String {
    t.write(
        "etc/lw.toml",
        format!("[provenance]\nauthenticode_roots = \"{}\"\n", pem.display()),
    );
    t.path("etc/lw.toml").to_str().unwrap().to_string()
}

#[test]
fn dpkg_owned_libraries_are_packaged_across_merged_usr() {
    let t = TestRoot::debian();
    dpkg_root(&t);
    // dpkg records /lib/..., the scan sees /usr/lib/... (lib -> usr/lib).
    install(
        &t,
        "libprov1",
        "1.0",
        &[("lib/x86_64-linux-gnu/libprov.so.1", 1)],
    );
    assert!(t.path(&format!("{MA}/libprov.so.1")).exists());
    t.init();
    let (code, f, err) = check(&t, &[]);
    let p = "/usr/lib/x86_64-linux-gnu/libprov.so.1";
    assert!(
        f.iter().all(|x| x["path"] != p),
        "packaged library flagged: {:?}",
        kinds(&f)
    );
    // libfoo of the fixture belongs to no package.
    let foo = find(
        &f,
        "unpackaged",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
    )
    .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(foo["severity"], "high");
    assert_eq!(code & 8, 8);
    assert!(err.contains("dpkg database: 1 packages"), "{err}");

    // A hand edit of the packaged file: content and modified_vs_package.
    t.compile_so(
        &format!("{MA}/libprov.so.1"),
        "libprov.so.1",
        "int g(void){return 7;}",
    );
    let (_, f, _) = check(&t, &[]);
    assert!(find(&f, "content", p).is_some(), "{:?}", kinds(&f));
    let m = find(&f, "modified_vs_package", p).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(m["severity"], "high");
    assert!(m["detail"].as_str().unwrap().contains("libprov1 1.0"));
}

#[test]
fn unpackaged_under_usr_local_is_low_and_accepted_once_in_the_baseline() {
    let t = TestRoot::new();
    dpkg_root(&t);
    t.write("etc/ld.so.conf", "/usr/local/lib\n");
    t.compile_so("usr/local/lib/libl.so", "libl.so", "int l(void){return 0;}");
    t.init();
    // In the baseline with the same content: `manifest` vouches for it.
    let (code, f, _) = check(&t, &[]);
    assert!(f.is_empty(), "{:?}", kinds(&f));
    assert_eq!(code, 0);
    // A new unpackaged library there is added and unpackaged (low).
    t.compile_so(
        "usr/local/lib/libm2.so",
        "libm2.so",
        "int m(void){return 0;}",
    );
    let (_, f, _) = check(&t, &[]);
    let u = find(&f, "unpackaged", "/usr/local/lib/libm2.so")
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(u["severity"], "low");
    assert!(find(&f, "added", "/usr/local/lib/libm2.so").is_some());
}

#[test]
fn no_dpkg_database_is_one_warning_not_a_finding_per_file() {
    let t = TestRoot::debian();
    t.init();
    let (code, f, err) = check(&t, &[]);
    assert_eq!(code, 0, "{:?}", kinds(&f));
    assert!(f.is_empty(), "{:?}", kinds(&f));
    assert_eq!(err.matches("no dpkg database").count(), 1, "{err}");
}

#[test]
fn package_upgrade_is_package_update_and_a_hand_edit_stays_content() {
    let t = TestRoot::new();
    dpkg_root(&t);
    let a = "lib/x86_64-linux-gnu/libupa.so.1";
    let b = "usr/lib/x86_64-linux-gnu/libupb.so.1";
    install(&t, "libup1", "1.0", &[(a, 10), (b, 11)]);
    t.init();
    let (code, f, _) = check(&t, &[]);
    assert_eq!((code, f.len()), (0, 0), "{:?}", kinds(&f));

    install(&t, "libup1", "2.0", &[(a, 20), (b, 21)]);
    // During the same upgrade, someone edits one of the libraries.
    t.compile_so(b, "libupb.so.1", "int evil(void){return 666;}");
    let (code, f, _) = check(&t, &[]);
    let pa = "/usr/lib/x86_64-linux-gnu/libupa.so.1";
    let pb = "/usr/lib/x86_64-linux-gnu/libupb.so.1";
    let up = find(&f, "package_update", pa).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(up["severity"], "info");
    assert!(up["detail"].as_str().unwrap().contains("1.0 -> 2.0"));
    assert!(find(&f, "content", pa).is_none());
    assert!(find(&f, "content", pb).is_some(), "{:?}", kinds(&f));
    assert!(find(&f, "modified_vs_package", pb).is_some());
    assert_eq!(code & 4, 4);

    // --package-updates accepts exactly the upgrade.
    let o = t.run_ok(&["--format", "json", "update", "--package-updates"]);
    let accepted = json_lines(&o.stdout);
    assert_eq!(kinds(&accepted), vec![("package_update".into(), pa.into())]);
    let (_, f, _) = check(&t, &[]);
    assert!(f.iter().all(|x| x["path"] != pa), "{:?}", kinds(&f));
    assert!(find(&f, "content", pb).is_some(), "{:?}", kinds(&f));
}

#[test]
fn plain_upgrade_exits_clean_and_update_records_the_new_versions() {
    let t = TestRoot::new();
    dpkg_root(&t);
    let a = "usr/lib/x86_64-linux-gnu/libclean.so.1";
    let b = "usr/lib/x86_64-linux-gnu/libclean-extra.so.1";
    let c = "usr/lib/x86_64-linux-gnu/libnewdep.so.1";
    install(&t, "libclean1", "1", &[(a, 1)]);
    t.init();
    // The upgrade ships one more library and pulls in a new package.
    install(&t, "libclean1", "2", &[(a, 2), (b, 3)]);
    install(&t, "libnewdep1", "1", &[(c, 4)]);
    let (code, f, _) = check(&t, &[]);
    assert_eq!(code, 0, "info findings set no bit: {:?}", kinds(&f));
    assert_eq!(f.len(), 3, "{:?}", kinds(&f));
    assert!(
        f.iter().all(|x| x["kind"] == "package_update"),
        "{:?}",
        kinds(&f)
    );
    let new = find(&f, "package_update", &format!("/{c}")).unwrap();
    assert!(new["detail"]
        .as_str()
        .unwrap()
        .contains("package install: libnewdep1 1"));

    let o = t.run(&["--format", "json", "update", "--package-updates"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_lines(&o.stdout).len(), 3);
    let (code, f, _) = check(&t, &[]);
    assert_eq!((code, f.len()), (0, 0), "{:?}", kinds(&f));

    install(&t, "libclean1", "3", &[(a, 5), (b, 6)]);
    let o = t.run(&["update"]);
    assert_eq!(o.status.code(), Some(0));
    let (code, f, _) = check(&t, &[]);
    assert_eq!((code, f.len()), (0, 0), "{:?}", kinds(&f));
    // Same version, different bytes now: not an upgrade.
    t.compile_so(a, "libclean.so.1", "int x(void){return 3;}");
    let (_, f, _) = check(&t, &[]);
    assert!(
        find(&f, "content", &format!("/{a}")).is_some(),
        "{:?}",
        kinds(&f)
    );
}

/// Compiles a relocatable object (what a kernel module is, to the ELF
/// sniffer) at `rel`.
fn compile_module(t: &TestRoot, rel: &str) -> PathBuf {
    let out = t.path(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = t.dir.path().join("mod.c");
    std::fs::write(&src, "int init_module(void){return 0;}\n").unwrap();
    sh(Command::new("gcc").arg("-c").arg("-o").arg(&out).arg(&src));
    out
}

/// Makes a self-signed CA (key, cert) in `dir` named `cn`.
pub(crate) fn make_ca(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{cn}.key"));
    let crt = dir.join(format!("{cn}.pem"));
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt));
    (key, crt)
}

/// Appends a kernel-format signature (PKCS#7 DER, module_signature,
/// marker) to `module`, as scripts/sign-file does.
fn sign_module(t: &TestRoot, module: &Path, cn: &str) {
    let (key, crt) = make_ca(t.dir.path(), cn);
    let sig = t.dir.path().join("mod.p7s");
    sh(Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-noattr", "-nocerts", "-md", "sha256", "-outform", "DER",
        ])
        .arg("-in")
        .arg(module)
        .arg("-signer")
        .arg(&crt)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&sig));
    let sig = std::fs::read(sig).unwrap();
    let mut m = std::fs::read(module).unwrap();
    m.extend_from_slice(&sig);
    m.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&(sig.len() as u32).to_be_bytes());
    m.extend_from_slice(b"~Module signature appended~\n");
    std::fs::write(module, m).unwrap();
}

#[test]
fn kernel_modules_without_appended_signature_are_unsigned() {
    let t = TestRoot::new();
    let kdir = "usr/lib/modules/6.1.0-test/kernel/drivers";
    compile_module(&t, &format!("{kdir}/plain.ko"));
    let signed = compile_module(&t, &format!("{kdir}/signed.ko"));
    sign_module(&t, &signed, "modsign");
    let broken = compile_module(&t, &format!("{kdir}/broken.ko"));
    let mut b = std::fs::read(&broken).unwrap();
    b.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    b.extend_from_slice(b"~Module signature appended~\n");
    std::fs::write(&broken, b).unwrap();
    let packed = compile_module(&t, &format!("{kdir}/packed.ko"));
    sh(Command::new("xz").arg(&packed));
    // /usr/lib/modules is not a loader path: monitor it by config.
    t.write("etc/lw.toml", "paths = [\"/usr/lib/modules\"]\n");
    let cfg = t.path("etc/lw.toml");
    let cfg = cfg.to_str().unwrap();
    t.run(&["--config", cfg, "init"]);
    let (code, f, _) = check(&t, &["--config", cfg]);
    let p = |n: &str| format!("/{kdir}/{n}");
    let u = find(&f, "unsigned", &p("plain.ko")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(u["severity"], "high");
    assert!(
        f.iter().all(|x| x["path"] != p("signed.ko")),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "signature_invalid", &p("broken.ko")).is_some(),
        "{:?}",
        kinds(&f)
    );
    let x = find(&f, "unsigned", &p("packed.ko.xz")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(x["detail"].as_str().unwrap().contains("compressed"), "{x}");
    assert_eq!(code & 8, 8);

    // Re-signed with another key: the signer recorded at init differs.
    let signed = compile_module(&t, &format!("{kdir}/signed.ko"));
    sign_module(&t, &signed, "other-key");
    let (_, f, _) = check(&t, &["--config", cfg]);
    let s =
        find(&f, "untrusted_signer", &p("signed.ko")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        s["detail"].as_str().unwrap().contains("signer changed"),
        "{s}"
    );
}

#[test]
fn ima_hash_vouches_when_it_matches_and_is_invalid_when_not() {
    if Command::new("setfattr").arg("--version").output().is_err() {
        panic!("setfattr must be installed (package attr; .ci/run installs it)");
    }
    let t = TestRoot::new();
    dpkg_root(&t);
    t.compile_so(
        &format!("{MA}/libgood.so"),
        "libgood.so",
        "int a(void){return 1;}",
    );
    t.compile_so(
        &format!("{MA}/libbad.so"),
        "libbad.so",
        "int b(void){return 2;}",
    );
    t.compile_so(
        &format!("{MA}/libsig.so"),
        "libsig.so",
        "int c(void){return 3;}",
    );
    let sha = |rel: &str| {
        let o = Command::new("sha256sum").arg(t.path(rel)).output().unwrap();
        String::from_utf8_lossy(&o.stdout)[..64].to_string()
    };
    let set = |rel: &str, hex: &str| {
        sh(Command::new("setfattr")
            .args(["-n", "security.ima", "-v"])
            .arg(format!("0x{hex}"))
            .arg(t.path(rel)));
    };
    set(
        &format!("{MA}/libgood.so"),
        &format!("0404{}", sha(&format!("{MA}/libgood.so"))),
    );
    set(
        &format!("{MA}/libbad.so"),
        &format!("0404{}", "00".repeat(32)),
    );
    set(
        &format!("{MA}/libsig.so"),
        &format!("030204deadbeef0004{}", "ab".repeat(4)),
    );
    t.init();
    let (_, f, _) = check(&t, &[]);
    let p = |n: &str| format!("/{MA}/{n}");
    assert!(
        f.iter().all(|x| x["path"] != p("libgood.so")),
        "{:?}",
        kinds(&f)
    );
    let bad =
        find(&f, "signature_invalid", &p("libbad.so")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(bad["detail"].as_str().unwrap().contains("IMA"));
    let s = find(&f, "unpackaged", &p("libsig.so")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        s["detail"].as_str().unwrap().contains("not verified"),
        "{s}"
    );
}

/// Builds a DLL with mingw at `rel`.
pub(crate) fn compile_dll(t: &TestRoot, rel: &str, n: i32) -> PathBuf {
    compile_dll_at(&t.path(rel), t.dir.path(), n)
}

/// Builds a DLL with mingw at the host path `out` (sources in `scratch`).
pub(crate) fn compile_dll_at(out: &Path, scratch: &Path, n: i32) -> PathBuf {
    let out = out.to_path_buf();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let src = scratch.join(format!("dll{n}.c"));
    std::fs::write(
        &src,
        format!("__declspec(dllexport) int f{n}(void){{return {n};}}\n"),
    )
    .unwrap();
    let st = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-shared")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("x86_64-w64-mingw32-gcc must be installed (gcc-mingw-w64-x86-64)");
    assert!(st.success());
    out
}

/// A leaf certificate for code signing issued by the CA.
pub(crate) fn make_leaf(dir: &Path, ca: &(PathBuf, PathBuf), cn: &str) -> (PathBuf, PathBuf) {
    make_leaf_with(dir, ca, cn, &["-newkey", "rsa:2048"])
}

fn make_leaf_with(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    cn: &str,
    newkey: &[&str],
) -> (PathBuf, PathBuf) {
    issue_cert(dir, ca, cn, newkey, 7, "extendedKeyUsage=codeSigning\n")
}

/// Issues `cn` (a new key made with the `openssl req` arguments `newkey`)
/// under `ca` with the extension lines `ext` (openssl `x509v3_config`
/// syntax) and the serial `serial`.
pub(crate) fn issue_cert(
    dir: &Path,
    ca: &(PathBuf, PathBuf),
    cn: &str,
    newkey: &[&str],
    serial: u32,
    ext: &str,
) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{cn}.key"));
    let csr = dir.join(format!("{cn}.csr"));
    let crt = dir.join(format!("{cn}.pem"));
    let cnf = dir.join(format!("{cn}.ext"));
    std::fs::write(&cnf, ext).unwrap();
    sh(Command::new("openssl")
        .arg("req")
        .args(newkey)
        .args(["-nodes", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    sh(Command::new("openssl")
        .args(["x509", "-req", "-days", "3650", "-set_serial"])
        .arg(serial.to_string())
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.1)
        .arg("-CAkey")
        .arg(&ca.0)
        .arg("-extfile")
        .arg(&cnf)
        .arg("-out")
        .arg(&crt));
    (key, crt)
}

pub(crate) fn sign_dll(dll: &Path, leaf: &(PathBuf, PathBuf), ca: &Path) {
    let tmp = dll.with_extension("signed");
    sh(Command::new("osslsigncode")
        .args(["sign", "-h", "sha256", "-certs"])
        .arg(chain_file(&leaf.1, ca))
        .arg("-key")
        .arg(&leaf.0)
        .arg("-in")
        .arg(dll)
        .arg("-out")
        .arg(&tmp));
    std::fs::rename(tmp, dll).unwrap();
}

fn chain_file(leaf: &Path, ca: &Path) -> PathBuf {
    let out = leaf.with_extension("chain.pem");
    let mut b = std::fs::read(leaf).unwrap();
    b.extend(std::fs::read(ca).unwrap());
    std::fs::write(&out, b).unwrap();
    out
}

#[test]
fn authenticode_signed_unsigned_tampered_and_untrusted_dlls() {
    let t = TestRoot::new();
    let sys = "Windows/System32";
    let ca = make_ca(t.dir.path(), "Test Root CA");
    let rogue = make_ca(t.dir.path(), "Rogue CA");
    let leaf = make_leaf(t.dir.path(), &ca, "Test Publisher");
    let rogue_leaf = make_leaf(t.dir.path(), &rogue, "Rogue Publisher");

    compile_dll(&t, &format!("{sys}/unsigned.dll"), 1);
    let good = compile_dll(&t, &format!("{sys}/good.dll"), 2);
    sign_dll(&good, &leaf, &ca.1);
    let bad = compile_dll(&t, &format!("{sys}/tampered.dll"), 3);
    sign_dll(&bad, &leaf, &ca.1);
    let mut b = std::fs::read(&bad).unwrap();
    b[0x400] ^= 0xff; // inside .text, covered by the digest
    std::fs::write(&bad, b).unwrap();
    let other = compile_dll(&t, &format!("{sys}/rogue.dll"), 4);
    sign_dll(&other, &rogue_leaf, &rogue.1);
    let ec_leaf = make_leaf_with(
        t.dir.path(),
        &ca,
        "EC Publisher",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let ec = compile_dll(&t, &format!("{sys}/ecdsa.dll"), 8);
    sign_dll(&ec, &ec_leaf, &ca.1);

    let cfg = roots_config(&t, &ca.1);
    let cfg = cfg.as_str();
    t.run_ok(&["--config", cfg, "init"]);
    let (code, f, err) = check(&t, &["--config", cfg]);
    let p = |n: &str| format!("/{sys}/{n}");
    assert!(
        f.iter().all(|x| x["path"] != p("good.dll")),
        "{:?} {err}",
        kinds(&f)
    );
    let u = find(&f, "unsigned", &p("unsigned.dll")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert_eq!(u["severity"], "high");
    let x = find(&f, "signature_invalid", &p("tampered.dll"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(x["detail"].as_str().unwrap().contains("digest"), "{x}");
    let r =
        find(&f, "untrusted_signer", &p("rogue.dll")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        r["detail"].as_str().unwrap().contains("Rogue Publisher"),
        "{r}"
    );
    // ECDSA is not verified: said so, never called tampered.
    let e =
        find(&f, "untrusted_signer", &p("ecdsa.dll")).unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        e["detail"].as_str().unwrap().contains("not supported"),
        "{e}"
    );
    assert_eq!(code & 8, 8);

    // Verdicts cached in the baseline are not reused for other roots...
    roots_config(&t, &rogue.1);
    let (_, f, _) = check(&t, &["--config", cfg]);
    assert!(
        find(&f, "untrusted_signer", &p("good.dll")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        f.iter().all(|x| x["path"] != p("rogue.dll")),
        "{:?}",
        kinds(&f)
    );
    // ...nor for other bytes.
    roots_config(&t, &ca.1);
    let mut b = std::fs::read(&good).unwrap();
    b[0x400] ^= 0xff;
    std::fs::write(&good, b).unwrap();
    let (_, f, _) = check(&t, &["--config", cfg]);
    assert!(
        find(&f, "signature_invalid", &p("good.dll")).is_some(),
        "{:?}",
        kinds(&f)
    );
}

/// DER: one TLV.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = body.len();
    if n < 0x80 {
        v.push(n as u8);
    } else if n < 0x100 {
        v.extend([0x81, n as u8]);
    } else {
        v.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(body);
    v
}

fn oid(dotted: &str) -> Vec<u8> {
    let p: Vec<u64> = dotted.split('.').map(|x| x.parse().unwrap()).collect();
    let mut body = vec![(p[0] * 40 + p[1]) as u8];
    for &n in &p[2..] {
        let mut stack = vec![(n & 0x7f) as u8];
        let mut m = n >> 7;
        while m > 0 {
            stack.push((m & 0x7f) as u8 | 0x80);
            m >>= 7;
        }
        stack.reverse();
        body.extend(stack);
    }
    tlv(0x06, &body)
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A minimal catalog CTL listing `digests` (SHA-256 Authenticode digests)
/// the way makecat does: each member an SpcIndirectDataContent attribute.
pub(crate) fn ctl(digests: &[Vec<u8>]) -> Vec<u8> {
    let sha256 = seq(&[oid("2.16.840.1.101.3.4.2.1"), vec![0x05, 0x00]]);
    let members: Vec<Vec<u8>> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let spc = seq(&[
                seq(&[oid("1.3.6.1.4.1.311.2.1.15"), seq(&[])]),
                seq(&[sha256.clone(), tlv(0x04, d)]),
            ]);
            let attr = seq(&[oid("1.3.6.1.4.1.311.2.1.4"), tlv(0x31, &spc)]);
            seq(&[tlv(0x04, format!("member{i}").as_bytes()), tlv(0x31, &attr)])
        })
        .collect();
    seq(&[
        seq(&[oid("1.3.6.1.4.1.311.12.1.1")]),
        tlv(0x04, b"libwarden-test"),
        tlv(0x17, b"260101000000Z"),
        seq(&[oid("1.3.6.1.4.1.311.12.1.2"), vec![0x05, 0x00]]),
        seq(&members),
    ])
}

pub(crate) fn sign_catalog(t: &TestRoot, ctl: &[u8], signer: &(PathBuf, PathBuf), out: &Path) {
    let inp = t.dir.path().join("ctl.der");
    std::fs::write(&inp, ctl).unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    sh(Command::new("openssl")
        .args(["cms", "-sign", "-nodetach", "-binary", "-md", "sha256"])
        .args(["-econtent_type", "1.3.6.1.4.1.311.10.1", "-outform", "DER"])
        .arg("-in")
        .arg(&inp)
        .arg("-signer")
        .arg(&signer.1)
        .arg("-inkey")
        .arg(&signer.0)
        .arg("-out")
        .arg(out));
}

pub(crate) fn authenticode_sha256(dll: &Path) -> Vec<u8> {
    let b = std::fs::read(dll).unwrap();
    let l = libwarden::formats::pe::layout(&b).unwrap();
    libwarden::formats::pe::authenticode_digest(&b, &l, "sha256").unwrap()
}

#[test]
fn a_dll_listed_in_a_verified_catalog_counts_as_signed() {
    let t = TestRoot::new();
    let sys = "Windows/System32";
    let ca = make_ca(t.dir.path(), "Catalog Root");
    let rogue = make_ca(t.dir.path(), "Rogue Catalog CA");
    let listed = compile_dll(&t, &format!("{sys}/listed.dll"), 5);
    compile_dll(&t, &format!("{sys}/unlisted.dll"), 6);
    let in_rogue = compile_dll(&t, &format!("{sys}/in-rogue-catalog.dll"), 7);
    let cats = t.path(&format!(
        "{sys}/CatRoot/{{F750E6C3-38EE-11D1-85E5-00C04FC295EE}}"
    ));
    sign_catalog(
        &t,
        &ctl(&[authenticode_sha256(&listed)]),
        &ca,
        &cats.join("good.cat"),
    );
    sign_catalog(
        &t,
        &ctl(&[authenticode_sha256(&in_rogue)]),
        &rogue,
        &cats.join("rogue.cat"),
    );
    let cfg = roots_config(&t, &ca.1);
    let cfg = cfg.as_str();
    t.run_ok(&["--config", cfg, "init"]);
    let (_, f, err) = check(&t, &["--config", cfg]);
    let p = |n: &str| format!("/{sys}/{n}");
    assert!(
        f.iter().all(|x| x["path"] != p("listed.dll")),
        "{:?} {err}",
        kinds(&f)
    );
    assert!(
        !err.contains("dpkg"),
        "a Windows image needs no dpkg: {err}"
    );
    assert!(
        find(&f, "unsigned", &p("unlisted.dll")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(
        find(&f, "unsigned", &p("in-rogue-catalog.dll")).is_some(),
        "{:?}",
        kinds(&f)
    );
    assert!(err.contains("rogue.cat not used"), "{err}");
}

#[test]
fn ima_signatures_verify_against_configured_keys() {
    let t = TestRoot::new();
    dpkg_root(&t);
    let (key, crt) = make_ca(t.dir.path(), "IMA key");
    t.compile_so(
        &format!("{MA}/libsigned.so"),
        "libsigned.so",
        "int a(void){return 1;}",
    );
    t.compile_so(
        &format!("{MA}/libforged.so"),
        "libforged.so",
        "int b(void){return 2;}",
    );
    let ima_sig = |rel: &str, over: &str| {
        let sig = t.dir.path().join("ima.sig");
        sh(Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key)
            .arg("-out")
            .arg(&sig)
            .arg(t.path(over)));
        let sig = std::fs::read(&sig).unwrap();
        let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        sh(Command::new("setfattr")
            .args(["-n", "security.ima", "-v"])
            .arg(format!("0x030204cafef00d{:04x}{hex}", sig.len()))
            .arg(t.path(rel)));
    };
    ima_sig(&format!("{MA}/libsigned.so"), &format!("{MA}/libsigned.so"));
    // A signature lifted from another file.
    ima_sig(&format!("{MA}/libforged.so"), &format!("{MA}/libsigned.so"));
    // IMA keys usually ship as DER certificates.
    let der = t.dir.path().join("x509_ima.der");
    sh(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&crt)
        .arg("-out")
        .arg(&der));
    t.write(
        "etc/lw.toml",
        format!("[provenance]\nima_keys = [\"{}\"]\n", der.display()),
    );
    let cfg = t.path("etc/lw.toml");
    let cfg = cfg.to_str().unwrap();
    t.run(&["--config", cfg, "init"]);
    let (_, f, _) = check(&t, &["--config", cfg]);
    let p = |n: &str| format!("/{MA}/{n}");
    assert!(
        f.iter().all(|x| x["path"] != p("libsigned.so")),
        "{:?}",
        kinds(&f)
    );
    let x = find(&f, "signature_invalid", &p("libforged.so"))
        .unwrap_or_else(|| panic!("{:?}", kinds(&f)));
    assert!(
        x["detail"].as_str().unwrap().contains("does not verify"),
        "{x}"
    );
}

#!/bin/sh
# Regenerates the tool-made seeds of fuzz/corpus/ (ELF, PE, DER, PEM,
# kmod, IMA, ld.so.conf, dpkg, manifest, config). The hive and record
# seeds are written by `LIBWARDEN_FUZZ_WRITE_SEEDS=1 cargo test --test
# integration fuzz::write_generated_seeds -- --ignored`. Needs gcc,
# x86_64-w64-mingw32-gcc, openssl, osslsigncode and a built libwarden
# (target/debug/libwarden). The seeds are committed: this script is only
# for adding or refreshing them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
c="$here/corpus"
bin="$here/../target/debug/libwarden"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$c"/elf "$c"/pe "$c"/der "$c"/pem "$c"/kmod "$c"/ima "$c"/ldconf \
         "$c"/dpkg "$c"/manifest "$c"/config

# ELF: small shared objects, an executable, a relocatable object.
echo 'int f(void){return 1;}' > "$t/a.c"
gcc -shared -fPIC -s -Wl,-z,noseparate-code -Wl,-soname,liba.so.1 -o "$c/elf/liba.so" "$t/a.c"
gcc -shared -fPIC -s -Wl,-z,noseparate-code -Wl,-rpath,'$ORIGIN/../lib' -Wl,--enable-new-dtags \
    -Wl,-soname,librun.so -o "$c/elf/librunpath.so" "$t/a.c" -lm
gcc -shared -fPIC -s -Wl,-z,noseparate-code -Wl,--disable-new-dtags -Wl,-rpath,/opt/x \
    -o "$c/elf/librpath.so" "$t/a.c"
echo 'int main(void){return 0;}' > "$t/m.c"
gcc -s -Wl,-z,noseparate-code -o "$c/elf/exe" "$t/m.c"
gcc -c -o "$c/elf/obj.o" "$t/a.c"

# A CA, an intermediate and a code-signing leaf; a TLS leaf.
cat > "$t/ca.ext" <<X
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
X
cat > "$t/leaf.ext" <<X
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
X
cat > "$t/tls.ext" <<X
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
1.3.6.1.4.1.99999.1=critical,ASN1:NULL
X
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=FuzzRoot \
    -keyout "$t/root.key" -out "$t/root.pem" 2>/dev/null
issue() { # name issuer ext serial
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$t/$1.key" -out "$t/$1.csr" 2>/dev/null
    openssl x509 -req -days 3650 -set_serial "$4" -in "$t/$1.csr" -CA "$t/$2.pem" -CAkey "$t/$2.key" \
        -extfile "$t/$3" -out "$t/$1.pem" 2>/dev/null
}
issue int root ca.ext 2
issue leaf int leaf.ext 3
issue tls root tls.ext 4
cp "$t/root.pem" "$here/pe-roots.pem"
for n in root int leaf tls; do openssl x509 -in "$t/$n.pem" -outform DER -out "$c/der/$n.cer"; done
cat "$t/root.pem" "$t/int.pem" > "$c/pem/bundle.pem"
openssl x509 -in "$t/leaf.pem" -pubkey -noout > "$c/pem/pubkey.pem"

# PE: DLLs and an EXE, unsigned and signed (sha256 and sha1, chain of 3).
printf '__declspec(dllexport) int f(void){return 1;}\n' > "$t/d.c"
x86_64-w64-mingw32-gcc -shared -s -o "$t/d.dll" "$t/d.c"
cp "$t/d.dll" "$c/pe/unsigned.dll"
cat "$t/leaf.pem" "$t/int.pem" "$t/root.pem" > "$t/chain.pem"
osslsigncode sign -h sha256 -certs "$t/chain.pem" -key "$t/leaf.key" -in "$t/d.dll" -out "$c/pe/signed.dll" >/dev/null
osslsigncode sign -h sha1 -certs "$t/chain.pem" -key "$t/leaf.key" -in "$t/d.dll" -out "$c/pe/signed-sha1.dll" >/dev/null
cat "$t/tls.pem" "$t/root.pem" > "$t/tlschain.pem"
osslsigncode sign -h sha256 -certs "$t/tlschain.pem" -key "$t/tls.key" -in "$t/d.dll" -out "$c/pe/tls-signed.dll" >/dev/null
printf 'int main(void){return 0;}\n' > "$t/e.c"
x86_64-w64-mingw32-gcc -s -o "$c/pe/plain.exe" "$t/e.c"
osslsigncode extract-signature -in "$c/pe/signed.dll" -out "$c/der/authenticode.p7" >/dev/null

# DER: a catalog (CTL content, signed attributes) and a kernel-module
# style signature (no attributes, no certificates).
printf '\060\003\002\001\001' > "$t/ctl.der"
openssl cms -sign -nodetach -binary -md sha256 -econtent_type 1.3.6.1.4.1.311.10.1 -outform DER \
    -in "$t/ctl.der" -signer "$t/root.pem" -inkey "$t/root.key" -out "$c/der/catalog.cat"

# kmod: an object with and without an appended signature.
echo 'int init_module(void){return 0;}' > "$t/k.c"
gcc -c -o "$t/k.ko" "$t/k.c"
cp "$t/k.ko" "$c/kmod/unsigned.ko"
openssl cms -sign -binary -noattr -nocerts -md sha256 -outform DER -in "$t/k.ko" \
    -signer "$t/root.pem" -inkey "$t/root.key" -out "$t/k.p7s"
cp "$t/k.p7s" "$c/der/modsig.p7s"
python3 - "$t/k.ko" "$t/k.p7s" "$c/kmod/signed.ko" <<'PY'
import sys, struct
m = open(sys.argv[1], 'rb').read(); s = open(sys.argv[2], 'rb').read()
tail = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + struct.pack('>I', len(s)) + b'~Module signature appended~\n'
open(sys.argv[3], 'wb').write(m + s + tail)
PY

# IMA: a sha256 digest (type 4), an old sha1 digest (type 1), a v2
# signature header with a 256-byte signature.
python3 - "$c/ima" <<'PY'
import sys, os, hashlib
d = sys.argv[1]
h = hashlib.sha256(b'content').digest()
open(os.path.join(d, 'digest-ng'), 'wb').write(b'\x04\x04' + h)
open(os.path.join(d, 'digest-sha1'), 'wb').write(b'\x01' + hashlib.sha1(b'content').digest())
sig = bytes(range(256))
open(os.path.join(d, 'sig-v2'), 'wb').write(b'\x03\x02\x04' + b'\x12\x34\x56\x78' + len(sig).to_bytes(2, 'big') + sig)
PY

# ld.so.conf: this machine's, and odd but valid forms.
cp /etc/ld.so.conf "$c/ldconf/ld.so.conf"
for f in /etc/ld.so.conf.d/*.conf; do cp "$f" "$c/ldconf/$(basename "$f")"; done
printf '# comment\n/usr/local/lib:/opt/lib,/srv/lib\n\thwcap 1 nosegneg\ninclude sub/*.conf\ninclude /etc/ld.so.conf.d/*.conf\n/lib//\n' \
    > "$c/ldconf/mixed.conf"

# dpkg: the head of a real status file (whole paragraphs), small .list and
# .md5sums files, the diversions file.
python3 - /var/lib/dpkg/status "$c/dpkg/status" <<'PY'
import sys
paras = open(sys.argv[1], 'rb').read().split(b'\n\n')
out = b''
for p in paras:
    if len(out) + len(p) > 6000: break
    out += p + b'\n\n'
open(sys.argv[2], 'wb').write(out)
PY
for p in libc6 zlib1g; do
    f=$(ls /var/lib/dpkg/info/$p.list /var/lib/dpkg/info/$p:*.list 2>/dev/null | head -1)
    [ -n "$f" ] && head -c 4000 "$f" > "$c/dpkg/$p.list"
    f=$(ls /var/lib/dpkg/info/$p.md5sums /var/lib/dpkg/info/$p:*.md5sums 2>/dev/null | head -1)
    [ -n "$f" ] && head -n 40 "$f" > "$c/dpkg/$p.md5sums"
done
cp /var/lib/dpkg/diversions "$c/dpkg/diversions"

# manifest: `libwarden export` of a small root, unsigned and signed.
r="$t/root"
mkdir -p "$r/etc" "$r/usr/lib" "$r/lib"
echo /usr/lib > "$r/etc/ld.so.conf"
cp "$c/elf/liba.so" "$r/usr/lib/liba.so.1"
ln -s liba.so.1 "$r/usr/lib/liba.so"
cp "$c/elf/librpath.so" "$r/usr/lib/libr.so"
"$bin" --root "$r" --db "$t/db" -q init
"$bin" --root "$r" --db "$t/db" -q export > "$c/manifest/unsigned.txt"
"$bin" -q keygen "$t/keys" >/dev/null
"$bin" --root "$r" --db "$t/db2" -q init --sign-with "$t/keys/libwarden.key"
"$bin" --root "$r" --db "$t/db2" -q export --sign-with "$t/keys/libwarden.key" > "$c/manifest/signed.txt" || true

# config: every key, and rules.
cat > "$c/config/full.toml" <<X
paths = ["/srv/plugins"]
exclude = ["/usr/lib/debug/**", "**/*.tmp"]
cross_filesystems = true
threads = 2
io_threads = 8
db = "/var/lib/libwarden"
state_path = "/var/lib/libwarden-state"
manifest_exclude = ["/etc/**"]
trusted_uids = [0, 2]
audit_exec_dirs = ["/usr/bin", "/usr/sbin"]
rescan_interval = "1h30m"

[provenance]
dpkg_admin_dir = "/var/lib/dpkg"
authenticode_roots = "/etc/libwarden/roots.pem"
ima_keys = ["/etc/keys/ima.pem"]

[[provenance.rule]]
glob = "/windows/**"
accept = ["authenticode", "catalog"]
severity = "high"
ignore_case = true

[[provenance.rule]]
glob = "/usr/lib/**"
accept = ["package"]
X
printf 'rescan_interval = "90s"\n[provenance]\ndisabled = true\n' > "$c/config/small.toml"
: > "$c/config/empty.toml"

# rpmheader: the header blob rpm stores for a tiny package it installed
# into a scratch root (needs rpm, rpmbuild and sqlite3). The apkdb seed is
# written by hand from apk's documented format.
if command -v rpmbuild >/dev/null && command -v sqlite3 >/dev/null; then
    mkdir -p "$c/rpmheader" "$t/rpm/R"
    cat > "$t/rpm/t.spec" <<'X'
Name: libfoo
Version: 1.0
Release: 1
Summary: t
License: MIT
BuildArch: x86_64
%description
t
%install
mkdir -p %{buildroot}/usr/lib64 %{buildroot}/etc
echo hello > %{buildroot}/usr/lib64/libfoo.so.1
echo conf > %{buildroot}/etc/foo.conf
%files
/usr/lib64/libfoo.so.1
%config /etc/foo.conf
X
    rpmbuild -bb --define "_topdir $t/rpm/top" --define '__os_install_post %{nil}' "$t/rpm/t.spec" >/dev/null
    rpm --root "$t/rpm/R" --dbpath /var/lib/rpm --define '_db_backend sqlite' --nodeps -i \
        "$t"/rpm/top/RPMS/x86_64/*.rpm
    sqlite3 "$t/rpm/R/var/lib/rpm/rpmdb.sqlite" \
        "select writefile('$c/rpmheader/libfoo-1.0-1.x86_64', blob) from Packages where hnum=1" >/dev/null
fi
du -sh "$c"

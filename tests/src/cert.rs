//! Test PKI generated with the `openssl` CLI: a throw-away CA and one
//! server certificate (CN `lab`) whose SAN lists every declared name and
//! server address.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::sys::run_or_panic;

/// Paths of the generated PEM files.
pub(crate) struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Generates the CA and the server certificate in `dir`.
///
/// The server certificate is signed by a separate CA certificate (rather
/// than being self-signed) so that strict verifiers (rustls/webpki, which
/// refuse a CA certificate as a server certificate) accept it as well as
/// curl and OpenSSL; `ca_cert` is the file to trust.
pub(crate) fn generate(openssl: &Path, dir: &Path, names: &[String], addrs: &[IpAddr]) -> Pki {
    let cnf = dir.join("openssl.cnf");
    let mut san = String::from("[san]\n");
    for (i, n) in names.iter().enumerate() {
        let _ = writeln!(san, "DNS.{} = {n}", i + 1);
    }
    for (i, a) in addrs.iter().enumerate() {
        let _ = writeln!(san, "IP.{} = {a}", i + 1);
    }
    let config = format!(
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = lab\n\
         [ca_ext]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [leaf_ext]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n\
         subjectAltName = @san\n\
         {san}"
    );
    if let Err(e) = std::fs::write(&cnf, config) {
        panic!("network lab: cannot write {}: {e}", cnf.display());
    }
    let p = |f: &str| dir.join(f);
    let s = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let cnf_s = cnf.to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];

    let mut ca_args = vec!["req", "-x509", "-config", &cnf_s, "-extensions", "ca_ext"];
    ca_args.extend_from_slice(&ec);
    let (ca_key, ca_pem) = (s("ca.key"), s("ca.pem"));
    ca_args.extend_from_slice(&["-keyout", &ca_key, "-out", &ca_pem, "-days", "30"]);
    ca_args.extend_from_slice(&["-subj", "/CN=observer network lab CA"]);
    run_or_panic(openssl, &ca_args);

    let (key, csr, pem) = (s("server.key"), s("server.csr"), s("server.pem"));
    let mut csr_args = vec!["req", "-new", "-config", &cnf_s];
    csr_args.extend_from_slice(&ec);
    csr_args.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=lab"]);
    run_or_panic(openssl, &csr_args);

    let serial = format!(
        "0x{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1)
    );
    run_or_panic(
        openssl,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-extfile",
            &cnf_s,
            "-extensions",
            "leaf_ext",
            "-out",
            &pem,
        ],
    );
    Pki {
        ca_cert: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
    }
}

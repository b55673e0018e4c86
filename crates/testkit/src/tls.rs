//! A certificate authority of the test's own, as an organisation runs one, and a server
//! certificate it issues for 127.0.0.1: made with the openssl command line, so the files are
//! exactly what an administrator would have.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA (`ca.pem`) and a certificate it issued for `127.0.0.1` and `localhost`.
pub struct ServerCertificate {
    /// The CA's certificate, PEM: what goes into a trust store or `--ca-file`.
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerCertificate {
    /// Issues a fresh CA and server certificate, valid for two days.
    pub fn issue() -> ServerCertificate {
        let dir = tempfile::Builder::new().prefix("dropship-tls-").tempdir().expect("a temp dir");
        let root = dir.path();
        openssl(
            root,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Dropship Test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            root,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            root.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("the extensions file");
        openssl(
            root,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        ServerCertificate {
            ca: root.join("ca.pem"),
            certificate: root.join("server.pem"),
            key: root.join("server.key"),
            _dir: dir,
        }
    }

    /// A bundle of the system's roots with this CA added: what `SSL_CERT_FILE` points at to
    /// stand for a machine whose trust store holds the organisation's CA (the system store
    /// itself is not touched).
    pub fn system_bundle_with_ca(&self) -> PathBuf {
        let mut bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        bundle.extend(std::fs::read(&self.ca).expect("the CA certificate"));
        let path = self.ca.with_file_name("trust-store.pem");
        std::fs::write(&path, bundle).expect("the bundle can be written");
        path
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {} failed: {}", args[0], String::from_utf8_lossy(&output.stderr));
}

//! vsftpd — the FTP server many warehouses and hosts run — started by a test as its own
//! process on a free loopback port, serving a fresh folder: anonymous users may upload into
//! `/inbound`, rename and delete there (what an integration's login may do), optionally
//! only over TLS (explicit `AUTH TLS`, or implicit) with a self-signed certificate. Present when
//! the `vsftpd` binary is (`.ci/run` installs it and sets `TESTKIT_VSFTPD`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::tls::Certificate;

/// How vsftpd offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsftpdTls {
    None,
    /// `AUTH TLS`, required for the login and the data (`force_anon_*_ssl`).
    Explicit,
    /// TLS from the first byte (`implicit_ssl`).
    Implicit,
}

/// A running vsftpd; stopped when dropped.
pub struct Vsftpd {
    pub port: u16,
    /// The server's certificate (PEM), for a client to trust.
    pub cert_pem: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Vsftpd {
    /// The vsftpd binary: `TESTKIT_VSFTPD`, else `/usr/sbin/vsftpd` when present.
    pub fn binary() -> Option<PathBuf> {
        if let Ok(path) = std::env::var("TESTKIT_VSFTPD") {
            return Some(PathBuf::from(path));
        }
        let default = PathBuf::from("/usr/sbin/vsftpd");
        default.exists().then_some(default)
    }

    /// Whether the run must have vsftpd (CI sets `TESTKIT_VSFTPD`): then a missing or failing
    /// server fails the test instead of skipping it.
    pub fn required() -> bool {
        std::env::var_os("TESTKIT_VSFTPD").is_some()
    }

    /// Starts vsftpd, or `None` when it is not installed (and not required).
    pub fn start(tls: VsftpdTls) -> Option<Vsftpd> {
        let Some(binary) = Self::binary() else {
            assert!(
                !Self::required(),
                "TESTKIT_VSFTPD is set but names no binary"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("root");
        let inbound = root.join("inbound");
        std::fs::create_dir_all(&inbound).expect("the served folder");
        // vsftpd refuses a writable root; the anonymous user writes in /inbound only.
        set_mode(dir.path(), 0o755);
        set_mode(&root, 0o755);
        let (uid, gid) = ftp_user();
        std::os::unix::fs::chown(&inbound, Some(uid), Some(gid)).expect("chown /inbound");
        set_mode(&inbound, 0o755);

        let cert = Certificate::localhost();
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, &cert.pem).expect("certificate file");
        std::fs::write(&key_file, cert.key_pem()).expect("key file");
        let port = crate::free_port();
        let mut conf = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nanonymous_enable=YES\nlocal_enable=NO\nwrite_enable=YES\n\
             anon_upload_enable=YES\nanon_mkdir_write_enable=YES\nanon_other_write_enable=YES\n\
             anon_umask=022\nanon_root={root}\nftp_username=ftp\nno_anon_password=NO\n\
             seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\npasv_enable=YES\n\
             port_enable=YES\nconnect_from_port_20=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\n\
             xferlog_enable=NO\nlog_ftp_protocol=YES\nvsftpd_log_file={log}\n\
             dual_log_enable=NO\nsyslog_enable=NO\nhide_ids=YES\n",
            root = root.display(),
            log = dir.path().join("vsftpd.log").display(),
        );
        if tls != VsftpdTls::None {
            conf.push_str(&format!(
                "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=YES\n\
                 force_anon_data_ssl=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n\
                 ssl_tlsv1=NO\nssl_sslv2=NO\nssl_sslv3=NO\nrequire_ssl_reuse=YES\n",
                cert_file.display(),
                key_file.display()
            ));
        }
        if tls == VsftpdTls::Implicit {
            conf.push_str("implicit_ssl=YES\n");
        }
        let conf_file = dir.path().join("vsftpd.conf");
        std::fs::write(&conf_file, conf).expect("config file");
        set_mode(&conf_file, 0o600);
        let child = Command::new(&binary)
            .arg(&conf_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("vsftpd ({}) does not start: {e}", binary.display()));
        let mut server = Vsftpd {
            port,
            cert_pem: cert.pem,
            child,
            dir,
        };
        crate::wait_listening("vsftpd", server.port, &mut server.child, |child| {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            err
        });
        Some(server)
    }

    /// Where a served path (`/inbound/a.csv`) is on disk.
    pub fn path(&self, server_path: &str) -> PathBuf {
        self.dir
            .path()
            .join("root")
            .join(server_path.trim_start_matches('/'))
    }

    /// The names in a served folder, sorted.
    pub fn files(&self, server_path: &str) -> Vec<String> {
        crate::names_in(&self.path(server_path))
    }

    /// vsftpd's protocol log, for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vsftpd.log")).unwrap_or_default()
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The uid and gid of the `ftp` user vsftpd maps anonymous logins to.
fn ftp_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"ftp") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .expect("the ftp user (installed with vsftpd)")
}

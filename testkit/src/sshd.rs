//! OpenSSH's `sshd` — the SFTP server most hosts run — started by a test as its own process on
//! a free loopback port, serving SFTP only (`internal-sftp`), with a fresh Ed25519 host key and
//! a fresh client key for the user the tests run as. With a password user (`TESTKIT_SSHD_USER`
//! and `TESTKIT_SSHD_PASSWORD`, which `.ci/run` creates) password logins are offered too.
//! Present when `sshd` is installed (`.ci/run` installs it and sets `TESTKIT_SSHD`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running sshd; stopped when dropped.
pub struct Sshd {
    pub port: u16,
    /// The server's host public key (`ssh-ed25519 AAAA… `).
    pub host_key: String,
    /// Its fingerprint as `ssh-keygen -lf` prints it (`SHA256:…`).
    pub host_fingerprint: String,
    /// The user the tests log in as with `client_key`.
    pub user: String,
    /// An OpenSSH private key the server accepts for `user`.
    pub client_key: String,
    /// A folder the key user may write in.
    pub root: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn binary() -> Option<PathBuf> {
        if let Ok(path) = std::env::var("TESTKIT_SSHD") {
            return Some(PathBuf::from(path));
        }
        let default = PathBuf::from("/usr/sbin/sshd");
        default.exists().then_some(default)
    }

    /// Starts sshd, or `None` when it is not installed (and `TESTKIT_SSHD` is not set).
    pub fn start() -> Option<Sshd> {
        let Some(binary) = Self::binary() else {
            assert!(
                std::env::var_os("TESTKIT_SSHD").is_none(),
                "TESTKIT_SSHD is set but names no binary"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("the served folder");
        let host = dir.path().join("host_ed25519");
        let client = dir.path().join("client_ed25519");
        keygen(&host);
        keygen(&client);
        let host_key = read(&host.with_extension("pub"));
        let host_fingerprint = fingerprint(&host.with_extension("pub"));
        std::fs::copy(
            client.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let user = whoami();
        let password_login = std::env::var_os("TESTKIT_SSHD_PASSWORD").is_some();
        let port = crate::free_port();
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication {password}\nKbdInteractiveAuthentication no\nUsePAM no\n\
             Subsystem sftp internal-sftp\nForceCommand internal-sftp\n\
             AllowTcpForwarding no\nX11Forwarding no\nLogLevel VERBOSE\n",
            host = host.display(),
            pid = dir.path().join("sshd.pid").display(),
            keys = dir.path().join("authorized_keys").display(),
            password = if password_login { "yes" } else { "no" },
        );
        let conf_file = dir.path().join("sshd_config");
        std::fs::write(&conf_file, conf).expect("sshd_config");
        // sshd wants its privilege separation folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(dir.path().join("sshd.log")).expect("sshd.log");
        let child = Command::new(&binary)
            .args(["-D", "-e", "-f"])
            .arg(&conf_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("sshd ({}) does not start: {e}", binary.display()));
        let mut server = Sshd {
            port,
            host_key,
            host_fingerprint,
            user,
            client_key: read(&client),
            root,
            child,
            dir,
        };
        let log = server.dir.path().join("sshd.log");
        crate::wait_listening("sshd", server.port, &mut server.child, |_| {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        Some(server)
    }

    /// The password user, when the machine has one for the tests.
    pub fn password_user() -> Option<(String, String)> {
        Some((
            std::env::var("TESTKIT_SSHD_USER").ok()?,
            std::env::var("TESTKIT_SSHD_PASSWORD").ok()?,
        ))
    }

    /// A folder the password user owns (for its uploads), made under the served folder.
    pub fn folder_for(&self, user: &str, name: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).expect("a folder");
        let status = Command::new("chown")
            .arg(user)
            .arg(&path)
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown {user} {}", path.display());
        path
    }

    /// The names in a folder on disk, sorted.
    pub fn files(&self, path: &Path) -> Vec<String> {
        crate::names_in(path)
    }

    /// sshd's log, for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Another host key, as a server that was replaced (or someone in the way) would show.
    pub fn other_host_key() -> (String, String) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = dir.path().join("other");
        keygen(&key);
        (
            read(&key.with_extension("pub")),
            fingerprint(&key.with_extension("pub")),
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "wharf-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public)
        .output()
        .expect("ssh-keygen runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

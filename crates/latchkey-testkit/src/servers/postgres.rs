//! A PostgreSQL server of a test's own, in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, unique_name};

/// How long `initdb` plus start-up may take before the server counts as not
/// coming up; both take about a second here, more on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A `postgres` of a test's own on a free loopback port, with a fresh cluster
/// (`initdb`, user `postgres`, trust authentication) in a temporary directory,
/// and its Unix socket there too. Stopped, and the directory removed, on drop.
///
/// The binaries are found in the newest `/usr/lib/postgresql/*/bin` (Debian's
/// layout), else on `PATH`. As root, the server runs as the `postgres` user,
/// since PostgreSQL refuses to run as root.
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Starts a server that accepts plain-text connections from 127.0.0.1.
    ///
    /// # Errors
    ///
    /// When the PostgreSQL binaries are missing (the message says how to get
    /// them), or the server does not come up within 30 seconds.
    pub fn start() -> std::io::Result<Self> {
        Self::launch("host all all 127.0.0.1/32 trust\n", &[])
    }

    /// Starts a server that accepts only TLS connections from 127.0.0.1, with
    /// the server certificate of `certs`; no client certificate is asked for.
    ///
    /// # Errors
    ///
    /// As for [`PrivatePostgres::start`].
    #[cfg(feature = "tls")]
    pub fn start_tls(certs: &crate::tls::TestCertificates) -> std::io::Result<Self> {
        Self::launch(
            "hostssl all all 127.0.0.1/32 trust\n",
            &[
                ("server.crt", certs.cert_pem().as_bytes()),
                ("server.key", certs.key_pem().as_bytes()),
            ],
        )
    }

    /// The server's URL, as user `postgres` on database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `hba` is the cluster's `pg_hba.conf` for TCP connections; `tls_files`
    /// are the certificate and key, copied into the data directory, where the
    /// server can read them and only it (it refuses a key others can read).
    fn launch(hba: &str, tls_files: &[(&str, &[u8])]) -> std::io::Result<Self> {
        let bin = bin_dir()?;
        let owner = server_user()?;
        let dir = std::env::temp_dir().join(unique_name("latchkey_postgres"));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port: free_port()?,
            dir,
            child: None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))?;
        }
        let data = server.dir.join("data");
        let output = server
            .command(&bin.join("initdb"), owner)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !output.status.success() {
            return Err(std::io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{hba}"),
        )?;
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={}", server.port),
            format!("unix_socket_directories={}", server.dir.display()),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
        ];
        for (name, contents) in tls_files {
            let path = data.join(name);
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
        }
        if !tls_files.is_empty() {
            settings.extend([
                "ssl=on".to_owned(),
                "ssl_cert_file=server.crt".to_owned(),
                "ssl_key_file=server.key".to_owned(),
            ]);
        }
        let log = std::fs::File::create(server.dir.join("server.log"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(server.dir.join("server.log"), Some(uid), Some(gid))?;
        }
        let mut command = server.command(&bin.join("postgres"), owner);
        command.arg("-D").arg(&data);
        for setting in &settings {
            command.args(["-c", setting]);
        }
        server.child = Some(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()?,
        );
        server.wait_until_ready(&bin)?;
        Ok(server)
    }

    /// `program`, run as the server's user, in the server's directory (the
    /// user may have no access to the test's own).
    fn command(&self, program: &Path, owner: Option<(u32, u32)>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = owner {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        command
    }

    /// Waits until the server accepts connections, as `pg_isready` tells: its
    /// port opens before it has finished starting up.
    fn wait_until_ready(&mut self, bin: &Path) -> std::io::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(std::io::Error::other(format!(
                    "postgres exited with {status}: {}",
                    self.log()
                )));
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()?;
            if ready.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "postgres on 127.0.0.1:{} did not come up within {START_LIMIT:?}: {}",
                self.port,
                self.log()
            ),
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT is the immediate shutdown: the postmaster takes its
            // backends down with it, which SIGKILL would leave behind.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `postgres`.
fn bin_dir() -> std::io::Result<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no initdb found in /usr/lib/postgresql/*/bin or on PATH; install PostgreSQL \
                 (Debian: apt-get install postgresql) or run scripts/test.sh, which does",
            )
        })
}

/// As root, the uid and gid of the `postgres` user to run the server as;
/// otherwise `None`, and the server runs as the current user.
fn server_user() -> std::io::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt as _;

    let running_as_root = std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == 0);
    if !running_as_root {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "PostgreSQL refuses to run as root and there is no `postgres` user to run it as",
            )
        })
}

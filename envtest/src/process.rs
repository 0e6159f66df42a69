//! One control-plane process, with its log in a file, stopped cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Error;

pub struct Managed {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl Managed {
    /// Spawns `bin` with its output in `<dir>/<name>.log`. Under `setpriv --pdeathsig` when
    /// available, so that the kernel kills it if this process dies without cleaning up
    /// (a test binary killed by a signal, say): no process is ever left behind.
    pub fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let child = Self::start(name, bin, args, dir, &log)?;
        Ok(Managed {
            name,
            child,
            log,
            bin: bin.to_path_buf(),
            args: args.to_vec(),
            dir: dir.to_path_buf(),
        })
    }

    /// Starts the process again, with the same arguments (after [`Managed::stop`]).
    pub fn respawn(&mut self) -> Result<(), Error> {
        self.child = Self::start(self.name, &self.bin, &self.args, &self.dir, &self.log)?;
        Ok(())
    }

    fn start(
        name: &'static str,
        bin: &Path,
        args: &[String],
        dir: &Path,
        log: &Path,
    ) -> Result<Child, Error> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| Error::Write {
                path: log.to_path_buf(),
                source,
            })?;
        let err = out.try_clone().map_err(|source| Error::Write {
            path: log.to_path_buf(),
            source,
        })?;
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.arg("--pdeathsig=KILL").arg("--").arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn { name, source })
    }

    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status: status.to_string(),
                log: self.log.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps the child.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

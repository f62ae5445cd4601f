//! Booting a real kernel under QEMU (TCG) with an initramfs that holds
//! busybox, the target glibc from the Debian cross packages, and the files to
//! run; the init script's output comes back from the serial console.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::setup::{run, GLIBC_LIBS};
use crate::Arch;

const BEGIN: &str = "@@REALKERNEL-BEGIN@@";
const END: &str = "@@REALKERNEL-END@@";

/// A staged root filesystem, turned into an initramfs for each boot.
pub struct Initramfs {
    root: PathBuf,
}

impl Initramfs {
    /// Stages busybox and the cross glibc for `arch` (and for the kernel's
    /// architecture, if another) under `root` (emptied first).
    pub fn new(root: &Path, arch: Arch, busybox: &Path) -> Result<Initramfs> {
        let _ = fs_err::remove_dir_all(root);
        for dir in ["bin", "lib", "lib64", "proc", "sys", "dev", "tmp", "t"] {
            fs_err::create_dir_all(root.join(dir))?;
        }
        fs_err::copy(busybox, root.join("bin/busybox")).context("copy busybox")?;
        for applet in ["sh", "mount", "echo", "cat", "ls", "cp", "timeout"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        install_glibc(root, arch)?;
        // The VM's own programs (pagefit) are the kernel's architecture.
        if arch.kernel_arch() != arch {
            install_glibc(root, arch.kernel_arch())?;
        }
        Ok(Initramfs { root: root.to_path_buf() })
    }

    /// Copies `src` (a file or a directory's contents) to `/t/<dest>`.
    pub fn add(&self, src: &Path, dest: &str) -> Result<()> {
        let target = self.root.join("t").join(dest);
        if src.is_dir() {
            fs_err::create_dir_all(&target)?;
            run(Command::new("cp").arg("-a").arg(format!("{}/.", src.display())).arg(&target))?;
        } else {
            fs_err::create_dir_all(target.parent().unwrap_or(&self.root))?;
            fs_err::copy(src, &target).with_context(|| format!("copy {}", src.display()))?;
        }
        Ok(())
    }

    /// Boots `kernel` with this root and `script` (busybox sh, run in /t) as
    /// the work, and returns what the script printed.
    pub fn boot(&self, arch: Arch, kernel: &Path, script: &str, timeout: Duration) -> Result<String> {
        fs_err::write(self.root.join("t/work.sh"), script)?;
        let init = format!(
            "#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox mount -t sysfs sys /sys\n\
             /bin/busybox mount -t tmpfs tmp /tmp\ncd /t\necho {BEGIN}\n\
             echo \"@@ kernel $(/bin/busybox uname -m) page size $(/bin/busybox awk '/KernelPageSize/{{print $2; exit}}' /proc/self/smaps) kB\"\n/bin/sh /t/work.sh\necho {END} $?\n/bin/busybox poweroff -f\n"
        );
        let init_path = self.root.join("init");
        fs_err::write(&init_path, init)?;
        fs_err::set_permissions(&init_path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let image = self.root.with_extension("cpio");
        // An uncompressed newc archive: every Debian kernel takes it, and it costs no compression time.
        run(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            self.root.display(),
            image.display()
        )))?;
        let mut qemu = match arch.kernel_arch() {
            Arch::Aarch64 | Arch::Armhf => {
                let mut c = Command::new("qemu-system-aarch64");
                c.args(["-M", "virt", "-cpu", "max", "-smp", "2", "-append", "console=ttyAMA0 rdinit=/init quiet panic=-1"]);
                c
            }
            Arch::Ppc64le => {
                let mut c = Command::new("qemu-system-ppc64");
                c.args(["-M", "pseries", "-cpu", "power9", "-append", "console=hvc0 rdinit=/init quiet panic=-1"]);
                c
            }
        };
        qemu.args(["-m", "2048", "-nographic", "-no-reboot", "-kernel"]).arg(kernel).arg("-initrd").arg(&image);
        let output = Command::new("timeout")
            .arg(timeout.as_secs().to_string())
            .args(std::iter::once(qemu.get_program()).chain(qemu.get_args()))
            .stdin(Stdio::null())
            .output()
            .context("cannot start qemu")?;
        let console = String::from_utf8_lossy(&output.stdout).replace('\r', "");
        let Some(start) = console.find(BEGIN) else {
            bail!("the {} VM never reached init (exit {}); console tail:\n{}", arch.name(), output.status, tail(&console));
        };
        let body = &console[start + BEGIN.len()..];
        let Some(end) = body.find(END) else {
            bail!("the {} VM did not finish its work within {timeout:?}; console tail:\n{}", arch.name(), tail(&console));
        };
        // Kernel messages ("[    1.234] ...") can interleave with the output.
        let text: Vec<&str> = body[..end].lines().filter(|l| !is_kernel_message(l)).collect();
        Ok(text.join("\n").trim_start().to_string() + "\n")
    }
}

/// Copies the glibc the VM runs `arch`'s programs with into `root`'s `/lib`.
fn install_glibc(root: &Path, arch: Arch) -> Result<()> {
    let triple = arch.triple();
    let sysroot = arch.vm_sysroot().join("lib");
    let (interp_dir, interp) = arch.interpreter();
    let libdir = root.join("lib").join(triple);
    fs_err::create_dir_all(&libdir)?;
    // As Debian lays it out: ld.so in the multiarch directory, where a
    // new link namespace (an LD_AUDIT module's) finds it by soname, and
    // the PT_INTERP path a symlink to that same file.
    fs_err::copy(sysroot.join(interp), libdir.join(interp))
        .with_context(|| format!("copy {interp} from {}: is the {triple} cross glibc installed?", sysroot.display()))?;
    let from_interp_dir = if interp_dir == "lib" { PathBuf::from(triple) } else { Path::new("../lib").join(triple) };
    std::os::unix::fs::symlink(from_interp_dir.join(interp), root.join(interp_dir).join(interp))?;
    for lib in GLIBC_LIBS {
        if sysroot.join(lib).exists() {
            fs_err::copy(sysroot.join(lib), libdir.join(lib))?;
        }
    }
    Ok(())
}

fn is_kernel_message(line: &str) -> bool {
    line.trim_start().strip_prefix('[').and_then(|rest| rest.split_once(']')).is_some_and(|(stamp, _)| stamp.trim().parse::<f64>().is_ok())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

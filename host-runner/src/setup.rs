//! What the commands share before a VM runs: the kernel and root image ready to boot,
//! the base environment and VM request every job starts from, disks and scratch
//! filesystems attached, a named target applied to the options.

use crate::args::{KernelArgs, RunArgs, VmArgs};
use crate::caps::HostCaps;
use crate::launcher::VmRequest;
use crate::targets::{self, KernelChoice, Target};
use crate::vmplan::DiskAttach;
use crate::{image, kernel, scratch, UsageError};
use anyhow::{Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm_wire::{DiskMount, JobSpec};

/// Kernel and root image, ready to boot.
pub struct Artifacts {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Root image.
    pub root_image: PathBuf,
    /// Directory of the static guest binaries.
    pub guest_bin_dir: PathBuf,
}

/// Builds or finds the kernel the arguments ask for.
pub fn resolve_kernel(args: &KernelArgs) -> Result<PathBuf> {
    if let Some(k) = &args.kernel {
        if !k.is_file() {
            return Err(UsageError(format!("--kernel {}: no such file", k.display())).into());
        }
        return Ok(k.clone());
    }
    let source = match &args.kernel_src {
        Some(dir) => {
            if !dir.join("Makefile").is_file() {
                return Err(UsageError(format!(
                    "--kernel-src {}: not a kernel tree (no Makefile)",
                    dir.display()
                ))
                .into());
            }
            kernel::KernelSource::Tree(dir.clone())
        }
        None => kernel::KernelSource::Tarball(kernel::DEBIAN_TARBALL.into()),
    };
    kernel::ensure_kernel(&kernel_request(source, args.stock, args.debug_kernel)?)
}

/// The build of `source`, with the project's series unless `stock`.
pub fn kernel_request(
    source: kernel::KernelSource,
    stock: bool,
    debug: bool,
) -> Result<kernel::KernelRequest> {
    let patches = if stock {
        Vec::new()
    } else {
        kernel::patch_series(&image::workspace_dir().join("kernel/patches"))?
    };
    Ok(kernel::KernelRequest {
        source,
        patches,
        fragment: if debug {
            kernel::ConfigFragment::microvm_debug()?
        } else {
            kernel::ConfigFragment::microvm()?
        },
        debug,
    })
}

/// Installs what is missing and builds or reuses the kernel and root image.
pub fn prepare(kernel_args: &KernelArgs) -> Result<Artifacts> {
    prepare_with(kernel_args, image::build_guest_binaries()?)
}

/// [`prepare`] around guest binaries already built into `guest_bin_dir`.
pub fn prepare_with(kernel_args: &KernelArgs, guest_bin_dir: PathBuf) -> Result<Artifacts> {
    crate::deps::ensure(crate::deps::VM)?;
    let kernel = resolve_kernel(kernel_args)?;
    let root_image = image::ensure_root_image(&image::root_image_inputs(&guest_bin_dir)?)?;
    Ok(Artifacts {
        kernel,
        root_image,
        guest_bin_dir,
    })
}

/// Parses `HOSTDIR:GUESTDIR`.
pub fn parse_disk(spec: &str) -> Result<(PathBuf, PathBuf)> {
    let (host, guest) = spec
        .rsplit_once(':')
        .ok_or_else(|| UsageError(format!("--disk {spec}: expected HOSTDIR:GUESTDIR")))?;
    if host.is_empty() || !guest.starts_with('/') {
        return Err(UsageError(format!(
            "--disk {spec}: expected HOSTDIR:GUESTDIR with an absolute GUESTDIR"
        ))
        .into());
    }
    if !Path::new(host).is_dir() {
        return Err(UsageError(format!("--disk {spec}: {host} is not a directory")).into());
    }
    Ok((PathBuf::from(host), PathBuf::from(guest)))
}

/// Parses `--scratch` specifications (usage errors name the bad one).
pub fn parse_scratch(specs: &[String]) -> Result<Vec<scratch::ScratchSpec>> {
    specs
        .iter()
        .map(|s| scratch::parse(s).map_err(|e| UsageError(format!("--{e}")).into()))
        .collect()
}

/// Makes the scratch filesystems of `specs` in a new temporary directory, adds their
/// mounts to `job` and their attachments to `disks`. The images live as long as the
/// returned directory, which the caller keeps until the VM has ended.
pub fn attach_scratch(
    specs: &[scratch::ScratchSpec],
    job: &mut JobSpec,
    disks: &mut Vec<DiskAttach>,
) -> Result<Option<tempfile::TempDir>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("uring-getdents-scratch.")
        .permissions(crate::cache::private_permissions())
        .tempdir()
        .context("temporary directory for scratch disks")?;
    for (i, s) in specs.iter().enumerate() {
        let serial = format!("scratch{i}");
        disks.push(DiskAttach {
            image: scratch::create(s, dir.path(), i)?,
            serial: serial.clone(),
            read_only: false,
            bypass_host_cache: false,
        });
        job.disks.push(DiskMount {
            serial,
            target: s.target.as_os_str().as_bytes().to_vec(),
            fstype: s.fstype.clone(),
            read_only: false,
        });
    }
    Ok(Some(dir))
}

/// The environment every job starts with.
pub fn base_env() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"PATH".to_vec(), b"/bin:/sbin:/usr/bin:/usr/sbin".to_vec()),
        (b"HOME".to_vec(), b"/root".to_vec()),
        (b"TERM".to_vec(), b"dumb".to_vec()),
    ]
}

/// Refuses a job the guest could not receive: its message must fit in one frame of at
/// most [`vm_wire::MAX_FRAME`] bytes, and the guest would otherwise refuse it only
/// after the VM has booted, as a setup failure of the VM. Only a user's command can be
/// that large; the test and bench jobs are a name and a few variables.
pub fn check_job_size(spec: &JobSpec) -> Result<()> {
    // The frame's length prefix is not part of its body.
    let body = vm_wire::HostMsg::Job(spec.clone()).encode().len() - 4;
    if body > vm_wire::MAX_FRAME {
        return Err(UsageError(format!(
            "the job is too large to send to the guest: its command, environment and \
             working directory take {body} bytes, the limit is {} bytes",
            vm_wire::MAX_FRAME
        ))
        .into());
    }
    Ok(())
}

/// A VM request from VM options, artifacts and a job.
pub fn vm_request(
    vm: &VmArgs,
    art: &Artifacts,
    caps: &HostCaps,
    spec: JobSpec,
) -> Result<VmRequest> {
    if vm.cpus == 0 || vm.mem < 64 || vm.timeout == 0 {
        return Err(
            UsageError("--cpus and --timeout must be positive, --mem at least 64".into()).into(),
        );
    }
    Ok(VmRequest {
        spec,
        timeout: Duration::from_secs(vm.timeout),
        accel: caps.accel(vm.accel),
        mem_mib: vm.mem,
        cpus: vm.cpus,
        kernel: art.kernel.clone(),
        root_image: art.root_image.clone(),
        disks: Vec::new(),
        shares: Vec::new(),
        channel: vm.channel,
        verbose_kernel: vm.verbose_kernel,
        kernel_args: vm.kernel_args.clone(),
        stop_signals_to_job: true,
    })
}

/// The VM options of this target in place of `vm`'s kernel, vCPUs and memory (the
/// command line cannot also set those: clap refuses them with `--target`).
pub fn apply_target_vm(target: &Target, vm: &mut VmArgs) {
    vm.kernel = match &target.kernel {
        KernelChoice::Patched => KernelArgs::default(),
        KernelChoice::Stock => KernelArgs {
            stock: true,
            ..KernelArgs::default()
        },
        KernelChoice::Debug => KernelArgs {
            debug_kernel: true,
            ..KernelArgs::default()
        },
        KernelChoice::Tree(dir) => KernelArgs {
            kernel_src: Some(dir.clone()),
            ..KernelArgs::default()
        },
        KernelChoice::File(f) => KernelArgs {
            kernel: Some(f.clone()),
            ..KernelArgs::default()
        },
    };
    if let Some(c) = target.cpus {
        vm.cpus = c;
    }
    if let Some(m) = target.mem {
        vm.mem = m;
    }
}

/// `run` with this target: its VM, its disks, shares and scratch filesystems
/// before the command line's, and its command unless the command line gives one.
pub fn apply_target_run(target: &Target, run: &mut RunArgs) {
    apply_target_vm(target, &mut run.vm);
    let before = |mine: &[String], given: &mut Vec<String>| {
        let mut all = mine.to_vec();
        all.append(given);
        *given = all;
    };
    before(&target.disks, &mut run.disks);
    before(&target.shares, &mut run.shares);
    before(&target.scratch, &mut run.scratch);
    if run.command.is_empty() {
        if let Some(c) = &target.command {
            run.command = c.iter().map(Into::into).collect();
        }
    }
}

/// The VM options with `--target` applied, if one was given.
pub fn resolve_target_vm(vm: &VmArgs) -> Result<VmArgs> {
    let mut vm = vm.clone();
    if let Some(name) = vm.target.clone() {
        let targets = targets::load(vm.targets.as_deref())?;
        apply_target_vm(targets::find(&targets, &name)?, &mut vm);
    }
    Ok(vm)
}

/// The run options with `--target` applied, if one was given.
pub fn resolve_target_run(run: &RunArgs) -> Result<RunArgs> {
    let mut run = run.clone();
    if let Some(name) = run.vm.target.clone() {
        let targets = targets::load(run.vm.targets.as_deref())?;
        apply_target_run(targets::find(&targets, &name)?, &mut run);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose encoded message body is exactly `body` bytes.
    fn job_of_size(body: usize) -> JobSpec {
        let mut spec = JobSpec {
            argv: vec![Vec::new()],
            ..JobSpec::default()
        };
        let empty = vm_wire::HostMsg::Job(spec.clone()).encode().len() - 4;
        spec.argv[0] = vec![b'a'; body - empty];
        spec
    }

    #[test]
    fn a_job_larger_than_a_frame_is_a_usage_error() {
        assert!(check_job_size(&job_of_size(vm_wire::MAX_FRAME)).is_ok());
        let err = check_job_size(&job_of_size(vm_wire::MAX_FRAME + 1)).unwrap_err();
        assert_eq!(crate::exit_code_for(&err), crate::EXIT_USAGE, "{err:#}");
        assert!(err.to_string().contains("too large"), "{err:#}");
        // The guest's decoder draws the line at the same place.
        let decodes = |body: usize| {
            let mut fb = vm_wire::FrameBuffer::new();
            fb.push(&vm_wire::HostMsg::Job(job_of_size(body)).encode());
            fb.next_frame().is_ok()
        };
        assert!(decodes(vm_wire::MAX_FRAME));
        assert!(!decodes(vm_wire::MAX_FRAME + 1));
    }

    use crate::targets::tests::SAMPLE as TARGETS;

    #[test]
    fn a_target_sets_the_vm_and_adds_to_the_run() {
        use clap::Parser;
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            run: RunArgs,
        }
        let t = targets::parse(TARGETS, Path::new("/proj")).unwrap();
        let mut run = Run::parse_from(["run-in-vm", "--disk", "/x:/x", "--target", "tree"]).run;
        apply_target_run(&t[2], &mut run);
        assert_eq!(run.vm.kernel.kernel_src, Some(PathBuf::from("/proj/linux")));
        assert_eq!(run.disks, ["/proj/data:/data", "/abs:/abs", "/x:/x"]);
        assert!(run.command.is_empty());
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock", "echo", "hi"]).run;
        apply_target_run(&t[1], &mut run);
        assert!(run.vm.kernel.stock);
        assert_eq!(
            run.command,
            ["echo", "hi"],
            "the command line's command wins"
        );
        let mut run = Run::parse_from(["run-in-vm", "--target", "stock"]).run;
        apply_target_run(&t[1], &mut run);
        assert_eq!(run.command, ["true"]);
        let mut run = Run::parse_from(["run-in-vm", "--target", "zeta"]).run;
        apply_target_run(&t[0], &mut run);
        assert_eq!((run.vm.cpus, run.vm.mem), (2, 1024));
    }

    #[test]
    fn the_command_line_cannot_also_choose_what_the_target_does() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Run {
            #[command(flatten)]
            run: RunArgs,
        }
        for flag in [
            &["--cpus", "2"][..],
            &["--mem", "128"],
            &["--stock"],
            &["--kernel", "/k"],
        ] {
            let mut argv = vec!["run-in-vm", "--target", "x"];
            argv.extend_from_slice(flag);
            argv.push("true");
            assert!(Run::try_parse_from(&argv).is_err(), "{flag:?}");
        }
    }
}

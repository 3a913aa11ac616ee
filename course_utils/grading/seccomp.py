"""The seccomp filter of a sandbox: a classic BPF program for bubblewrap's `--seccomp FD`.

It refuses (EPERM) the system calls a notebook has no use for and an attacker does: tracing or
reading other processes (ptrace, process_vm_*), the kernel keyring, new or joined namespaces
(unshare, setns, clone with a CLONE_NEW* flag), mounts, BPF, perf events, userfaultfd, io_uring,
kernel modules, kexec, clocks and reboot. clone3 answers ENOSYS, so the C library falls back to
clone, whose flags the filter can see. Calls of another ABI (32-bit on x86-64, x32) kill the process.
"""

from __future__ import annotations

import errno
import platform
import struct

# classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
LD_ABS_W, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, KILL_PROCESS, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
NEW_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
X32_BIT = 0x40000000

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "keyctl", "add_key", "request_key",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "init_module",
    "finit_module", "delete_module", "kexec_load", "kexec_file_load", "open_by_handle_at", "acct",
    "swapon", "swapoff", "reboot", "settimeofday", "clock_settime", "syslog", "quotactl", "vhangup",
)  # fmt: skip
# (audit arch, syscall numbers) per machine: x86-64 from arch/x86/entry/syscalls/syscall_64.tbl,
# arm64 from include/uapi/asm-generic/unistd.h
ARCHES = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272, "setns": 308,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "open_by_handle_at": 304,
        "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169, "settimeofday": 164,
        "clock_settime": 227, "syslog": 103, "quotactl": 179, "vhangup": 153, "clone": 56,
    }),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "keyctl": 219, "add_key": 217, "request_key": 218, "unshare": 97, "setns": 268,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "open_by_handle_at": 265,
        "acct": 89, "swapon": 224, "swapoff": 225, "reboot": 142, "settimeofday": 170,
        "clock_settime": 112, "syslog": 116, "quotactl": 60, "vhangup": 58, "clone": 220,
    }),
}  # fmt: skip
COMMON = {  # the same number on both (the unified table from 5.1 on)
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "clone3": 435, "mount_setattr": 442, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427,
}  # fmt: skip


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for `machine` (default: this one) as bytes, or None for a machine it does not know."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        return None
    audit_arch, numbers = ARCHES[machine]
    numbers = numbers | COMMON
    ops = [_op(LD_ABS_W, 4), _op(JEQ, audit_arch, jt=1), _op(RET, KILL_PROCESS), _op(LD_ABS_W, 0)]
    if machine == "x86_64":
        ops += [_op(JGE, X32_BIT, jf=1), _op(RET, KILL_PROCESS)]
    for name in DENIED:
        ops += [_op(JEQ, numbers[name], jf=1), _op(RET, ERRNO | errno.EPERM)]
    ops += [_op(JEQ, numbers["clone3"], jf=1), _op(RET, ERRNO | errno.ENOSYS)]
    ops += [_op(JEQ, numbers["clone"], jf=3), _op(LD_ABS_W, 16)]  # the low half of the flags
    ops += [_op(JSET, NEW_NAMESPACE_FLAGS, jf=1), _op(RET, ERRNO | errno.EPERM)]
    ops += [_op(RET, ALLOW)]
    return b"".join(ops)

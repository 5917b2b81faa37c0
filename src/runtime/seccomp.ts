// Seccomp profiles: the RuntimeDefault profile (an allow-list in the spirit of moby's/containerd's default.json:
// everything not listed fails with EPERM) and the translation of a Docker-format profile — with `archMap` and
// capability/arch-conditional `includes`/`excludes` — into the plain OCI form for this host and capability set.
// Localhost profiles from the kubelet use the same Docker format, so both go through `resolveSeccompProfile`.
//
// Simplifications against moby's profile: kernels older than 4.8 are not supported (ptrace and friends are in the
// base list instead of behind `minKernel`), s390/ppc/mips entries are dropped, and io_uring stays blocked (as in
// current moby and containerd). Unknown syscall names are harmless: runc and crun skip names libseccomp cannot resolve.
import { readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { errorMessage, invalidArgument } from '../common/errors';
import type { OciSeccomp, OciSeccompArg, OciSeccompSyscall, SeccompAction, SeccompOperator } from './oci-spec';

/** A rule in Docker's profile format: applies only when `includes` all hold and no `excludes` entry does. */
export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: OciSeccompArg[];
  includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
  excludes?: { caps?: string[]; arches?: string[] };
}

export interface SeccompProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  archMap?: { architecture: string; subArchitectures: string[] }[];
  architectures?: string[];
  flags?: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;
const MAX_PROFILE_BYTES = 4 * 1024 * 1024;

// Syscalls any process may make. Names from every supported ABI (x86_64, its x86/x32 compat modes, aarch64, arm).
const BASE = `
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64
close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat
faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs
fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill kcmp
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr
mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl
msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat
openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64
prctl pread64 preadv preadv2 prlimit64 process_mrelease process_vm_readv process_vm_writev pselect6 pselect6_time64
ptrace pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid
setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack
signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
`;

// Syscalls allowed only when the process holds a capability: without it the kernel would refuse most of them
// anyway, but these are the calls with a history of kernel bugs reachable before the capability check.
const BY_CAPABILITY: Record<string, string> = {
  CAP_DAC_READ_SEARCH: 'open_by_handle_at',
  CAP_SYS_ADMIN: `bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
    move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2
    unshare`,
  CAP_SYS_BOOT: 'reboot',
  CAP_SYS_CHROOT: 'chroot',
  CAP_SYS_MODULE: 'delete_module init_module finit_module',
  CAP_SYS_PACCT: 'acct',
  CAP_SYS_PTRACE: 'pidfd_getfd process_madvise',
  CAP_SYS_RAWIO: 'iopl ioperm',
  CAP_SYS_TIME: 'settimeofday stime clock_settime clock_settime64',
  CAP_SYS_TTY_CONFIG: 'vhangup',
  CAP_SYS_NICE: 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node',
  CAP_SYSLOG: 'syslog',
  CAP_BPF: 'bpf',
  CAP_PERFMON: 'perf_event_open',
};

// clone(2) flags that create namespaces: without CAP_SYS_ADMIN, clone is allowed only when none is set.
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const AF_VSOCK = 40;

const words = (s: string): string[] => s.split(/\s+/).filter((w) => w !== '');

function buildRuntimeDefault(): SeccompProfile {
  const allow = (names: string, extra: Partial<SeccompRule> = {}): SeccompRule => ({
    names: words(names),
    action: 'SCMP_ACT_ALLOW',
    ...extra,
  });
  const syscalls: SeccompRule[] = [
    allow(BASE),
    // personality(2): only the harmless personas (Linux, 32-bit address space, query).
    ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((value) =>
      allow('personality', { args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] }),
    ),
    // socket(2) except AF_VSOCK, which reaches the host's hypervisor sockets.
    allow('socket', { args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }] }),
    allow('arch_prctl modify_ldt', { includes: { arches: ['amd64', 'x32', 'x86'] } }),
    allow('arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls', {
      includes: { arches: ['arm', 'arm64'] },
    }),
    allow('clone', {
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    // clone3 passes its flags in memory seccomp cannot inspect: ENOSYS makes libc fall back to clone.
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
    ...Object.entries(BY_CAPABILITY).map(([cap, names]) => allow(names, { includes: { caps: [cap] } })),
  ];
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    archMap: [
      { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
      { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    ],
    syscalls,
  };
}

let runtimeDefault: SeccompProfile | undefined;

/** The RuntimeDefault profile in Docker format (all arches, all conditional groups), for inspection and tests. */
export function runtimeDefaultProfile(): SeccompProfile {
  runtimeDefault ??= buildRuntimeDefault();
  return runtimeDefault;
}

/** The RuntimeDefault profile for this host, given the container's capability set (e.g. bounding caps). */
export function runtimeDefaultSeccomp(caps: string[]): OciSeccomp {
  return resolveSeccompProfile(runtimeDefaultProfile(), caps);
}

// ---- Docker format → OCI --------------------------------------------------------------------------------------

/** Go's GOARCH name for this host, which Docker-format `includes.arches` use. */
export function hostGoArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' };
  return map[process.arch] ?? process.arch;
}

const NATIVE_SCMP_ARCH: Record<string, string> = { amd64: 'SCMP_ARCH_X86_64', arm64: 'SCMP_ARCH_AARCH64' };

function kernelAtLeast(min: string, have: string): boolean {
  const parse = (v: string): number[] => (v.match(/^(\d+)\.(\d+)/)?.slice(1) ?? ['0', '0']).map(Number);
  const [a = 0, b = 0] = parse(have);
  const [x = 0, y = 0] = parse(min);
  return a > x || (a === x && b >= y);
}

/**
 * Resolve a Docker-format profile for this host: pick the native architecture's `archMap` entry and keep only the
 * rules whose `includes`/`excludes` match `caps` (names like "CAP_SYS_ADMIN"), the host arch and kernel.
 */
export function resolveSeccompProfile(profile: SeccompProfile, caps: string[], kernel = release()): OciSeccomp {
  const arch = hostGoArch();
  const held = new Set(caps);
  const out: OciSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  const native = NATIVE_SCMP_ARCH[arch];
  const entry = profile.archMap?.find((m) => m.architecture === native);
  if (entry) out.architectures = [entry.architecture, ...entry.subArchitectures];
  else if (profile.architectures?.length) out.architectures = [...profile.architectures];
  if (profile.flags?.length) out.flags = [...profile.flags];
  if (profile.listenerPath) out.listenerPath = profile.listenerPath;
  if (profile.listenerMetadata) out.listenerMetadata = profile.listenerMetadata;

  const syscalls: OciSeccompSyscall[] = [];
  for (const rule of profile.syscalls) {
    const inc = rule.includes;
    const exc = rule.excludes;
    if (inc?.caps?.some((c) => !held.has(c))) continue;
    if (inc?.arches?.length && !inc.arches.includes(arch)) continue;
    if (inc?.minKernel && !kernelAtLeast(inc.minKernel, kernel)) continue;
    if (exc?.caps?.some((c) => held.has(c))) continue;
    if (exc?.arches?.includes(arch)) continue;
    const call: OciSeccompSyscall = { names: [...rule.names], action: rule.action };
    if (rule.errnoRet !== undefined) call.errnoRet = rule.errnoRet;
    if (rule.args?.length) call.args = rule.args.map((a) => ({ ...a }));
    syscalls.push(call);
  }
  out.syscalls = syscalls;
  return out;
}

// ---- loading a Localhost profile ------------------------------------------------------------------------------

const ACTIONS: readonly string[] = [
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
];
const OPERATORS: readonly string[] = [
  'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ',
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validate a parsed profile (Docker or OCI format); `where` names it in errors. */
export function parseSeccompProfile(doc: unknown, where: string): SeccompProfile {
  const fail = (field: string, what: string): Error => invalidArgument(`seccomp profile ${where}: ${field}: ${what}`);
  const strings = (v: unknown, field: string): string[] | undefined => {
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw fail(field, 'must be an array of strings');
    return [...v];
  };
  const action = (v: unknown, field: string): SeccompAction => {
    if (typeof v !== 'string' || !ACTIONS.includes(v)) throw fail(field, `unknown action ${JSON.stringify(v)}`);
    return v as SeccompAction;
  };
  const uint = (v: unknown, field: string): number | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw fail(field, 'must be a non-negative integer');
    return v;
  };
  if (!isObj(doc)) throw fail('(root)', 'must be a JSON object');

  const profile: SeccompProfile = { defaultAction: action(doc.defaultAction, 'defaultAction'), syscalls: [] };
  const errnoRet = uint(doc.defaultErrnoRet, 'defaultErrnoRet');
  if (errnoRet !== undefined) profile.defaultErrnoRet = errnoRet;
  const arches = strings(doc.architectures, 'architectures');
  if (arches) profile.architectures = arches;
  const flags = strings(doc.flags, 'flags');
  if (flags) profile.flags = flags;
  if (typeof doc.listenerPath === 'string') profile.listenerPath = doc.listenerPath;
  if (typeof doc.listenerMetadata === 'string') profile.listenerMetadata = doc.listenerMetadata;
  if (doc.archMap !== undefined && doc.archMap !== null) {
    if (!Array.isArray(doc.archMap)) throw fail('archMap', 'must be an array');
    profile.archMap = doc.archMap.map((m: unknown, i) => {
      if (!isObj(m) || typeof m.architecture !== 'string') throw fail(`archMap[${i}]`, 'needs an architecture');
      return { architecture: m.architecture, subArchitectures: strings(m.subArchitectures, `archMap[${i}]`) ?? [] };
    });
  }
  const calls = doc.syscalls ?? [];
  if (!Array.isArray(calls)) throw fail('syscalls', 'must be an array');
  profile.syscalls = calls.map((c: unknown, i): SeccompRule => {
    const at = `syscalls[${i}]`;
    if (!isObj(c)) throw fail(at, 'must be an object');
    const names = strings(c.names, `${at}.names`) ?? [];
    if (typeof c.name === 'string') names.push(c.name); // Docker's old single-name form
    if (names.length === 0) throw fail(at, 'has no syscall names');
    const rule: SeccompRule = { names, action: action(c.action, `${at}.action`) };
    const ret = uint(c.errnoRet, `${at}.errnoRet`);
    if (ret !== undefined) rule.errnoRet = ret;
    if (c.args !== undefined && c.args !== null) {
      if (!Array.isArray(c.args)) throw fail(`${at}.args`, 'must be an array');
      rule.args = c.args.map((a: unknown, j): OciSeccompArg => {
        const f = `${at}.args[${j}]`;
        if (!isObj(a)) throw fail(f, 'must be an object');
        const index = uint(a.index, `${f}.index`) ?? 0;
        if (index > 5) throw fail(`${f}.index`, 'must be 0..5');
        if (typeof a.op !== 'string' || !OPERATORS.includes(a.op)) throw fail(`${f}.op`, `unknown operator ${JSON.stringify(a.op)}`);
        const arg: OciSeccompArg = { index, value: uint(a.value, `${f}.value`) ?? 0, op: a.op as SeccompOperator };
        const two = uint(a.valueTwo, `${f}.valueTwo`);
        if (two !== undefined) arg.valueTwo = two;
        return arg;
      });
    }
    for (const key of ['includes', 'excludes'] as const) {
      const cond = c[key];
      if (cond === undefined || cond === null) continue;
      if (!isObj(cond)) throw fail(`${at}.${key}`, 'must be an object');
      const capsList = strings(cond.caps, `${at}.${key}.caps`);
      const archList = strings(cond.arches, `${at}.${key}.arches`);
      const minKernel = key === 'includes' && typeof cond.minKernel === 'string' ? cond.minKernel : undefined;
      rule[key] = { ...(capsList && { caps: capsList }), ...(archList && { arches: archList }), ...(minKernel && { minKernel }) };
    }
    return rule;
  });
  return profile;
}

/** Read a Localhost profile (absolute path on the node) and resolve it; any problem is INVALID_ARGUMENT naming it. */
export function loadLocalhostSeccomp(path: string, caps: string[]): OciSeccomp {
  if (!path.startsWith('/')) throw invalidArgument(`seccomp localhost profile ${JSON.stringify(path)}: must be an absolute path`);
  let text: string;
  try {
    // stat first: reading a FIFO would block the daemon's only thread.
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    const buf = readFileSync(path);
    text = buf.toString('utf8');
  } catch (err) {
    throw invalidArgument(`seccomp localhost profile ${path}: cannot read: ${errorMessage(err)}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`seccomp localhost profile ${path}: invalid JSON: ${errorMessage(err)}`);
  }
  return resolveSeccompProfile(parseSeccompProfile(doc, path), caps);
}

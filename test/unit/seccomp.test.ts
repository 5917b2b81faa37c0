import { BerthError } from '../../src/common/errors';
import type { OciSeccomp } from '../../src/runtime/oci-spec';
import {
  hostGoArch,
  parseSeccompProfile,
  resolveSeccompProfile,
  runtimeDefaultProfile,
  runtimeDefaultSeccomp,
} from '../../src/runtime/seccomp';

const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_KILL', 'CAP_SETUID', 'CAP_SETGID', 'CAP_SYS_CHROOT'];

/** Names the profile lets through unconditionally (rules without arguments). */
const allowed = (p: OciSeccomp): Set<string> =>
  new Set((p.syscalls ?? []).filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args?.length).flatMap((s) => s.names));
const mentioned = (p: OciSeccomp): Set<string> => new Set((p.syscalls ?? []).flatMap((s) => s.names));

describe('RuntimeDefault', () => {
  const profile = runtimeDefaultSeccomp(DEFAULT_CAPS);

  test('is a well-formed OCI profile: EPERM by default, native arch first', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(profile.defaultErrnoRet).toBe(1);
    const native = { amd64: 'SCMP_ARCH_X86_64', arm64: 'SCMP_ARCH_AARCH64' }[hostGoArch()];
    if (native) expect(profile.architectures?.[0]).toBe(native);
    for (const s of profile.syscalls ?? []) {
      expect(s.names.length).toBeGreaterThan(0);
      expect(s.names.every((n) => /^[a-z_][a-z0-9_]*$/.test(n))).toBe(true);
      expect(['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO']).toContain(s.action);
    }
    // Serialisable as config.json wants it (no Docker-only keys left).
    const json = JSON.parse(JSON.stringify(profile)) as Record<string, unknown>;
    expect(Object.keys(json).sort()).toEqual(['architectures', 'defaultAction', 'defaultErrnoRet', 'syscalls']);
    expect(JSON.stringify(profile)).not.toMatch(/includes|excludes|archMap/);
  });

  test('allows what busybox and libc need', () => {
    const ok = allowed(profile);
    for (const name of ['read', 'write', 'openat', 'execve', 'exit_group', 'mmap', 'rt_sigaction', 'wait4', 'getdents64', 'newfstatat', 'statx']) {
      expect(ok).toContain(name);
    }
    if (hostGoArch() === 'amd64') expect(ok).toContain('arch_prctl');
    // clone only without namespace flags; socket only without AF_VSOCK.
    const clone = profile.syscalls?.find((s) => s.names.includes('clone'));
    expect(clone?.args).toEqual([{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    expect(profile.syscalls?.find((s) => s.names.includes('clone3'))).toMatchObject({ action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
    expect(profile.syscalls?.find((s) => s.names.includes('socket'))?.args).toEqual([{ index: 0, value: 40, op: 'SCMP_CMP_NE' }]);
  });

  test('blocks namespace, mount, keyring and reboot calls without the capability', () => {
    const names = mentioned(profile);
    for (const name of ['unshare', 'mount', 'umount2', 'setns', 'keyctl', 'add_key', 'request_key', 'reboot', 'bpf', 'init_module', 'io_uring_setup']) {
      expect(names).not.toContain(name);
    }
    expect(allowed(profile)).toContain('chroot'); // CAP_SYS_CHROOT is held
  });

  test('capability groups open up with the capability; keyctl never does', () => {
    const admin = allowed(runtimeDefaultSeccomp([...DEFAULT_CAPS, 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT']));
    for (const name of ['unshare', 'mount', 'setns', 'clone', 'clone3', 'reboot']) expect(admin).toContain(name);
    expect(admin).not.toContain('keyctl');
    expect(allowed(runtimeDefaultSeccomp([]))).not.toContain('chroot');
  });

  test('the source profile covers x86_64 and aarch64', () => {
    const arches = runtimeDefaultProfile().archMap?.map((m) => m.architecture);
    expect(arches).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64']);
  });
});

describe('Docker-format profiles', () => {
  test('archMap, includes/excludes by caps, arch and kernel are resolved', () => {
    const p = parseSeccompProfile({
      defaultAction: 'SCMP_ACT_ERRNO',
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] }, { architecture: 'SCMP_ARCH_AARCH64' }],
      syscalls: [
        { names: ['read'], action: 'SCMP_ACT_ALLOW' },
        { name: 'ptrace', action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
        { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
        { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64'] } },
        { names: ['clone'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['amd64', 'arm64'] } },
      ],
    }, 'test');
    const oci = resolveSeccompProfile(p, [], '6.1.0-18-amd64');
    const names = oci.syscalls?.map((s) => s.names[0]);
    expect(names).toEqual(hostGoArch() === 'amd64' ? ['read', 'ptrace', 'arch_prctl'] : ['read', 'ptrace']);
    if (hostGoArch() === 'amd64') expect(oci.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
    expect(resolveSeccompProfile(p, [], '4.4.0').syscalls?.map((s) => s.names[0])).not.toContain('ptrace');
    expect(resolveSeccompProfile(p, ['CAP_SYS_ADMIN'], '6.1').syscalls?.map((s) => s.names[0])).toContain('mount');
  });

  test('malformed profiles are INVALID_ARGUMENT naming the source and field', () => {
    const bad = (doc: unknown): BerthError => {
      try {
        parseSeccompProfile(doc, '/p.json');
      } catch (e) {
        if (e instanceof BerthError) return e;
        throw e;
      }
      throw new Error('expected a throw');
    };
    expect(bad([]).message).toMatch(/\/p\.json/);
    expect(bad({ defaultAction: 'NOPE' }).message).toMatch(/defaultAction/);
    expect(bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 9, value: 1, op: 'SCMP_CMP_EQ' }] }] }).message)
      .toMatch(/syscalls\[0\]\.args\[0\]\.index/);
    expect(bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ action: 'SCMP_ACT_ALLOW' }] }).code).toBe('INVALID_ARGUMENT');
  });
});

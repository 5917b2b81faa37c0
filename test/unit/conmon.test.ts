// Runtime error text as berth reports it: crun's hybrid-cgroup refusal gets the fix appended.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { explainRuntimeError, parseRuntimeError } from '../../src/runtime/runtime-errors';

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-conmon-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const CRUN_HYBRID = 'cgroups in hybrid mode not supported, drop all controllers from cgroupv2';

describe('explainRuntimeError', () => {
  test("crun's hybrid-mode refusal names the v2 controllers and how to mount each as v1", async () => {
    const file = join(tmp, 'cgroup.controllers');
    writeFileSync(file, 'hugetlb misc\n');
    const msg = await explainRuntimeError(parseRuntimeError(`{"msg":"${CRUN_HYBRID}","level":"error","time":"2024-01-01T00:00:00Z"}\n`), file);
    expect(msg.startsWith(CRUN_HYBRID)).toBe(true);
    expect(msg).toContain('(now: hugetlb, misc)');
    expect(msg).toContain('mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb');
    expect(msg).toContain('mkdir -p /sys/fs/cgroup/misc && mount -t cgroup -o misc cgroup /sys/fs/cgroup/misc');
    expect(msg).toContain('or use the runc handler');
  });

  test('without a readable controllers file (berth sees another mount namespace) hugetlb is the example', async () => {
    const msg = await explainRuntimeError(CRUN_HYBRID, join(tmp, 'missing'));
    expect(msg).not.toContain('(now:');
    expect(msg).toContain('mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb');
  });

  test('controller names are not copied blindly into the hint', async () => {
    const file = join(tmp, 'cgroup.controllers');
    writeFileSync(file, 'hugetlb $(reboot) ../x\n');
    const msg = await explainRuntimeError(CRUN_HYBRID, file);
    expect(msg).toContain('(now: hugetlb)');
    expect(msg).not.toContain('reboot');
  });

  test('other errors pass unchanged', async () => {
    await expect(explainRuntimeError('container_linux.go:380: starting container process caused: exec: "nope": not found')).resolves.toBe(
      'container_linux.go:380: starting container process caused: exec: "nope": not found',
    );
  });
});

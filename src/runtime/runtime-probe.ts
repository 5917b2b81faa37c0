// Is an OCI runtime binary usable? Status asks often (the kubelet polls it), so `--version` runs only when the
// binary file changed since the last good answer; a missing or replaced binary is noticed on the next call.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { errorMessage } from '../common/errors';

export type ProbeResult = { ok: true; version: string } | { ok: false; reason: string; message: string };

const cache = new Map<string, { stamp: string; result: ProbeResult }>();

export async function probeRuntimeBinary(binary: string, timeoutMs = 5000): Promise<ProbeResult> {
  let stamp: string;
  try {
    const st = await fs.stat(binary, { bigint: true });
    if (!st.isFile()) return notReady(`OCI runtime ${binary} is not a regular file`);
    stamp = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
  } catch (err) {
    return notReady(`OCI runtime ${binary} not found: ${errorMessage(err)}`);
  }
  const hit = cache.get(binary);
  if (hit && hit.stamp === stamp) return hit.result;
  const result = await new Promise<ProbeResult>((resolve) => {
    execFile(binary, ['--version'], { timeout: timeoutMs, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }, (err, stdout, stderr) => {
      if (err) resolve(notReady(`OCI runtime ${binary} --version failed: ${(stderr || errorMessage(err)).trim()}`));
      else resolve({ ok: true, version: stdout.split('\n')[0]?.trim() ?? '' });
    });
  });
  if (result.ok) cache.set(binary, { stamp, result });
  return result;
}

function notReady(message: string): ProbeResult {
  return { ok: false, reason: 'RuntimeBinaryNotReady', message };
}

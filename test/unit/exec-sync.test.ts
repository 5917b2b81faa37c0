// The ExecSync handler: a timed-out command is DEADLINE_EXCEEDED, and the output always fits one gRPC message.
import { BerthError } from '../../src/common/errors';
import type { ExecSyncResult } from '../../src/runtime/oci-runtime';
import { execSync, fitOutput, RESPONSE_OVERHEAD } from '../../src/server/container';
import type { ServerContext } from '../../src/server/context';
import type { ExecSyncRequest__Output } from '../../src/server/generated/runtime/v1/ExecSyncRequest';
import { Encoded, type CallContext } from '../../src/server/rpc';

const MiB = 1024 * 1024;

function context(result: ExecSyncResult, maxMessageBytes = 16 * MiB): { ctx: ServerContext; calls: unknown[][] } {
  const calls: unknown[][] = [];
  const ctx = {
    config: () => ({ api: { max_message_bytes: maxMessageBytes } }),
    containers: {
      execSync: (...args: unknown[]) => {
        calls.push(args);
        return Promise.resolve(result);
      },
    },
  } as unknown as ServerContext;
  return { ctx, calls };
}

const call = {} as CallContext;
const request = (timeout: string): ExecSyncRequest__Output => ({ container_id: 'c0ffee', cmd: ['sleep', '10'], timeout });
const result = (o: Partial<ExecSyncResult>): ExecSyncResult => ({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), exitCode: 0, timedOut: false, ...o });

describe('ExecSync handler', () => {
  test('a timed-out command is DEADLINE_EXCEEDED naming the timeout, not an exit code', async () => {
    const { ctx, calls } = context(result({ exitCode: 137, timedOut: true, stdout: Buffer.from('partial') }));
    const err = await execSync(ctx)(request('1'), call).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ code: 'DEADLINE_EXCEEDED', message: 'ExecSync in c0ffee: command timed out after 1 s' });
    expect(calls).toEqual([['c0ffee', ['sleep', '10'], 1]]);
  });

  test('a command that finished in time returns its exit code and output', async () => {
    const { ctx } = context(result({ exitCode: 4, stdout: Buffer.from('out'), stderr: Buffer.from('err') }));
    await expect(execSync(ctx)(request('5'), call)).resolves.toEqual({ stdout: Buffer.from('out'), stderr: Buffer.from('err'), exit_code: 4 });
  });

  test('16 MiB of stdout is trimmed to fit the configured message size with its framing', async () => {
    const { ctx } = context(result({ stdout: Buffer.alloc(16 * MiB, 1), stderr: Buffer.from('e') }));
    const res = await execSync(ctx)(request('5'), call);
    if (res instanceof Encoded) throw new Error('ExecSync replies with a message, not pre-encoded bytes');
    expect((res.stdout as Buffer).length + (res.stderr as Buffer).length).toBe(16 * MiB - RESPONSE_OVERHEAD);
    expect(res.stderr).toEqual(Buffer.from('e'));
  });
});

describe('fitOutput', () => {
  const b = (n: number, fill = 1): Buffer => Buffer.alloc(n, fill);
  test('leaves output that fits alone', () => {
    const [o, e] = fitOutput(b(10), b(5, 2), 15);
    expect([o.length, e.length]).toEqual([10, 5]);
  });
  test('keeps the smaller stream whole and trims the larger one from its end', () => {
    expect(fitOutput(b(100), b(5), 50).map((x) => x.length)).toEqual([45, 5]);
    expect(fitOutput(b(5), b(100), 50).map((x) => x.length)).toEqual([5, 45]);
  });
  test('splits the room when both are large', () => {
    expect(fitOutput(b(100), b(100), 51).map((x) => x.length)).toEqual([25, 26]);
  });
  test('a negative budget leaves nothing', () => {
    expect(fitOutput(b(3), b(3), -1).map((x) => x.length)).toEqual([0, 0]);
  });
});

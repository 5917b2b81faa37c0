// Small pieces every handler family shares: required fields, label selectors, streamed lists in batches.
import { invalidArgument } from '../common/errors';

export function required(value: string, field: string): string {
  if (value === '') throw invalidArgument(`${field} is required`);
  return value;
}

/** A CRI label selector: every key must be present with the same value. */
export function matchesLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Streamed lists go out in batches of this many, so a large list never becomes one huge message. */
export const STREAM_BATCH = 100;

export async function sendInBatches<T, M>(items: T[], wrap: (batch: T[]) => M, send: (msg: M) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += STREAM_BATCH) await send(wrap(items.slice(i, i + STREAM_BATCH)));
}

// Typed errors shared by every layer. Each carries a stable code; src/server/grpc-status.ts maps codes to gRPC
// status in one place, so lower layers never import gRPC.

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'ABORTED'
  | 'CANCELLED'
  | 'DATA_LOSS'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

export class BerthError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'BerthError';
  }
}

export const invalidArgument = (message: string): BerthError => new BerthError('INVALID_ARGUMENT', message);
export const notFound = (message: string): BerthError => new BerthError('NOT_FOUND', message);
export const alreadyExists = (message: string): BerthError => new BerthError('ALREADY_EXISTS', message);
export const failedPrecondition = (message: string): BerthError => new BerthError('FAILED_PRECONDITION', message);
export const unavailable = (message: string): BerthError => new BerthError('UNAVAILABLE', message);
export const deadlineExceeded = (message: string): BerthError => new BerthError('DEADLINE_EXCEEDED', message);
export const unimplemented = (message: string): BerthError => new BerthError('UNIMPLEMENTED', message);
export const internal = (message: string, cause?: unknown): BerthError =>
  new BerthError('INTERNAL', message, { cause });

export function isBerthError(err: unknown): err is BerthError {
  return err instanceof BerthError;
}

/** A Node system error (ENOENT, EACCES, …) or a native/ binding error carrying an errno code. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const { code } = err;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// The one place where berth's typed errors become gRPC statuses.
import { status as Status } from '@grpc/grpc-js';
import { BerthError, ErrorCode, errorMessage } from '../common/errors';

const CODES: Record<ErrorCode, Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: Status.UNAVAILABLE,
  DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
  ABORTED: Status.ABORTED,
  CANCELLED: Status.CANCELLED,
  DATA_LOSS: Status.DATA_LOSS,
  UNIMPLEMENTED: Status.UNIMPLEMENTED,
  INTERNAL: Status.INTERNAL,
};

export interface GrpcFailure {
  code: Status;
  /** Name of the status code, the `code` label of the error metric. */
  codeName: string;
  details: string;
  /** False for typed errors (expected outcomes); true for exceptions nobody anticipated. */
  unexpected: boolean;
}

export function toGrpcFailure(err: unknown): GrpcFailure {
  if (err instanceof BerthError) {
    return { code: CODES[err.code], codeName: err.code, details: err.message, unexpected: false };
  }
  return { code: Status.INTERNAL, codeName: 'INTERNAL', details: `internal error: ${errorMessage(err)}`, unexpected: true };
}

// Loads the vendored CRI definition with the options the generated types were made with (package.json "gen").
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../common/package-root';
import type { ProtoGrpcType } from './generated/api';

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function criProtoPath(): string {
  return path.join(packageRoot(), 'proto', 'runtime', 'v1', 'api.proto');
}

let loaded: ProtoGrpcType | undefined;

export function loadCri(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(criProtoPath(), PROTO_LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return loaded;
}

// Replies the kubelet asks for over and over (ListContainers and ListPodSandbox at every relist, ContainerStatus at
// every pod sync), kept in wire form per record. Records are replaced, never changed in place (the object stores
// freeze what they hold), so a record object is its own version: a WeakMap keyed by it needs no invalidation and
// lets go when the record does. A list reply is the concatenation of its items' encodings: protobuf encodes a
// repeated field as one tagged entry per item, so N one-item replies laid end to end are the N-item reply.
import { Encoded } from './rpc';

export class WireCache<R extends object> {
  private readonly bytes = new WeakMap<R, Buffer>();

  constructor(private readonly encode: (record: R) => Buffer) {}

  get(record: R): Buffer {
    let wire = this.bytes.get(record);
    if (!wire) {
      wire = this.encode(record);
      this.bytes.set(record, wire);
    }
    return wire;
  }

  /** The reply for one record. */
  reply<T>(record: R): Encoded<T> {
    return new Encoded<T>(this.get(record));
  }

  /** The list reply of these records, each cached as the one-item reply of the same list message. */
  list<T>(records: readonly R[]): Encoded<T> {
    return new Encoded<T>(Buffer.concat(records.map((r) => this.get(r))));
  }
}

// The body of an IPC record batch message laid out as apache-arrow's VectorAssembler lays it out
// (field nodes, 8-byte aligned buffer regions, the buffers to copy), for the column types the
// encoder's builders produce. Written here so that a new encoder thread does not import
// VectorAssembler, which imports RecordBatch and with it Table and ~30 more of Arrow's modules
// (docs/benchmarks.md, "Importing only the Arrow modules used", h-arrow, session 13).
// test/unit/parquet-ipc.test.ts holds the bytes to tableToIPC's for every layout.
import { BufferRegion, FieldNode } from "apache-arrow/ipc/metadata/message";
import { DataType } from "apache-arrow/type";
import { truncateBitmap } from "apache-arrow/util/bit";
import { rebaseValueOffsets } from "apache-arrow/util/buffer";
import type * as arrow from "./arrow.js";

type Offsets = Int32Array | BigInt64Array;

export interface Body {
  nodes: FieldNode[];
  bufferRegions: BufferRegion[];
  buffers: ArrayBufferView[];
  byteLength: number;
}

/** The body of a record batch whose columns are `struct`'s children. */
export function assembleBody(struct: arrow.Data<arrow.Struct>): Body {
  const body: Body = { nodes: [], bufferRegions: [], buffers: [], byteLength: 0 };
  for (const child of struct.children) visit(body, child);
  return body;
}

function addBuffer(body: Body, values: ArrayBufferView): void {
  const byteLength = (values.byteLength + 7) & ~7;
  body.buffers.push(values);
  body.bufferRegions.push(new BufferRegion(body.byteLength, byteLength));
  body.byteLength += byteLength;
}

const num = (x: number | bigint): number => Number(x);

/**
 * The offsets from 0, as the message carries them (a copy only if they do not start at 0). The two
 * branches are one call: Arrow declares it once per offset type, and TypeScript picks an overload
 * only for a narrowed argument.
 */
const rebased = (offsets: Offsets, begin: number, length: number): Offsets =>
  offsets instanceof BigInt64Array
    ? rebaseValueOffsets(-begin, length + 1, offsets)
    : rebaseValueOffsets(-begin, length + 1, offsets);

function visit(body: Body, data: arrow.Data): void {
  const { type, length } = data;
  if (length > 2147483647) throw new RangeError("Cannot write arrays larger than 2^31 - 1 in length");
  const nullCount = data.nullCount;
  addBuffer(body, nullCount <= 0 ? new Uint8Array(0) : truncateBitmap(data.offset, length, data.nullBitmap!));
  body.nodes.push(new FieldNode(length, nullCount));
  if (DataType.isBool(type)) {
    const values = data.values as Uint8Array;
    addBuffer(
      body,
      nullCount >= length ? new Uint8Array((length + 7) >> 3) : truncateBitmap(data.offset, length, values),
    );
  } else if (
    DataType.isInt(type) ||
    DataType.isFloat(type) ||
    DataType.isFixedSizeBinary(type) ||
    DataType.isDate(type) ||
    DataType.isTimestamp(type) ||
    DataType.isTime(type) ||
    DataType.isDecimal(type)
  ) {
    const values = data.values as Uint8Array;
    addBuffer(body, values.subarray(0, length * data.stride));
  } else if (
    DataType.isUtf8(type) ||
    DataType.isLargeUtf8(type) ||
    DataType.isBinary(type) ||
    DataType.isLargeBinary(type)
  ) {
    const offsets = data.valueOffsets as Offsets;
    const values = data.values as Uint8Array;
    const begin = num(offsets[0]!);
    const end = num(offsets[length]!);
    const byteLength = Math.min(end - begin, values.byteLength - begin);
    addBuffer(body, rebased(offsets, begin, length));
    addBuffer(body, values.subarray(begin, begin + byteLength));
  } else if (DataType.isList(type) || DataType.isMap(type)) {
    const offsets = data.valueOffsets as Offsets;
    const begin = num(offsets[0]!);
    const end = num(offsets[length]!);
    addBuffer(body, rebased(offsets, begin, length));
    visit(body, data.children[0]!.slice(begin, end - begin));
  } else if (DataType.isStruct(type)) {
    for (let i = 0; i < type.children.length; i++) {
      const child = data.children[i];
      if (child) visit(body, child);
    }
  } else {
    throw new TypeError(`no IPC layout here for Arrow type ${String(type)}`);
  }
}

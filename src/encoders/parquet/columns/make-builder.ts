// The column builder for a resolved type: pgwire values decoded straight into typed-array
// buffers, turned into Arrow `Data` per batch without copying. One builder class per physical
// layout (builder.ts has the contract; fixed-width, datetime, variable-width, nested and
// materialize hold the classes).
import * as arrow from "../arrow.js";
import type { TypeNode } from "../types.js";
import type { ColumnBuilder, ColumnContext } from "./builder.js";
import { DateBuilder, TimestampBuilder } from "./datetime.js";
import { BoolBuilder, DecimalBuilder, ReversedBytesBuilder, UuidBuilder } from "./fixed-width.js";
import { MzListBuilder, MzMapBuilder, MzTimestampBuilder } from "./materialize.js";
import { ArrayBuilder, RangeBuilder, RecordBuilder } from "./nested.js";
import { VarBuilder, VarKind } from "./variable-width.js";

/** A builder for a resolved type; `node === null` means the text-format fallback (Utf8). */
export function makeBuilder(node: TypeNode | null, ctx: ColumnContext, nullable: boolean): ColumnBuilder {
  if (node === null) return new VarBuilder(ctx, nullable, new arrow.Utf8(), VarKind.Bytes);
  switch (node.codec) {
    case "bool":
      return new BoolBuilder(ctx, nullable);
    case "int2":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int16(), 2);
    case "int4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int32(), 4);
    case "int8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int64(), 8);
    case "float4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Float32(), 4);
    case "float8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Float64(), 8);
    case "time":
      // Microseconds since midnight in both worlds, 24:00:00 included.
      return new ReversedBytesBuilder(ctx, nullable, new arrow.TimeMicrosecond(), 8);
    case "numeric":
      return new DecimalBuilder(ctx, nullable, node.scale ?? 10);
    case "date":
      return new DateBuilder(ctx, nullable);
    case "timestamp":
      return new TimestampBuilder(ctx, nullable, false);
    case "timestamptz":
      return new TimestampBuilder(ctx, nullable, true);
    case "text":
      return new VarBuilder(
        ctx,
        nullable,
        node.bounded ? new arrow.Utf8() : new arrow.LargeUtf8(),
        VarKind.Bytes,
      );
    case "bytea":
      return new VarBuilder(ctx, nullable, new arrow.LargeBinary(), VarKind.Bytes);
    case "json":
      return new VarBuilder(ctx, nullable, new arrow.LargeUtf8(), VarKind.Json);
    case "jsonb":
      return new VarBuilder(ctx, nullable, new arrow.LargeUtf8(), VarKind.Jsonb);
    case "uuid":
      return new UuidBuilder(ctx, nullable);
    case "array":
      return new ArrayBuilder(ctx, nullable, node.element!, makeBuilder);
    case "record":
      return new RecordBuilder(ctx, nullable, node.fields!, makeBuilder);
    case "range":
      return new RangeBuilder(ctx, nullable, node.element!, makeBuilder);
    case "uint2":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint16(), 2);
    case "uint4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint32(), 4);
    case "uint8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint64(), 8);
    case "mz_timestamp":
      return new MzTimestampBuilder(ctx, nullable);
    case "list":
      return new MzListBuilder(ctx, nullable, node.element!, makeBuilder);
    case "map":
      return new MzMapBuilder(ctx, nullable, node.element!, makeBuilder);
  }
}

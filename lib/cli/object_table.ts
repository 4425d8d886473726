/**
 * The objects of one store as the dashboard pages them: one typed array per column, filled from
 * the store's raw listing in chunks (the event loop turns between chunks, so the server keeps
 * answering), sorted as a permutation of row numbers; a row becomes an object (and its id a hex
 * string) only when a page shows it. A million objects cost about 70 MB and no million objects.
 */
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import { DESCRIBE_HEAD_BYTES, describeHead } from "../codec/describe.ts";
import { ID_BYTES } from "../ids.ts";
import { bitCount, CLIENTS_MAX, LIST_RECORD_BYTES, type NativeStore } from "../store/native_store.ts";

/** Records read per chunk, between turns of the event loop. */
const CHUNK_RECORDS = 32_768;
const STATES = ["", "writing", "memory", "spilled"] as const;
/** Distinct types a table names (numbered in a byte, 0 for none); beyond them, "other". */
const TYPES_MAX = 255;
/** Names shown for the values the library itself stores. */
const TYPE_NAMES: Record<string, string> = { "@objstore/TaskFailure": "task error" };

/** One row of the objects table. */
export interface ObjectRow {
  id: string;
  sizeBytes: number;
  /** What kind of value it is ("Uint8Array", "object", "task error"...), from its first bytes;
   * null when not known (spilled, being written, or in a cluster). */
  type: string | null;
  /** memory, spilled or writing; in a cluster, where each copy is (`1:memory 2:spilled`). */
  state: string;
  referencingProcesses: number;
  /** Null in a cluster: nodes list references only. */
  pinningProcesses: number | null;
  /** The processes pinning it (pid; role and runtime where the processes table knows them);
   * null in a cluster. */
  pinnedBy: ProcessRef[] | null;
  containedBy: number | null;
  /** The node holding it: this machine's name, or the number of the node that made it. */
  node: string;
}

/** A process holding an object. */
export interface ProcessRef {
  pid: number;
  role?: string;
  runtime?: string;
}

/** A query of the objects table: sorted and filtered on the server, one page sent. */
export interface ObjectQuery {
  offset: number;
  limit: number;
  sort: keyof ObjectRow;
  descending: boolean;
  /** Rows whose id, type, state or node contains this text, or pinned by the process of this pid. */
  filter: string;
}

/** A page of the table. */
export interface ObjectPage {
  total: number;
  matched: number;
  rows: ObjectRow[];
}

/** A table of rows that pages itself: columns, or an array of rows (a cluster's listing). */
export interface ObjectTable {
  readonly total: number;
  page(query: ObjectQuery): ObjectPage;
}

/** The columns of one store's objects. */
export class ColumnarObjects implements ObjectTable {
  total = 0;
  #ids = new Uint8Array(0);
  #sizes = new Float64Array(0);
  #states = new Uint8Array(0);
  /** Index into #typeNames (0: not known). */
  #types = new Uint8Array(0);
  readonly #typeNames: string[] = [""];
  readonly #typeNumbers = new Map<string, number>();
  #refs = new Uint32Array(0);
  #pins = new Uint32Array(0);
  /** The pinning processes' client bits, low and high words (bit c: `#clientPids[c]`). */
  #pinBitsLow = new Uint32Array(0);
  #pinBitsHigh = new Uint32Array(0);
  /** The pid at each client index when the store was listed. */
  #clientPids: Uint32Array = new Uint32Array(CLIENTS_MAX);
  #containedBy = new Uint32Array(0);
  readonly #node: string;
  /** The last query's order, reused for its next pages. */
  #sorted: { key: string; order: Uint32Array } | undefined;

  private constructor(node: string) {
    this.#node = node;
  }

  /** Lists `store` (`expected` objects, roughly: the arrays grow if there are more). */
  static async read(store: NativeStore, expected: number, node: string): Promise<ColumnarObjects> {
    const table = new ColumnarObjects(node);
    table.#clientPids = store.clientPids();
    table.#grow(Math.max(1024, Math.ceil(expected * 1.1)));
    const chunk = new Uint8Array(CHUNK_RECORDS * LIST_RECORD_BYTES);
    const heads = new Uint8Array(CHUNK_RECORDS * DESCRIBE_HEAD_BYTES);
    const view = new DataView(chunk.buffer);
    let cursor = 0;
    do {
      const { count, next } = store.listRecords(cursor, chunk, { bytes: heads, headBytes: DESCRIBE_HEAD_BYTES });
      if (table.total + count > table.#sizes.length) table.#grow(2 * (table.total + count));
      for (let i = 0; i < count; i++) {
        const at = i * LIST_RECORD_BYTES;
        const row = table.total++;
        table.#ids.set(chunk.subarray(at, at + ID_BYTES), row * ID_BYTES);
        table.#states[row] = view.getUint32(at + 28, true);
        table.#types[row] = table.#typeNumber(describeHead(heads.subarray(i * DESCRIBE_HEAD_BYTES, (i + 1) * DESCRIBE_HEAD_BYTES)));
        table.#refs[row] = bitCount(view.getUint32(at + 32, true)) + bitCount(view.getUint32(at + 36, true));
        const pinLow = view.getUint32(at + 40, true);
        const pinHigh = view.getUint32(at + 44, true);
        table.#pinBitsLow[row] = pinLow;
        table.#pinBitsHigh[row] = pinHigh;
        table.#pins[row] = bitCount(pinLow) + bitCount(pinHigh);
        table.#containedBy[row] = view.getUint32(at + 56, true);
        table.#sizes[row] = view.getFloat64(at + 48, true);
      }
      cursor = next;
      if (cursor !== 0) await new Promise((resolve) => setImmediate(resolve));
    } while (cursor !== 0);
    return table;
  }

  #grow(rows: number): void {
    const grown = <T extends Uint8Array | Uint32Array | Float64Array>(old: T, make: (n: number) => T, per = 1): T => {
      const next = make(rows * per);
      next.set(old.subarray(0, this.total * per));
      return next;
    };
    this.#ids = grown(this.#ids, (n) => new Uint8Array(n), ID_BYTES);
    this.#sizes = grown(this.#sizes, (n) => new Float64Array(n));
    this.#states = grown(this.#states, (n) => new Uint8Array(n));
    this.#types = grown(this.#types, (n) => new Uint8Array(n));
    this.#refs = grown(this.#refs, (n) => new Uint32Array(n));
    this.#pins = grown(this.#pins, (n) => new Uint32Array(n));
    this.#pinBitsLow = grown(this.#pinBitsLow, (n) => new Uint32Array(n));
    this.#pinBitsHigh = grown(this.#pinBitsHigh, (n) => new Uint32Array(n));
    this.#containedBy = grown(this.#containedBy, (n) => new Uint32Array(n));
  }

  /** The number of type `described` in this table (0 for not known). */
  #typeNumber(described: string | undefined): number {
    if (described === undefined) return 0;
    const name = TYPE_NAMES[described] ?? described;
    let number = this.#typeNumbers.get(name);
    if (number === undefined) {
      // The last number left is kept for "other".
      if (this.#typeNames.length >= TYPES_MAX && name !== "other") return this.#typeNumber("other");
      number = this.#typeNames.length;
      this.#typeNames.push(name);
      this.#typeNumbers.set(name, number);
    }
    return number;
  }

  #hex(row: number): string {
    return Buffer.from(this.#ids.buffer, this.#ids.byteOffset + row * ID_BYTES, ID_BYTES).toString("hex");
  }

  #row(row: number): ObjectRow {
    return {
      id: this.#hex(row),
      sizeBytes: this.#sizes[row],
      type: this.#types[row] === 0 ? null : this.#typeNames[this.#types[row]],
      state: STATES[this.#states[row]] ?? "?",
      referencingProcesses: this.#refs[row],
      pinningProcesses: this.#pins[row],
      pinnedBy: this.#holders(this.#pinBitsLow[row], this.#pinBitsHigh[row]),
      containedBy: this.#containedBy[row],
      node: this.#node,
    };
  }

  /** The pids of the client bits set in (low, high), less a process that died unreclaimed. */
  #holders(low: number, high: number): ProcessRef[] {
    const holders: ProcessRef[] = [];
    for (let c = 0; c < CLIENTS_MAX; c++) {
      const word = c < 32 ? low : high;
      if (((word >>> (c % 32)) & 1) !== 0 && this.#clientPids[c] !== 0) holders.push({ pid: this.#clientPids[c] });
    }
    return holders;
  }

  page(query: ObjectQuery): ObjectPage {
    const key = `${query.sort} ${query.descending} ${query.filter}`;
    if (this.#sorted?.key !== key) this.#sorted = { key, order: this.#order(query) };
    const order = this.#sorted.order;
    const rows: ObjectRow[] = [];
    for (let i = query.offset; i < Math.min(order.length, query.offset + query.limit); i++) rows.push(this.#row(order[i]));
    return { total: this.total, matched: order.length, rows };
  }

  /** The rows matching the query's filter, in its order. */
  #order(query: ObjectQuery): Uint32Array {
    let order = new Uint32Array(this.total);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (query.filter !== "" && !this.#node.toLowerCase().includes(query.filter)) {
      const matching = STATES.map((s) => s !== "" && s.includes(query.filter));
      const typeMatching = this.#typeNames.map((t) => t !== "" && t.toLowerCase().includes(query.filter));
      const hexOnly = /^[0-9a-f]+$/.test(query.filter);
      const [pinLow, pinHigh] = this.#clientBitsOf(query.filter);
      order = order.filter((row) =>
        matching[this.#states[row]] || typeMatching[this.#types[row]] || (this.#pinBitsLow[row] & pinLow) !== 0 || (this.#pinBitsHigh[row] & pinHigh) !== 0 ||
        (hexOnly && this.#hex(row).includes(query.filter))
      );
    }
    const sign = query.descending ? -1 : 1;
    const column = this.#column(query.sort);
    if (column !== undefined) {
      order.sort((a, b) => sign * (column[a] - column[b]) || a - b);
    } else if (query.sort === "id") {
      const ids = this.#ids;
      order.sort((a, b) => {
        for (let k = 0; k < ID_BYTES; k++) {
          const d = ids[a * ID_BYTES + k] - ids[b * ID_BYTES + k];
          if (d !== 0) return sign * d;
        }
        return 0;
      });
    }
    return order;
  }

  /** The client bits (low, high words) of the process whose pid `filter` is, if any. */
  #clientBitsOf(filter: string): [number, number] {
    const bits: [number, number] = [0, 0];
    if (!/^\d+$/.test(filter)) return bits;
    for (let c = 0; c < CLIENTS_MAX; c++) {
      if (this.#clientPids[c] !== 0 && String(this.#clientPids[c]) === filter) bits[c < 32 ? 0 : 1] |= 1 << (c % 32);
    }
    return bits;
  }

  #column(sort: keyof ObjectRow): ArrayLike<number> | undefined {
    switch (sort) {
      case "sizeBytes":
        return this.#sizes;
      case "state":
        return this.#states;
      case "type": {
        // By name, the unknown last when ascending.
        const byName = this.#typeNames.map((_, n) => n).sort((a, b) => a === 0 ? 1 : b === 0 ? -1 : this.#typeNames[a] < this.#typeNames[b] ? -1 : 1);
        const rank = new Uint8Array(this.#typeNames.length);
        byName.forEach((n, r) => (rank[n] = r));
        return this.#types.subarray(0, this.total).map((type) => rank[type]);
      }
      case "referencingProcesses":
        return this.#refs;
      case "pinningProcesses":
        return this.#pins;
      case "containedBy":
        return this.#containedBy;
      default:
        return undefined; // id (above), node (one value)
    }
  }
}

/** Rows already made (a cluster's listing, at most 10,000 objects a node). */
export class RowObjects implements ObjectTable {
  readonly #all: ObjectRow[];
  #sorted: { key: string; rows: ObjectRow[] } | undefined;

  constructor(rows: ObjectRow[]) {
    this.#all = rows;
  }

  get total(): number {
    return this.#all.length;
  }

  page(query: ObjectQuery): ObjectPage {
    const key = `${query.sort} ${query.descending} ${query.filter}`;
    if (this.#sorted?.key !== key) {
      const f = query.filter;
      const rows = f === "" ? this.#all.slice() : this.#all.filter((r) =>
        r.id.includes(f) || r.state.includes(f) || r.node.toLowerCase().includes(f) || (r.type?.toLowerCase().includes(f) ?? false) || (r.pinnedBy?.some((p) => String(p.pid) === f) ?? false)
      );
      const sign = query.descending ? -1 : 1;
      const column = query.sort;
      rows.sort((a, b) => {
        const x = (a[column] ?? -1) as number | string;
        const y = (b[column] ?? -1) as number | string;
        return sign * (x < y ? -1 : x > y ? 1 : 0) || (a.id < b.id ? -1 : 1);
      });
      this.#sorted = { key, rows };
    }
    const rows = this.#sorted.rows;
    return { total: this.#all.length, matched: rows.length, rows: rows.slice(query.offset, query.offset + query.limit) };
  }
}

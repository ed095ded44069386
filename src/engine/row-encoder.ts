// Writes a snapshot chunk of rows not made yet (UnmadeRows) as msgpack straight into one
// buffer: `[list name, [row, row, ...]]`, the same values `encode([name, rows])` gives for the
// made rows, read back by the same decoder. For a million holds this makes no array per row,
// which is what a checkpoint's scavenges were spent on (about 290 ms of pauses and the
// process's GC helper threads, measured in the README). Only the scalars a row writer takes
// are written: strings, numbers, booleans and nil, and arrays of them.

import type { RowWriter, UnmadeRows } from '../domain/index.js';

const initialBytes = 1024 * 1024;
/** A buffer grown past this by one large chunk is dropped when the next chunk starts. */
const keptBytes = 16 * 1024 * 1024;
/** Strings up to this length are copied a character at a time when they are ASCII. */
const shortStringMax = 64;

export class MsgpackRowWriter implements RowWriter {
  private buf = Buffer.allocUnsafe(initialBytes);
  private pos = 0;

  /**
   * The chunk of rows [from, to) of `rows`: a view into this writer's buffer, valid until its
   * next call (write it out first), or a copy of its own with `copy`.
   */
  chunk(rows: UnmadeRows, from: number, to: number, copy = false): Uint8Array {
    if (this.buf.length > keptBytes) this.buf = Buffer.allocUnsafe(initialBytes);
    this.pos = 0;
    this.array(2);
    this.string(rows.list);
    this.array(to - from);
    for (let i = from; i < to; i++) rows.write(i, this);
    const view = this.buf.subarray(0, this.pos);
    return copy ? Uint8Array.prototype.slice.call(view) : view;
  }

  array(length: number): void {
    this.ensure(5);
    const buf = this.buf;
    if (length < 16) {
      buf[this.pos++] = 0x90 | length;
    } else if (length < 0x10000) {
      buf[this.pos] = 0xdc;
      buf.writeUInt16BE(length, this.pos + 1);
      this.pos += 3;
    } else {
      buf[this.pos] = 0xdd;
      buf.writeUInt32BE(length, this.pos + 1);
      this.pos += 5;
    }
  }

  string(value: string): void {
    const length = value.length;
    if (length <= shortStringMax) {
      this.ensure(2 + length);
      const buf = this.buf;
      const start = this.pos + (length < 32 ? 1 : 2);
      let i = 0;
      for (; i < length; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + i] = c;
      }
      if (i === length) {
        // ASCII: as many bytes as characters, so the header stringHeader writes has the size assumed.
        this.stringHeader(length);
        this.pos += length;
        return;
      }
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    this.ensure(5 + bytes);
    this.stringHeader(bytes);
    this.pos += this.buf.write(value, this.pos, bytes, 'utf8');
  }

  number(value: number): void {
    this.ensure(9);
    const buf = this.buf;
    if (value >>> 0 === value) {
      if (value < 0x80) buf[this.pos++] = value;
      else if (value < 0x100) {
        buf[this.pos] = 0xcc;
        buf[this.pos + 1] = value;
        this.pos += 2;
      } else if (value < 0x10000) {
        buf[this.pos] = 0xcd;
        buf.writeUInt16BE(value, this.pos + 1);
        this.pos += 3;
      } else {
        buf[this.pos] = 0xce;
        buf.writeUInt32BE(value, this.pos + 1);
        this.pos += 5;
      }
    } else if (value >> 0 === value) {
      if (value >= -0x20) buf[this.pos++] = 0x100 + value;
      else {
        buf[this.pos] = 0xd2;
        buf.writeInt32BE(value, this.pos + 1);
        this.pos += 5;
      }
    } else {
      // Everything else (past 32 bits, fractions, NaN, infinities) as a float64, which
      // holds every JavaScript number exactly.
      buf[this.pos] = 0xcb;
      buf.writeDoubleBE(value, this.pos + 1);
      this.pos += 9;
    }
  }

  boolean(value: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = value ? 0xc3 : 0xc2;
  }

  nil(): void {
    this.ensure(1);
    this.buf[this.pos++] = 0xc0;
  }

  private stringHeader(bytes: number): void {
    const buf = this.buf;
    if (bytes < 32) {
      buf[this.pos++] = 0xa0 | bytes;
    } else if (bytes < 0x100) {
      buf[this.pos] = 0xd9;
      buf[this.pos + 1] = bytes;
      this.pos += 2;
    } else if (bytes < 0x10000) {
      buf[this.pos] = 0xda;
      buf.writeUInt16BE(bytes, this.pos + 1);
      this.pos += 3;
    } else {
      buf[this.pos] = 0xdb;
      buf.writeUInt32BE(bytes, this.pos + 1);
      this.pos += 5;
    }
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
}

// Splits one CSV record into fields (RFC 4180 quoting: "a ""b"", c" is one field), or
// says exactly what is wrong with its quoting. A record is one physical line: no valid
// stock-import value contains a line break, so a quote left open is an error, not a join.

export type CsvSplit = { ok: true; fields: string[] } | { ok: false; message: string };

const space = /[ \t]/;

export function splitCsvLine(line: string): CsvSplit {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    while (i < line.length && space.test(line[i] as string)) i++;
    const n = fields.length + 1;
    if (line[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= line.length) return { ok: false, message: `field ${n} opens a quote that is never closed` };
        const c = line[i] as string;
        if (c === '"' && line[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      while (i < line.length && space.test(line[i] as string)) i++;
      if (i < line.length && line[i] !== ',') return { ok: false, message: `field ${n} has text after its closing quote` };
      fields.push(value);
    } else {
      const end = line.indexOf(',', i);
      const raw = line.slice(i, end < 0 ? line.length : end);
      if (raw.includes('"')) return { ok: false, message: `field ${n} has a quote inside an unquoted value (quote the whole field and double inner quotes)` };
      fields.push(raw.trim());
      i = end < 0 ? line.length : end;
    }
    if (i >= line.length) return { ok: true, fields };
    i++; // the comma
  }
}

/**
 * GPT-2's reversible byte ↔ printable-character mapping used by byte-level BPE vocabularies: printable
 * Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards, in byte order.
 */
function buildByteToChar(): string[] {
  const table: string[] = new Array<string>(256); // [256]
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar(); // [256]

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

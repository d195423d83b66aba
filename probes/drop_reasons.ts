/**
 * Names of the kernel's packet drop reasons (`enum skb_drop_reason`), read from the running
 * kernel's BTF (/sys/kernel/btf/vmlinux): the numbers change between kernel versions, so no
 * table is copied into kupod. `SKB_DROP_REASON_NO_SOCKET` becomes "no_socket".
 */

const BTF_MAGIC = 0xeb9f;
const KIND_ENUM = 6;
const KIND_ENUM64 = 19;

/** Bytes that follow the 12-byte header of a BTF type of `kind` with `vlen` members. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: // INT
    case 14: // VAR
    case 17: // DECL_TAG
      return 4;
    case 3: // ARRAY
      return 12;
    case 4: // STRUCT
    case 5: // UNION
    case 15: // DATASEC
    case 19: // ENUM64
      return 12 * vlen;
    case 6: // ENUM
    case 13: // FUNC_PROTO
      return 8 * vlen;
    default: // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
      return 0;
  }
}

/** The values of enum `name` in a BTF blob, by number; empty when it is not there. */
export function btfEnum(btf: Uint8Array, name: string): Map<number, string> {
  const out = new Map<number, string>();
  const v = new DataView(btf.buffer, btf.byteOffset, btf.byteLength);
  if (btf.length < 24 || v.getUint16(0, true) !== BTF_MAGIC) return out;
  const hdrLen = v.getUint32(4, true);
  const typeOff = hdrLen + v.getUint32(8, true);
  const typeEnd = typeOff + v.getUint32(12, true);
  const strOff = hdrLen + v.getUint32(16, true);
  const decoder = new TextDecoder();
  const str = (off: number) => {
    const start = strOff + off;
    const end = btf.indexOf(0, start);
    return decoder.decode(btf.subarray(start, end < 0 ? btf.length : end));
  };
  for (let at = typeOff; at + 12 <= typeEnd;) {
    const info = v.getUint32(at + 4, true);
    const kind = (info >>> 24) & 0x1f, vlen = info & 0xffff;
    const members = at + 12;
    if ((kind === KIND_ENUM || kind === KIND_ENUM64) && str(v.getUint32(at, true)) === name) {
      const stride = kind === KIND_ENUM ? 8 : 12;
      for (let i = 0; i < vlen; i++) {
        const m = members + i * stride;
        out.set(v.getInt32(m + 4, true) >>> 0, str(v.getUint32(m, true)));
      }
      return out;
    }
    at = members + extraBytes(kind, vlen);
  }
  return out;
}

/** "SKB_DROP_REASON_NO_SOCKET" → "no_socket", "SKB_CONSUMED" → "consumed". */
export function dropReasonLabel(enumName: string): string {
  return enumName.replace(/^SKB_DROP_REASON_/, "").replace(/^SKB_/, "").toLowerCase();
}

/** Maps drop reason numbers to names; the kernel's BTF is read once, on the first use. */
export class DropReasons {
  #names: Map<number, string> | undefined;
  constructor(readonly btfPath = "/sys/kernel/btf/vmlinux") {}

  name(reason: number): string {
    if (!this.#names) {
      let names = new Map<number, string>();
      try {
        names = btfEnum(Deno.readFileSync(this.btfPath), "skb_drop_reason");
      } catch {
        // no BTF: numbers are shown as they are
      }
      this.#names = names;
    }
    const n = this.#names.get(reason);
    return n ? dropReasonLabel(n) : `reason_${reason}`;
  }
}

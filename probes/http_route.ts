/**
 * Route labels from request targets: ids in paths are folded so that a label names an
 * endpoint rather than a resource, and the number of distinct labels is bounded.
 */

/** The label of targets that are not paths, and of routes beyond a RouteTable's bound. */
export const OTHER_ROUTE = "other";

const SLASH = 47;

/**
 * Path without query/fragment, with ids folded to "*": segments that are all digits, UUIDs,
 * hex tokens of >= 16 hex chars (or >= 8 containing a digit and a letter a-f), long
 * base64/opaque tokens (>= 24 chars of [A-Za-z0-9_-] with a digit). "" is "/", "*"
 * (asterisk-form) stays "*", absolute-form URLs give their path, and other targets
 * (authority-form of CONNECT, garbage) are OTHER_ROUTE.
 */
export function foldRoute(target: string): string {
  if (target === "" || target === "*") return target || "/";
  let path = target;
  if (target.charCodeAt(0) !== SLASH) {
    path = absolutePath(target);
    if (path === "") return OTHER_ROUTE;
  }
  let end = path.length;
  for (let i = 0; i < end; i++) {
    const ch = path.charCodeAt(i);
    if (ch === 63 || ch === 35) end = i; // '?' or '#'
  }
  path = path.slice(0, end);
  const segments = path.split("/");
  let folded = false;
  for (let i = 1; i < segments.length; i++) {
    if (isId(segments[i])) {
      segments[i] = "*";
      folded = true;
    }
  }
  return folded ? segments.join("/") : path;
}

/** The path of an absolute-form target ("/" when it has none), or "" when not one. */
function absolutePath(target: string): string {
  const scheme = target.indexOf("://");
  if (scheme <= 0 || !/^[A-Za-z][A-Za-z0-9+.-]*$/.test(target.slice(0, scheme))) return "";
  for (let i = scheme + 3; i < target.length; i++) {
    const ch = target.charCodeAt(i);
    if (ch === SLASH) return target.slice(i);
    if (ch === 63 || ch === 35) break;
  }
  return "/";
}

const isDigit = (ch: number) => ch >= 48 && ch <= 57;
const isHexLetter = (ch: number) => (ch >= 97 && ch <= 102) || (ch >= 65 && ch <= 70);
const isWord = (ch: number) =>
  isDigit(ch) || (ch >= 97 && ch <= 122) || (ch >= 65 && ch <= 90) || ch === 95 || ch === 45;

/** A path segment that identifies a resource rather than naming an endpoint. */
function isId(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  let digits = 0, hexLetters = 0, words = 0;
  for (let i = 0; i < n; i++) {
    const ch = s.charCodeAt(i);
    if (isDigit(ch)) digits++;
    else if (isHexLetter(ch)) hexLetters++;
    if (isWord(ch)) words++;
  }
  if (digits === n) return true;
  if (digits + hexLetters === n) return n >= 16 || (n >= 8 && digits > 0 && hexLetters > 0);
  if (n === 36 && isUuid(s)) return true;
  return n >= 24 && words === n && digits > 0;
}

/** 8-4-4-4-12 hex digits. */
function isUuid(s: string): boolean {
  for (let i = 0; i < 36; i++) {
    const ch = s.charCodeAt(i);
    const dash = i === 8 || i === 13 || i === 18 || i === 23;
    if (dash ? ch !== 45 : !(isDigit(ch) || isHexLetter(ch))) return false;
  }
  return true;
}

/** Bounds distinct routes: the first `max` routes seen are kept, later new ones map to "other". */
export class RouteTable {
  readonly #max: number;
  readonly #seen = new Set<string>();

  constructor(max: number) {
    this.#max = Math.max(0, Math.floor(max) || 0);
  }

  get size(): number {
    return this.#seen.size;
  }

  route(folded: string): string {
    if (this.#seen.has(folded) || folded === OTHER_ROUTE) return folded;
    if (this.#seen.size >= this.#max) return OTHER_ROUTE;
    this.#seen.add(folded);
    return folded;
  }
}

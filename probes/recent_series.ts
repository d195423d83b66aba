/**
 * The series a stats table found last, tried before it builds a map key: a pod's requests and
 * calls fall in a few series, and comparing their fields costs less than a key string and a
 * map lookup per exchange.
 */

const RECENT = 8;

export class RecentSeries<T> {
  /** Tried in order by the caller; up to RECENT, the oldest replaced first. */
  readonly items: T[] = [];
  #next = 0;

  remember(s: T): void {
    this.items[this.#next] = s;
    this.#next = (this.#next + 1) % RECENT;
  }
}

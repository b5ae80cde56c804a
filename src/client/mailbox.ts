/** A queue of values that one consumer awaits in order; closing it makes every wait reject. */
export class Mailbox<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (v: T) => void; reject: (e: Error) => void } | null = null;
  private error: Error | null = null;

  put(item: T): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(item);
    } else {
      this.items.push(item);
    }
  }

  close(error: Error): void {
    this.error ??= error;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(error);
    }
  }

  /** The next item; items that arrived before a close are still delivered first. */
  next(): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** An item if one is waiting, without blocking. */
  poll(): T | undefined {
    return this.items.shift();
  }
}

import { createInterface, type Interface } from 'node:readline';
import { Writable } from 'node:stream';

/**
 * Terminal input for the interactive commands: one readline over stdin for lines, hidden answers
 * (passwords: nothing is echoed) and yes/no questions. Lines typed ahead of a question are kept, in
 * order, for the questions that follow.
 */
export class Prompt {
  private readonly rl: Interface;
  private muted = false;
  private closed = false;
  private readonly lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;

  constructor(
    input: NodeJS.ReadableStream = process.stdin,
    private readonly output: NodeJS.WritableStream = process.stdout,
  ) {
    const out = new Writable({
      write: (chunk, _enc, done) => {
        if (!this.muted) this.output.write(chunk);
        done();
      },
    });
    this.rl = createInterface({ input, output: out, terminal: (input as { isTTY?: boolean }).isTTY === true });
    this.rl.on('line', (line) => this.deliver(line));
    this.rl.on('close', () => {
      this.closed = true;
      this.deliver(null);
    });
  }

  private deliver(line: string | null): void {
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter) waiter(line);
    else if (line !== null) this.lines.push(line);
  }

  private next(): Promise<string | null> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Asks for a line; null at end of input (Ctrl-D). */
  ask(question: string): Promise<string | null> {
    this.rl.setPrompt(question);
    this.rl.prompt();
    return this.next();
  }

  /** Asks without echoing what is typed. */
  async askHidden(question: string): Promise<string | null> {
    this.output.write(question);
    this.muted = true;
    try {
      return await this.next();
    } finally {
      this.muted = false;
      this.output.write('\n');
    }
  }

  async confirm(question: string): Promise<boolean> {
    for (;;) {
      const answer = (await this.ask(`${question} (yes/no) `))?.trim().toLowerCase();
      if (answer === undefined) return false;
      if (answer === 'yes' || answer === 'y') return true;
      if (answer === 'no' || answer === 'n' || answer === '') return false;
      this.output.write("Please type 'yes' or 'no'.\n");
    }
  }

  close(): void {
    this.rl.close();
  }
}

import { createInterface, type Interface } from 'node:readline';
import { Writable } from 'node:stream';

/**
 * Terminal input for the interactive commands: one readline over stdin for lines, hidden answers
 * (passwords: nothing is echoed) and yes/no questions. Only used when stdin is a terminal.
 */
export class Prompt {
  private readonly rl: Interface;
  private muted = false;
  private closed = false;

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
    this.rl.on('close', () => (this.closed = true));
  }

  /** Asks for a line; null at end of input (Ctrl-D). */
  ask(question: string): Promise<string | null> {
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const onClose = () => resolve(null);
      this.rl.once('close', onClose);
      this.rl.question(question, (answer) => {
        this.rl.off('close', onClose);
        resolve(answer);
      });
    });
  }

  /** Asks without echoing what is typed. */
  async askHidden(question: string): Promise<string | null> {
    this.output.write(question);
    this.muted = true;
    try {
      return await this.ask('');
    } finally {
      this.muted = false;
      this.output.write('\n');
    }
  }

  async confirm(question: string): Promise<boolean> {
    for (;;) {
      const answer = (await this.ask(`${question} (yes/no) `))?.trim().toLowerCase();
      if (answer === undefined || answer === null) return false;
      if (answer === 'yes' || answer === 'y') return true;
      if (answer === 'no' || answer === 'n' || answer === '') return false;
      this.output.write("Please type 'yes' or 'no'.\n");
    }
  }

  close(): void {
    this.rl.close();
  }
}

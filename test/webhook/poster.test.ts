import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Poster } from '../../plugins/webhook/post.ts';

const poster = suite('webhook poster');

poster('a post started after close() is refused at once, not left waiting for a silent endpoint', async () => {
  // Accepts connections and never answers.
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const p = new Poster(`http://127.0.0.1:${port}/hook`, 10_000);
    p.close();
    const started = Date.now();
    let message = '';
    try {
      await p.post('{}', {});
    } catch (err) {
      message = (err as Error).message;
    }
    assert.match(message, /aborted: the server is stopping/);
    assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});

poster.run();

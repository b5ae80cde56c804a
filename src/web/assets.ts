/**
 * The page's files as the server sends them: from src/web/page.gen.ts (made by scripts/build-web.mjs from
 * src/web/page/), each with its bytes and an ETag of its content.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { PAGE_FILES } from './page.gen.ts';

export interface Asset {
  type: string;
  body: Buffer;
  etag: string;
}

export const ASSETS: Readonly<Record<string, Asset>> = Object.fromEntries(
  Object.entries(PAGE_FILES).map(([path, f]) => {
    const body = Buffer.from(f.text, 'utf8');
    return [path, { type: f.type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }];
  }),
);

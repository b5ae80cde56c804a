import { cac } from 'cac';
import { VERSION } from '../version.ts';
import { UsageError } from './errors.ts';

/** Builds the command line. Each action imports its module lazily, so `--help` loads nothing heavy. */
export function buildCli() {
  const cli = cac('ferry');

  cli
    .command('serve', 'Run a ferry server')
    .option('--host <host>', 'Address to listen on (default: every address, IPv6 and IPv4)')
    .option('--port <port>', 'Port to listen on, 0 for any free port (default: 2121)')
    .option('--data <dir>', 'Data directory: identity, users, audit log, homes (default: ./ferry-data)')
    .option('--signup <mode>', 'open: anyone may create an account; closed: only `ferry user add` (default: open)')
    .option('--insecure', 'Plain TCP without TLS (clients need --insecure too)')
    .option('--plugin <name|path>', 'Load a bundled plugin by name, or your own .js/.mjs file (repeatable)')
    .option('--config <file>', 'ferry.config.json or .yaml: host, port, data, signup, plugins with options')
    .option('--max-connections <n>', 'Connections in total (default: 1024)')
    .option('--max-connections-per-address <n>', 'Connections from one IP address (default: 32)')
    .option('--max-transfers-per-user <n>', 'Uploads + downloads in flight per user, across connections (default: 32)')
    .option('--max-upload-size <size>', 'Largest file accepted: 500M, 20 GiB (powers of 1024) or 1GB (powers of 1000) (default: 1T)')
    .option('--storage <url>', 'Keep files in an S3-compatible object store: s3://BUCKET[/PREFIX] (default: the data directory)')
    .option('--s3-endpoint <url>', "The object store's endpoint, for stores other than AWS (Ceph, Swift, MinIO, R2...)")
    .option('--s3-region <region>', 'The object store\'s region (default: AWS_REGION, else us-east-1)')
    .option('--cert <file>', "A certificate to present (PEM, with its chain, e.g. Let's Encrypt's fullchain.pem), with --key; default: ferry's own self-signed one")
    .option('--key <file>', 'The private key of --cert (PEM)')
    .option('--no-web', 'Do not answer browsers: no page on this port (default: the page at https://HOST:PORT/)')
    .option('--db <url>', 'Share state with other servers in PostgreSQL: postgres://USER[:PASSWORD]@HOST[:PORT]/DB (or FERRY_DB) (default: the data directory)')
    .option('--proxy-protocol <cidrs>', 'Behind a TCP balancer: its addresses or CIDR blocks (comma-separated, repeatable); their connections start with a PROXY v1/v2 header naming the real client')
    .example('ferry serve --data ./ferry-data --port 2121')
    .example('AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... ferry serve --storage s3://files/prod --s3-endpoint https://s3.example.org')
    .example('ferry serve --plugin quota --plugin ./my-plugin.mjs --config ferry.config.yaml')
    .action(async (options) => (await import('./serve.ts')).runServe(options));

  cli
    .command('connect [server]', 'Connect to a server: interactive in a terminal, one command per line from stdin otherwise')
    .option('--user <name>', 'User name (needed when not a terminal; the password comes from FERRY_PASSWORD)')
    .option('--fingerprint <fp>', "Pin the server's certificate fingerprint (SHA256:...)")
    .option('--ca <file>', 'Trust the certificate authorities in this PEM file instead of the built-in ones (or FERRY_CA)')
    .option('--signup', 'Not a terminal: create the account first')
    .option('--insecure', 'Plain TCP without TLS (the server must allow it)')
    .example('ferry connect files.example.org:2121')
    .example('echo "LIST" | FERRY_PASSWORD=... ferry connect host --user alice --fingerprint SHA256:...')
    .action(async (server, options) => (await import('./connect.ts')).runConnect(server, options));

  cli
    .command('batch [manifest]', 'Run a transfer job from a manifest (YAML or JSON; - for stdin): parallel, resumable, verified')
    .option('--manifest [path]', 'The manifest (- for stdin), instead of the argument')
    .option('--dry-run', 'Show the plan (each file, size, what would be skipped and why); transfer nothing')
    .option('--json', 'One JSON event per line on stdout (start, op, progress, done, skip, error, summary)')
    .option('--journal <path>', 'Journal of finished work (default: <manifest>.journal; none for stdin)')
    .option('--concurrency <n>', "Requests in flight (overrides the manifest's concurrency)")
    .option('--no-bundles', 'Send and fetch small files one request each, not many to a stream (where the server offers bundles)')
    .example('FERRY_PASSWORD=... ferry batch nightly.yaml')
    .example('ferry batch nightly.yaml --dry-run')
    .example('generate-manifest | ferry batch - --json --journal /var/lib/ferry/nightly.journal')
    // cac drops a lone '-' (stdin), so the raw arguments go along.
    .action(async (manifest, options) => (await import('./batch.ts')).runBatchCommand(manifest, options, cli.rawArgs));

  cli
    .command('user <action> [name]', 'Offline account admin: add | remove | list | passwd (run on the server machine)')
    .option('--data <dir>', 'Data directory of the server', { default: './ferry-data' })
    .option('--db <url>', "The servers' shared PostgreSQL database instead (or FERRY_DB)")
    .option('--admin', 'add: make the account an admin')
    .option('--perms <list>', 'add: comma-separated permissions (list,download,upload,overwrite,delete,rename,mkdir)')
    .example('ferry user add alice --data ./ferry-data --admin')
    .action(async (action, name, options) => (await import('./user.ts')).runUserCommand(action, name, options));

  cli
    .command('identity <action>', "The servers' shared TLS identity in the database: show | rotate")
    .option('--db <url>', "The servers' shared PostgreSQL database (or FERRY_DB)")
    .option('--key <file>', 'rotate: use this PEM private key (with --cert, e.g. from a CA) instead of making a new pair')
    .option('--cert <file>', 'rotate: the PEM certificate that goes with --key')
    .example('ferry identity show --db postgres://ferry@db/ferry')
    .example('ferry identity rotate --db postgres://ferry@db/ferry       # then restart the servers one by one')
    .action(async (action, options) => (await import('./identity.ts')).runIdentityCommand(action, options));

  cli.help();
  cli.version(VERSION);
  return cli;
}

/** Runs the CLI; resolves when the command has finished. Errors are thrown to the caller. */
export async function main(argv: string[]): Promise<void> {
  const cli = buildCli();
  cli.parse(argv, { run: false });
  if (cli.options.help || cli.options.version) return;
  if (!cli.matchedCommand) {
    const word = cli.args[0];
    if (word !== undefined) throw new UsageError(`Unknown command '${word}'; see ferry --help`);
    cli.outputHelp();
    return;
  }
  await cli.runMatchedCommand();
}

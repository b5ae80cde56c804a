/**
 * ferry's tables in a shared database. Append a migration to change them; never edit one that has shipped.
 */
import type { Migration } from './migrate.ts';

export const FERRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'accounts, throttles, audit, identity, servers',
    sql: `
      -- Accounts: one row per user; the key is the name in lower case (names are unique ignoring case).
      CREATE TABLE users (
        name_key text PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'user')),
        perms text[] NOT NULL,
        hash text NOT NULL,
        created text NOT NULL,
        added bigserial NOT NULL
      );

      -- Failed log-ins per address (kind 'a') and per user name (kind 'u'), as auth/throttle.ts keeps them in memory.
      CREATE TABLE login_failures (
        kind char(1) NOT NULL,
        key text NOT NULL,
        failures integer NOT NULL,
        last_failure timestamptz NOT NULL,
        locked_until timestamptz NOT NULL,
        PRIMARY KEY (kind, key)
      );

      -- Rate-limited events (sign-ups per address), one row each, pruned after their window.
      CREATE TABLE rate_events (
        kind text NOT NULL,
        key text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX rate_events_key ON rate_events (kind, key, at);

      -- The audit trail: each event as the JSON line the embedded audit.log would hold, in append order.
      CREATE TABLE audit_events (
        id bigserial PRIMARY KEY,
        at text NOT NULL,
        username text NOT NULL,
        line text NOT NULL
      );
      CREATE INDEX audit_events_order ON audit_events (at, id);
      CREATE INDEX audit_events_user ON audit_events (username, at, id);

      -- CLRLOG: the cleared events move here under the archive's name.
      CREATE TABLE audit_archives (
        name text PRIMARY KEY,
        cleared_by text NOT NULL,
        address text NOT NULL,
        cleared_at timestamptz NOT NULL DEFAULT now(),
        events bigint NOT NULL
      );
      CREATE TABLE audit_archived (
        archive text NOT NULL REFERENCES audit_archives (name),
        id bigint NOT NULL,
        at text NOT NULL,
        username text NOT NULL,
        line text NOT NULL,
        PRIMARY KEY (archive, id)
      );

      -- The one TLS identity every server presents (made by the first server to start).
      CREATE TABLE server_identity (
        id integer PRIMARY KEY CHECK (id = 1),
        key_pem text NOT NULL,
        cert_pem text NOT NULL,
        fingerprint text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );

      -- Running servers, seen every few seconds; what a server that stopped seeing itself held (transfer slots,
      -- quota holds) stops counting once it is not seen for a while.
      CREATE TABLE servers (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        seen_at timestamptz NOT NULL DEFAULT now()
      );

      -- Transfers in flight per user on each server (the per-user limit across servers).
      CREATE TABLE transfer_slots (
        server_id uuid NOT NULL,
        username text NOT NULL,
        in_flight integer NOT NULL,
        PRIMARY KEY (server_id, username)
      );
    `,
  },
  {
    version: 2,
    name: 'upload leases (one upload per key across servers)',
    sql: `
      CREATE TABLE upload_leases (
        key text PRIMARY KEY,
        server_id uuid NOT NULL,
        token uuid NOT NULL,
        taken_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
];

/* upgrade_assist--1.0.sql: install script of upgrade_assist 1.0 */

\echo Use "CREATE EXTENSION upgrade_assist" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Peers: the other cluster is a foreign server of this wrapper; credentials
-- live in user mappings, as with dblink and postgres_fdw.
-- ---------------------------------------------------------------------------

CREATE FUNCTION upgrade_assist.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'upgrade_assist_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER upgrade_assist
    VALIDATOR upgrade_assist.fdw_validator;

-- ---------------------------------------------------------------------------
-- Markers: an ordinary table, so that whatever carries the user's tables to
-- the peer (native logical replication, any CDC pipeline) carries it too.
-- origin is the writing cluster's system identifier; seq grows per origin.
-- ---------------------------------------------------------------------------

CREATE TABLE upgrade_assist.marker (
    origin      bigint      NOT NULL,
    seq         bigint      NOT NULL,
    kind        text        NOT NULL,
    written_at  timestamptz NOT NULL,
    written_lsn pg_lsn      NOT NULL,
    note        text,
    PRIMARY KEY (origin, seq),
    CONSTRAINT marker_kind_check CHECK (length(kind) BETWEEN 1 AND 63)
);
COMMENT ON TABLE upgrade_assist.marker IS
    'one row per marker; replicate it with the user tables';

-- Writes in the caller's transaction; SECURITY DEFINER so that a role granted
-- EXECUTE needs no privilege on the table itself.
CREATE FUNCTION upgrade_assist.emit_marker(
    kind text DEFAULT 'probe',
    note text DEFAULT NULL)
RETURNS upgrade_assist.marker
AS 'MODULE_PATHNAME', 'emit_marker'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION upgrade_assist.wait_for_marker(
    peer text,
    seq bigint,
    timeout interval DEFAULT '30s')
RETURNS interval
AS 'MODULE_PATHNAME', 'wait_for_marker'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.round_trip(
    peer text,
    timeout interval DEFAULT '30s',
    OUT seq bigint,
    OUT written_lsn pg_lsn,
    OUT latency interval)
RETURNS record
AS 'MODULE_PATHNAME', 'round_trip'
LANGUAGE C VOLATILE;

-- ---------------------------------------------------------------------------
-- Privileges: nothing that writes or talks to a peer is open to PUBLIC.
-- Monitoring roles (and the role a peer connects as) read the markers.
-- ---------------------------------------------------------------------------

REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.wait_for_marker(text, bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.round_trip(text, interval) FROM PUBLIC;

GRANT USAGE ON SCHEMA upgrade_assist TO pg_monitor;
GRANT SELECT ON upgrade_assist.marker TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Sequences (run on the new side): logical replication carries row values,
-- not sequence counters.  sequence_plan shows, for every sequence of the
-- database, where sync_sequences would move it; sync_sequences moves them
-- all in the caller's transaction (ALTER SEQUENCE ... RESTART, so all or
-- nothing).  new_value is what the next nextval() returns.
-- ---------------------------------------------------------------------------

-- One row of the plan: new_value is what the next nextval() returns.
CREATE TYPE upgrade_assist.sequence_step AS (
    sequence regclass,
    columns text[],
    current_value bigint,
    current_is_called boolean,
    source_value bigint,
    source_is_called boolean,
    column_extreme bigint,
    new_value bigint,
    action text,
    detail text);

CREATE FUNCTION upgrade_assist.sequence_plan(
    source text DEFAULT NULL,
    margin bigint DEFAULT 0)
RETURNS SETOF upgrade_assist.sequence_step
AS 'MODULE_PATHNAME', 'sequence_plan'
LANGUAGE C VOLATILE
SET row_security = off;

CREATE FUNCTION upgrade_assist.sync_sequences(
    source text DEFAULT NULL,
    margin bigint DEFAULT 0)
RETURNS SETOF upgrade_assist.sequence_step
AS 'MODULE_PATHNAME', 'sync_sequences'
LANGUAGE C VOLATILE
SET row_security = off;

-- row_security = off: a table whose rows row-level security would hide from
-- the caller makes the call fail instead of giving a wrong extreme.
-- sync_sequences changes state; sequence_plan reads every table and may
-- talk to a peer.  Neither is open to PUBLIC.
REVOKE ALL ON FUNCTION upgrade_assist.sequence_plan(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_sequences(text, bigint) FROM PUBLIC;

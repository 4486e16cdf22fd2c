-- Installing creates the schema, the wrapper and the marker table.
CREATE EXTENSION upgrade_assist;
SELECT extname, extrelocatable, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'upgrade_assist';
SELECT fdwname, fdwvalidator::regproc FROM pg_foreign_data_wrapper
 WHERE fdwname = 'upgrade_assist';
\d upgrade_assist.marker
SELECT p.proname, p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'upgrade_assist'::regnamespace
 ORDER BY 1;
-- The library is preloaded: its GUC is known and reserved.
SHOW upgrade_assist.connect_timeout;
SET upgrade_assist.no_such_setting = 1;
-- Only one schema, cannot be relocated.
ALTER EXTENSION upgrade_assist SET SCHEMA public;

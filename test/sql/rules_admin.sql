-- Deployments add their own rules; every change takes effect at once and is audited.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SET ROLE regress_admin;

-- a new sensitive key
SELECT tool_audit.sanitize('{"internal_note": "VIP", "x": 1}');
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, note)
VALUES ('key', 'exact', 'internal_note', 'redact', 'support notes');
SELECT tool_audit.sanitize('{"internal_note": "VIP", "x": 1}');
-- exempt a key a built-in rule would catch: lower priority number wins
SELECT tool_audit.sanitize('{"password_policy": "12 chars", "password": "p"}');
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'password_policy', 'keep', 10);
SELECT tool_audit.sanitize('{"password_policy": "12 chars", "password": "p"}');
-- keep covers the whole subtree, value detectors included
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'test_fixture', 'keep', 10);
SELECT tool_audit.sanitize('{"test_fixture": {"card": "4111111111111111", "password": "p"}}');
-- drop a key entirely
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action)
VALUES ('key', 'regex', '^debug', 'drop');
SELECT tool_audit.sanitize('{"debugInfo": {"stack": "..."}, "debug_level": 3, "level": 3}');
-- value rules with regular expressions: redact, pseudonymize, drop
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action)
VALUES ('value', 'regex', 'MRN-[0-9]{6}', 'pseudonymize'),
       ('value', 'regex', '(?i)confidential', 'redact'),
       ('value', 'regex', '^DROPME', 'drop');
SELECT tool_audit.sanitize('{"note": "patient MRN-123456, Confidential", "tags": ["a", "DROPME now", "b"], "gone": "DROPME"}');
SELECT tool_audit.sanitize_text('MRN-123456') = tool_audit.pseudonymize('MRN-123456') AS regex_pseudonym_links;
-- a rule whose matches contain several built-in findings
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('value', 'regex', '(?i)internal note:[^;]*', 'redact', 10);
SELECT tool_audit.sanitize_text('internal note: SSN 078-05-1120, spouse 219-09-9999; ok');

-- bad rules are refused with a reason
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('value', 'regex', '([unclosed', 'redact')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('value', 'detector', 'iban', 'redact')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'detector', 'jwt', 'redact')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('value', 'exact', 'x', 'redact')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', 'x', 'encrypt')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', '', 'redact')$$);
SELECT regress_try($$INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, builtin) VALUES ('key', 'exact', 'x', 'keep', true)$$);
-- built-in rules are fixed (override them with a higher-priority rule instead)
SELECT regress_try($$UPDATE tool_audit.sanitize_rules SET enabled = false WHERE builtin AND pattern = 'password'$$);
SELECT regress_try($$DELETE FROM tool_audit.sanitize_rules WHERE builtin$$);

-- disabling a rule takes effect at once
UPDATE tool_audit.sanitize_rules SET enabled = false WHERE pattern = 'internal_note';
SELECT tool_audit.sanitize('{"internal_note": "VIP"}');
-- a rolled-back change is forgotten
BEGIN;
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action) VALUES ('key', 'exact', 'colour', 'redact');
SELECT tool_audit.sanitize('{"colour": "red"}');
ROLLBACK;
SELECT tool_audit.sanitize('{"colour": "red"}');

-- rules cannot blank the record of their own changes: the extension's own
-- events are sanitized by the built-in rules only
INSERT INTO tool_audit.sanitize_rules (applies_to, match, pattern, action, priority)
VALUES ('key', 'exact', 'after', 'drop', 1), ('key', 'exact', 'before', 'drop', 1);
SELECT tool_audit.sanitize('{"after": 1, "before": 2, "x": 3}') AS ordinary_documents_obey_them;

DELETE FROM tool_audit.sanitize_rules WHERE NOT builtin;
SELECT tool_audit.sanitize('{"internal_note": "VIP", "debug_level": 3, "note": "MRN-123456"}');
RESET ROLE;
SELECT payload ? 'after' AS after_kept, payload ? 'before' AS before_kept
  FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.sanitize_rule.%' ORDER BY id DESC LIMIT 1;

-- every rule change is an admin event, attributed to the role that made it
SELECT event_type, actor, coalesce(payload->'after'->>'pattern', payload->'before'->>'pattern') AS pattern
  FROM tool_audit.admin_events WHERE event_type LIKE 'tool_audit.sanitize_rule.%' ORDER BY id;

-- Secrets found by their value where the key is innocent (tool_audit.sanitize_text).
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql

-- bearer and basic credentials
SELECT tool_audit.sanitize_text('Authorization: Bearer abc.def-123_XYZ~+/=');
SELECT tool_audit.sanitize_text('basic dXNlcjpwYXNzd29yZA==');
SELECT tool_audit.sanitize_text('the bearer of bad news');          -- too short to be a token
-- JSON Web Tokens
SELECT tool_audit.sanitize_text('jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk end');
SELECT tool_audit.sanitize_text('eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.');   -- unsigned, still a token
SELECT tool_audit.sanitize_text('eyJ is how JSON starts in base64');
-- PEM private keys, not public ones
SELECT tool_audit.sanitize_text(E'key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nafter');
SELECT tool_audit.sanitize_text(E'-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg (cut off)');
SELECT tool_audit.sanitize_text(E'-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----');
-- API key shapes
SELECT tool_audit.sanitize_text('openai sk-proj-abcdefghijklmnopqrstuvwx, anthropic sk-ant-api03-abcdefghijklmnopqrst');
SELECT tool_audit.sanitize_text('stripe sk_live_51Habcdefghijklmnop and whsec_abcdefghijklmnop');
SELECT tool_audit.sanitize_text('gh ghp_abcdefghijklmnopqrstuvwxyz0123456789, pat github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz');
SELECT tool_audit.sanitize_text('aws AKIAIOSFODNN7EXAMPLE google AIzaSyA-abcdefghijklmnopqrstuvwxyz12345');
SELECT tool_audit.sanitize_text('slack xoxb-1234567890-abcdefghij gitlab glpat-abcdefghijklmnopqrst');
SELECT tool_audit.sanitize_text('rk_live_abcdefghijklmnop hf_abcdefghijklmnopqrstuvwxyz0123 npm_abcdefghijklmnopqrstuvwxyz0123456789 ASIAIOSFODNN7EXAMPLE');
SELECT tool_audit.sanitize_text('rk_live_short hf_short npm_short ASIAshort harmless');
SELECT tool_audit.sanitize_text('task-force-alpha-bravo-charlie-delta, sk-short, AKIAshort, flask-sqlalchemy-extension');
-- US social security numbers (pseudonymized, so they still link)
SELECT tool_audit.sanitize_text('SSN 078-05-1120 and 078 05 1120');
SELECT tool_audit.sanitize_text('not SSNs: 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000');
SELECT tool_audit.sanitize_text('not SSNs: 078-05 1120, 1-078-05-1120, 078-05-11201, phone 555-123-4567');
-- card numbers: Luhn-valid, 13 to 19 digits, grouped or not
SELECT tool_audit.sanitize_text('visa 4111 1111 1111 1111, mc 5500-0000-0000-0004, amex 378282246310005');
SELECT tool_audit.sanitize_text('not cards: 4111111111111112, 411111111111, 41111111111111111111, ORD4111111111111111');
-- overlapping findings of different lengths never break the output
SELECT tool_audit.sanitize_text('Bearer sk-abcdefghijklmnopqrstuvwx/sk-abcdefghijklmnopqrstuvwy');
-- cards however grouped, and among other digit groups (the union of all windows)
SELECT tool_audit.sanitize_text('41111111 11111111'), tool_audit.sanitize_text('4111-111111-111111'),
       tool_audit.sanitize_text('411 111 111 111 1111'), tool_audit.sanitize_text('exp 2028 4111 1111 1111 1111');
-- a card among other digit groups is still found
SELECT tool_audit.sanitize_text('card 4111 1111 1111 1111 123'), tool_audit.sanitize_text('4242 4242 4242 4242 05 27'),
       tool_audit.sanitize_text('exp 05 27 4242-4242-4242-4242');
-- several findings in one string; overlapping findings are claimed once
SELECT tool_audit.sanitize_text('a=sk-abcdefghijklmnopqrstuvwx b=4111111111111111 c=078-05-1120');
SELECT tool_audit.sanitize_text('Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig');
-- the parts of a secret an earlier finding does not cover are removed too
SELECT tool_audit.sanitize_text('Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln/TOPSECRETSUFFIX+more==');
-- nothing to find
SELECT tool_audit.sanitize_text(''), tool_audit.sanitize_text('hello world');
-- in a document, strings at any depth are scanned (keys too: see sanitize)
SELECT tool_audit.sanitize('{"notes": ["call 078-05-1120", {"deep": ["Bearer abcdefghijklmnop"]}],
  "ref": "ORD-1"}');

-- adversarial strings that made earlier scanners quadratic finish at once:
-- at these sizes the quadratic scanners took well over a minute natively;
-- the linear ones take milliseconds (seconds under valgrind)
SET statement_timeout = '30s';
SELECT length(tool_audit.sanitize_text(repeat('-AIza', 160000))) AS api_key_runs;
SELECT length(tool_audit.sanitize_text(repeat('-----BEGIN ', 80000))) AS pem_begins;
SELECT length(tool_audit.sanitize_text(repeat('-----BEGIN PRIVATE KEY-----', 30000))) AS pem_labels;
SELECT length(tool_audit.sanitize_text(repeat('eyJ', 300000))) AS jwt_starts;
SELECT length(tool_audit.sanitize_text(repeat('bearer ', 140000))) AS bearer_words;
SELECT length(tool_audit.sanitize_text(repeat('4111 ', 200000))) AS digit_groups;
RESET statement_timeout;

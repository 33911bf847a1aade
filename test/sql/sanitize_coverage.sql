-- Sanitizer coverage (issue 12, section 4): secrets that used to pass through,
-- and a corpus of innocent documents that must come through unchanged.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/fixtures.sql
SELECT key_id, active FROM tool_audit.pseudonym_key_ids WHERE active;

-- credentials inside URLs and connection strings: the password goes, the
-- user, host and path stay
SELECT tool_audit.sanitize_text('postgresql://app:s3cr3t-P4ss@db.internal:5432/prod?sslmode=require');
SELECT tool_audit.sanitize_text('clone https://x-access-token:abcd1234efgh@github.com/org/repo.git now');
SELECT tool_audit.sanitize_text('mongodb+srv://admin:p%40ss%3Aword@cluster0.example.net/db, redis://:hunter2@cache:6379/0');
SELECT tool_audit.sanitize_text('amqp://guest:guest@localhost ftp://anon:me@example.com@ftp.example.com/pub');
-- not credentials: no password, or the @ is past the authority
SELECT tool_audit.sanitize_text('ssh://git@github.com/org/repo https://example.com/@user https://host:8443/a?b=c user@example.com');
-- connection strings in key=value form (libpq, ADO.NET, JDBC)
SELECT tool_audit.sanitize_text('host=db user=app password=s3cret dbname=prod');
SELECT tool_audit.sanitize_text($$host=db password='two words' port=5432$$);
SELECT tool_audit.sanitize_text('Server=tcp:db.example.net;Database=x;User Id=sa;Password=Secr3t!;Encrypt=true');
SELECT tool_audit.sanitize_text('DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4==;EndpointSuffix=core.windows.net');
-- query strings: values of keys the key rules call sensitive
SELECT tool_audit.sanitize_text('https://api.example.com/cb?code=ok&access_token=abc123&state=xyz');
SELECT tool_audit.sanitize_text('/login?user=bob&pwd=hunter2&next=%2Fhome'), tool_audit.sanitize_text('?password=p&api_key=k#frag');
SELECT tool_audit.sanitize_text('https://shop.example.com/orders?id=123&page=2&sort=desc');
-- idempotent: markers are not redacted again
SELECT tool_audit.sanitize_text(tool_audit.sanitize_text('a?password=p&email=jane@example.com'))
     = tool_audit.sanitize_text('a?password=p&email=jane@example.com') AS idempotent,
       tool_audit.sanitize_text('a?password=p&email=jane@example.com') AS sanitized;

-- cloud secret keys and other providers' key shapes
SELECT tool_audit.sanitize_text('aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY');
SELECT tool_audit.sanitize_text('google GOCSPX-abcdefghijklmnopqrstuvwxyz12 oauth ya29.a0AfH6SMBxyzabcdefghijklmnop');
SELECT tool_audit.sanitize_text('sendgrid SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
SELECT tool_audit.sanitize_text('do dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef shopify shpat_0123456789abcdef0123456789abcdef');
SELECT tool_audit.sanitize_text('docker dckr_pat_abcdefghijklmnopqrstuvwxyz0 pypi pypi-AgEIcHlwaS5vcmcCJGE0ZjM2YjE1LTk1 slack xapp-1-A0123456789-0123456789-abcdef');
SELECT tool_audit.sanitize_text('square sq0csp-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG atlassian ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz');
SELECT tool_audit.sanitize_text('gitlab deploy gldt-abcdefghijklmnopqrst, slack xoxe.xoxp-1-abcdefghijklmnop, anthropic sk-ant-admin01-abcdefghijklmnopqrstu');
-- look-alikes that are not keys
SELECT tool_audit.sanitize_text('SG.attributes dop_v1 shpat_short pypi-package ya29. GOCSPX- ATATT');

-- the Token scheme, and case and whitespace variants of Bearer
SELECT tool_audit.sanitize_text('Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b');
SELECT tool_audit.sanitize_text(E'authorization: BEARER\tabcdefghijklmnop'), tool_audit.sanitize_text(E'bEaReR   abcdefghijklmnop'),
       tool_audit.sanitize_text(E'Bearer\nabcdefghijklmnop');
-- prose with "token" stays
SELECT tool_audit.sanitize_text('the token expired yesterday; token authentication_configuration is off; a Token of thanks');

-- short key names for passwords, sessions, one-time codes and signatures
SELECT tool_audit.sanitize('{"pass": "a", "pw": "b", "pwd": "c", "pswd": "d", "passcode": "e", "credentials": "f",
  "aws_credentials": {"id": 1}, "session_id": "g", "sessionId": "h", "JSESSIONID": "i", "otp": "j", "totp": "k",
  "pin": "1234", "pin_code": "5678", "signature": "l", "x-signature": "m", "sig": "n", "mfa_code": "o",
  "connection_string": "p", "AccountKey": "q", "cookies": "r", "security_code": "s", "verification_code": "t"}');
-- innocent neighbours stay
SELECT tool_audit.sanitize('{"passenger": "Ann", "pinned": true, "spin": 3, "session_count": 2, "sessions": 5,
  "signature_version": "4", "otp_enabled": true, "passes": 2, "compass": "N", "bypass": false, "pwm": 1}');
-- social security numbers under longer keys are personal data (pseudonymized)
SELECT tool_audit.sanitize('{"patient_ssn": "078-05-1120", "social_security_no": "078051120", "ssn_last4": "1120",
  "issn": "0317-8471", "classname": "x"}');

-- key names that only look like "password": full-width letters, zero-width
-- characters, Cyrillic and Greek look-alikes, combining marks, math letters
SELECT tool_audit.sanitize(jsonb_build_object(
  U&'\FF50\FF41\FF53\FF53\FF57\FF4F\FF52\FF44', 'fullwidth',
  U&'pass\200Bword', 'zero width space',
  U&'pa\200Dss\FEFFwo\2060rd', 'joiners',
  U&'p\0430ssw\043Erd', 'cyrillic',
  U&'\0440\0430ssw\03BFrd', 'cyrillic and greek',
  U&'to\200Bken', 'token',
  U&'p\0061\0301ssword', 'combining accent',
  U&'\+01D429\+01D41A\+01D42C\+01D42C\+01D430\+01D428\+01D42B\+01D41D', 'math bold',
  U&'\24DF\24D0\24E2\24E2\24E6\24DE\24E1\24D3', 'circled'));
-- genuine non-Latin keys are not folded into English ones
SELECT tool_audit.sanitize('{"пароль": "x", "naïve": "y", "café": "z", "κωδικός": "w"}');

-- name/value header lists: the value of an entry whose name is sensitive
SELECT tool_audit.sanitize('{"headers": [{"name": "Authorization", "value": "opaque-credential-1"},
  {"name": "Content-Type", "value": "application/json"}, {"name": "X-Api-Key", "value": "k-2"},
  {"name": "Cookie", "value": {"sid": "x"}}, {"key": "password", "value": "p"},
  {"Name": "Set-Cookie", "Value": "s=1"}, {"name": "email", "value": "jane@example.com"}]}');
-- a "name" that is not sensitive, or a pair that is not name/value, stays
SELECT tool_audit.sanitize('[{"name": "token_count", "value": 12}, {"name": "password", "title": "x"}, {"name": "Bob", "value": "Smith"}]');
-- with both "key" and "name", a sensitive one decides
SELECT tool_audit.sanitize('[{"key": "api_key", "name": "Primary", "value": "k-1"}, {"key": "colour", "name": "Token", "value": "t-1"}]');

-- JSON inside strings: parsed, sanitized as JSON, re-serialized
SELECT tool_audit.sanitize('{"body": "{\"user\": \"bob\", \"password\": \"hunter2\", \"n\": 1}"}');
SELECT tool_audit.sanitize('{"args": "[{\"token\": \"abc\"}, {\"ok\": true}]", "plain": "{not json}"}');
-- nested two levels deep, and value rules inside
SELECT tool_audit.sanitize(jsonb_build_object('outer', jsonb_build_object('inner',
  '{"secret": 1, "note": "ssn 078-05-1120"}')::text));
-- JSON with nothing to remove is left as it was written
SELECT tool_audit.sanitize('{"body": "{\"b\":1,   \"a\":[2, 3]}"}');
-- strings that look like JSON but cannot be parsed into jsonb are scanned as text
SELECT tool_audit.sanitize(jsonb_build_object('a', '{"password": "x", "n": 1e999999}',
  'b', '{"password": "\u0000"}', 'c', '[' || repeat('[', 200) || ']', 'd', '{"pw": 1,}'));
SELECT tool_audit.sanitize_text('{"api_key": "k1", "ok": true}');

-- SSNs without separators: only where the words before them say SSN
SELECT tool_audit.sanitize_text('SSN 078051120; social security number: 078051120; ssn#078051120');
SELECT tool_audit.sanitize_text('order 078051120 shipped; invoice 123456789; ssn 000051120 is invalid');
SELECT tool_audit.sanitize('{"note": "my ssn is 078051120", "order_id": 78051120, "ref": "078051120"}');

-- the innocent corpus: every document comes through unchanged
\getenv abs_srcdir PG_ABS_SRCDIR
\set innocent :abs_srcdir '/vectors/innocent.jsonl'
CREATE TEMP TABLE innocent_lines (line text);
COPY innocent_lines FROM :'innocent' WITH (FORMAT csv, DELIMITER E'\x02', QUOTE E'\x01');
CREATE TEMP TABLE innocent AS
  SELECT row_number() OVER () AS n, line::jsonb AS doc FROM innocent_lines
   WHERE line NOT LIKE '#%' AND line <> '';
SELECT count(*) AS innocent_documents FROM innocent;
SELECT n, doc, tool_audit.sanitize(doc) AS changed_to FROM innocent
 WHERE tool_audit.sanitize(doc) IS DISTINCT FROM doc ORDER BY n;
-- and their strings one by one, as text columns
SELECT n, s FROM innocent, jsonb_path_query(doc, 'strict $.**') AS v(j),
       LATERAL (SELECT j #>> '{}') AS t(s)
 WHERE jsonb_typeof(j) = 'string' AND tool_audit.sanitize_text(s) IS DISTINCT FROM s ORDER BY n;

-- the new scanners stay linear on adversarial input
SET statement_timeout = '30s';
SELECT length(tool_audit.sanitize_text(repeat('a://b:', 100000))) AS url_runs;
SELECT length(tool_audit.sanitize_text(repeat('x://u:p', 50000) || '@')) AS url_no_at;
SELECT length(tool_audit.sanitize_text(repeat('password=', 50000))) AS params;
SELECT length(tool_audit.sanitize_text(repeat('&pw', 100000) || '=x')) AS param_names;
SELECT length(tool_audit.sanitize_text(repeat('a=b&', 100000))) AS param_pairs;
SELECT length(tool_audit.sanitize_text(repeat('ssn ', 100000))) AS ssn_words;
SELECT length(tool_audit.sanitize_text(repeat('token ', 100000))) AS token_words;
SELECT length(tool_audit.sanitize_text('[' || repeat('{"a":"[1]",', 20000) || '"x"]')) AS json_like;
RESET statement_timeout;

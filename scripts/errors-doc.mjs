// Regenerates docs/errors.md from the error catalogue (run: npm run docs:errors).
import { writeFileSync } from 'node:fs'
import { ERROR_CODES } from '../dist/src/errors/catalogue.js'

const rows = Object.entries(ERROR_CODES).map(([code, s]) => `| \`${code}\` | ${s.http} | ${s.connack} | ${s.summary} |`)
const text = `# Error codes

Every error streamgate reports carries one of these stable codes: in API bodies
(\`{ "error": { "code", "message" } }\`), in CLI output (\`error E_CODE: message\`) and in the log
(\`code\` field). Scripts should branch on the code, never on the message.

- **HTTP**: the status the API answers with. 5xx bodies carry a generic message; the details are in the log.
- **CONNACK**: the MQTT 3.1.1 return code sent when the error ends a CONNECT (1 unacceptable protocol
  version, 2 identifier rejected, 3 server unavailable, 4 bad user name or password, 5 not authorized). Errors after CONNECT close the
  connection instead: MQTT 3.1.1 has no negative PUBACK or reason codes.

The source of truth is \`src/errors/catalogue.ts\` (regenerate this file with \`npm run docs:errors\`);
a unit test keeps the two in step.

| code | HTTP | CONNACK | meaning |
| --- | --- | --- | --- |
${rows.join('\n')}
`
writeFileSync(new URL('../docs/errors.md', import.meta.url), text)

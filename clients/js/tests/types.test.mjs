// The shipped TypeScript types compile against an application's use of
// the SDK (tests/usage.ts), strictly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

test('the types compile', () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const args = [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--lib', 'es2022,dom', join(here, 'usage.ts')];
  let out = '';
  try {
    execFileSync(process.execPath, args, { cwd: join(here, '..'), encoding: 'utf8' });
  } catch (err) {
    out = `${err.stdout}${err.stderr}`;
  }
  assert.equal(out, '');
});

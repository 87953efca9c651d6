import { fileURLToPath } from 'node:url'

/**
 * The compiled file of a worker that sits next to `moduleUrl` (pass import.meta.url). Workers
 * run compiled JavaScript: under vitest, where this module is TypeScript from src/, the worker
 * comes from dist/ (the test script builds first).
 */
export function siblingWorkerFile(moduleUrl: string, workerName: string): string {
  const here = fileURLToPath(moduleUrl)
  const file = here.replace(/[^\\/]+\.(ts|js)$/, `${workerName}.js`)
  return here.endsWith('.ts') ? file.replace(/([\\/])src([\\/]stream[\\/](embedded|kafka)[\\/])/, '$1dist$1src$2') : file
}

/**
 * Placeholder until `streamgate tail` lands (owned by another change); it only keeps main.ts's
 * dispatch compiling and tells the user the command is not there yet.
 */
export async function tailCommand(_argv: string[]): Promise<number> {
  process.stderr.write('error: streamgate tail is not available in this build yet\n')
  return 1
}

/** Where provisioning says what it does: one line per step, so a slow first run is never silent. */
export type Report = (line: string) => void

export const reportToStderr: Report = (line) => {
  process.stderr.write(`[local-infra] ${line}\n`)
}

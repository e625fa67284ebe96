/** A server this package started (or found) and how to stop it. */
export interface RunningServer {
  url: string
  description: string
  stop(): Promise<void>
}

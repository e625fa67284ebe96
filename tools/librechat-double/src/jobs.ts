import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { ContentPart } from './store.js'
import type { StreamStats } from './types.js'

/** Counters of one stream id, kept for the double's lifetime so tests can read them afterwards. */
class StatsRecord {
  readonly subscribers = new Set<Subscriber>()
  framesWritten = 0
  bytesWritten = 0
  drainWaits = 0

  snapshot(): StreamStats {
    return {
      subscribers: this.subscribers.size,
      framesWritten: this.framesWritten,
      bytesWritten: this.bytesWritten,
      waitingForDrain: [...this.subscribers].some((subscriber) => subscriber.waitingForDrain),
      drainWaits: this.drainWaits,
    }
  }
}

/**
 * One SSE response. Frames are written one by one as they come; when `write()` returns false the
 * subscriber stops writing until the socket drains, so a slow reader never makes the double
 * push more into a full socket (frames wait in this subscriber's queue instead).
 */
export class Subscriber {
  private readonly queue: string[] = []
  private writing = false
  private ending = false
  private closed = false
  private readonly closedSignal = new AbortController()
  waitingForDrain = false

  constructor(
    private readonly response: ServerResponse,
    private readonly stats: StatsRecord,
    onClose: () => void,
  ) {
    stats.subscribers.add(this)
    response.on('close', () => {
      this.closed = true
      this.closedSignal.abort()
      this.waitingForDrain = false
      stats.subscribers.delete(this)
      onClose()
    })
  }

  get isClosed(): boolean {
    return this.closed
  }

  send(frame: string): void {
    if (this.closed || this.ending) return
    this.queue.push(frame)
    void this.pump()
  }

  /** Ends the response once every queued frame is written. */
  end(): void {
    this.ending = true
    void this.pump()
  }

  private async pump(): Promise<void> {
    if (this.writing) return
    this.writing = true
    for (let frame = this.queue.shift(); frame !== undefined; frame = this.queue.shift()) {
      if (this.closed) break
      const flushed = this.response.write(frame)
      this.stats.framesWritten += 1
      this.stats.bytesWritten += Buffer.byteLength(frame)
      if (!flushed) {
        this.waitingForDrain = true
        this.stats.drainWaits += 1
        await once(this.response, 'drain', { signal: this.closedSignal.signal }).catch(
          () => undefined,
        )
        this.waitingForDrain = false
      }
    }
    this.writing = false
    if (this.ending && !this.closed && this.queue.length === 0) this.response.end()
  }
}

export type JobStatus = 'running' | 'complete' | 'error' | 'aborted'

export interface ResumeState {
  runSteps: unknown[]
  aggregatedContent: ContentPart[]
  userMessage: Record<string, unknown> | null
  responseMessageId: string
  conversationId: string
  sender: string
}

/** A generation job: runs without subscribers, buffers what it emits until the first one comes. */
export class StreamJob {
  status: JobStatus = 'running'
  readonly createdAt = Date.now()
  readonly abortController = new AbortController()
  readonly resumeState: ResumeState
  private readonly buffered: string[] = []
  private terminalFrame: string | undefined
  hadSubscriber = false
  private readonly subscribers = new Set<Subscriber>()
  private markFinished: () => void = () => undefined
  /** Settles when the terminal frame has been emitted. */
  readonly finished = new Promise<void>((resolve) => {
    this.markFinished = resolve
  })

  constructor(
    readonly streamId: string,
    readonly userId: string,
    private readonly stats: StatsRecord,
    private readonly onFinished: (job: StreamJob) => void,
  ) {
    this.resumeState = {
      runSteps: [],
      aggregatedContent: [],
      userMessage: null,
      responseMessageId: '',
      conversationId: streamId,
      sender: '',
    }
  }

  get isRunning(): boolean {
    return this.status === 'running'
  }

  emit(frame: string): void {
    if (!this.isRunning) return
    if (!this.hadSubscriber) this.buffered.push(frame)
    for (const subscriber of this.subscribers) subscriber.send(frame)
  }

  /** Emits the terminal frame (final or error) and ends every subscriber after it. */
  finish(status: Exclude<JobStatus, 'running'>, terminalFrame: string): void {
    if (!this.isRunning) return
    this.emit(terminalFrame)
    this.status = status
    this.terminalFrame = terminalFrame
    for (const subscriber of this.subscribers) subscriber.end()
    this.onFinished(this)
    this.markFinished()
  }

  subscribe(response: ServerResponse, syncFrame: string | undefined): Subscriber {
    const subscriber = new Subscriber(response, this.stats, () =>
      this.subscribers.delete(subscriber),
    )
    if (syncFrame) subscriber.send(syncFrame)
    // The first subscriber gets everything emitted so far (the terminal frame too, if finished).
    const replay = this.hadSubscriber ? [] : this.buffered.splice(0)
    this.hadSubscriber = true
    for (const frame of replay) subscriber.send(frame)
    if (!this.isRunning) {
      // A later subscriber of a kept, finished job gets its terminal frame only.
      if (replay.length === 0 && this.terminalFrame) subscriber.send(this.terminalFrame)
      subscriber.end()
      return subscriber
    }
    this.subscribers.add(subscriber)
    return subscriber
  }
}

/** Jobs by stream id (= conversation id), per-user lookups, and when finished jobs are dropped. */
export class JobRegistry {
  private readonly jobs = new Map<string, StreamJob>()
  private readonly stats = new Map<string, StatsRecord>()
  private readonly dropTimers = new Set<NodeJS.Timeout>()

  constructor(
    private readonly keepCompletedMs: number,
    private readonly firstSubscriberGraceMs: number,
  ) {}

  create(streamId: string, userId: string): StreamJob {
    const previous = this.jobs.get(streamId)
    // A new turn on the same conversation replaces the old job under the same stream id.
    previous?.abortController.abort()
    const job = new StreamJob(streamId, userId, this.statsFor(streamId), (finished) =>
      this.scheduleDrop(finished),
    )
    this.jobs.set(streamId, job)
    return job
  }

  get(streamId: string): StreamJob | undefined {
    return this.jobs.get(streamId)
  }

  running(userId: string): StreamJob[] {
    return [...this.jobs.values()].filter((job) => job.userId === userId && job.isRunning)
  }

  latestRunning(userId: string): StreamJob | undefined {
    return this.running(userId).sort((a, b) => b.createdAt - a.createdAt)[0]
  }

  allRunning(): StreamJob[] {
    return [...this.jobs.values()].filter((job) => job.isRunning)
  }

  statsFor(streamId: string): StatsRecord {
    let record = this.stats.get(streamId)
    if (!record) {
      record = new StatsRecord()
      this.stats.set(streamId, record)
    }
    return record
  }

  snapshot(streamId: string): StreamStats | undefined {
    return this.stats.get(streamId)?.snapshot()
  }

  /** A raw SSE response that is not a job subscriber (v0.8.1's POST stream). */
  attachDirect(streamId: string, response: ServerResponse): Subscriber {
    return new Subscriber(response, this.statsFor(streamId), () => undefined)
  }

  close(): void {
    for (const timer of this.dropTimers) clearTimeout(timer)
    this.dropTimers.clear()
  }

  private scheduleDrop(job: StreamJob): void {
    const drop = () => {
      if (this.jobs.get(job.streamId) === job) this.jobs.delete(job.streamId)
    }
    const keepMs = job.hadSubscriber
      ? this.keepCompletedMs
      : Math.max(this.keepCompletedMs, this.firstSubscriberGraceMs)
    if (keepMs <= 0) {
      drop()
      return
    }
    const timer = setTimeout(() => {
      this.dropTimers.delete(timer)
      drop()
    }, keepMs)
    timer.unref()
    this.dropTimers.add(timer)
  }
}

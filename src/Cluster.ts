/**
 * The nodes of a cluster, as each node knows them: its own id, the nodes it
 * heard from lately, and questions asked of every node over the bus with
 * their answers gathered. Presence and the server API ask through it.
 *
 * Every node says it is there on an internal channel, at once and then,
 * once it knows of another node, every 5 seconds; it counts a node it heard
 * from in the last 15 seconds. `ask`
 * publishes a question of a kind to every node (this one included) and waits
 * for the answers of every node it counts, at most the timeout: the answer
 * says whether every node answered (`complete`), never a silent partial
 * result. A node answers the kinds it `serve`s; a kind it does not serve is
 * answered `undefined`, so that a node of another version does not make every
 * question wait for the timeout.
 *
 * On the in-memory bus the cluster is this node alone.
 *
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Exit, Layer, Result, Schedule, type Scope } from "effect"
import { Bus, type BusError } from "./Bus.ts"
import * as Channel from "./Channel.ts"
import { randomId } from "./internal/wire/ids.ts"

/**
 * One node's answer to a question.
 *
 * @since 0.1.0
 * @category models
 */
export interface Answer<A> {
  readonly node: string
  /** `undefined` when the node does not serve the kind (or failed to answer it). */
  readonly answer: A | undefined
}

/**
 * The answers to a question: of every node that answered in time, and
 * whether every node counted did.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gathered<A> {
  readonly answers: ReadonlyArray<Answer<A>>
  readonly complete: boolean
}

/**
 * The cluster as this node knows it.
 *
 * @since 0.1.0
 * @category services
 */
export class Cluster extends Context.Service<Cluster, {
  /** This node's id: random at each start, unique in the cluster. */
  readonly node: string
  /** When this node started (ms since the epoch). */
  readonly startedAt: number
  /** The nodes heard from lately, this one included. */
  readonly nodes: Effect.Effect<ReadonlySet<string>>
  /**
   * Asks every node (this one included) a question of `kind` (a JSON value)
   * and gathers the answers, waiting at most `timeout` (default 2 seconds).
   */
  readonly ask: <A>(
    kind: string,
    question: unknown,
    timeout?: Duration.Input
  ) => Effect.Effect<Gathered<A>, BusError>
  /**
   * Answers the questions of `kind` on this node until the scope closes: the
   * answer must be JSON. A failure or a defect is logged and answered
   * `undefined`.
   */
  readonly serve: (
    kind: string,
    answer: (question: unknown) => Effect.Effect<unknown>
  ) => Effect.Effect<void, never, Scope.Scope>
}>()("effect-lhttp/Cluster") {}

// the bus channels between nodes (`$` channels: no client can name them)
const questions = Result.getOrThrow(Channel.internal("lhttp.cluster.ask"))
const announcements = Result.getOrThrow(Channel.internal("lhttp.cluster.nodes"))
// (a node id that cannot name a channel gets no answer: this node's own ids always can)
const answersTo = (node: string) => Channel.internal(`lhttp.cluster.answer.${node}`)

// how often a node says it is there, and how long the others count it without hearing from it
const heartbeat = Duration.seconds(5)
const forgetAfter = 15_000

interface Question {
  readonly id: number
  readonly kind: string
  readonly from: string
  readonly question: unknown
}

interface Reply {
  readonly id: number
  readonly node: string
  readonly answer?: unknown
}

interface Waiting {
  readonly expected: ReadonlySet<string>
  readonly answers: Map<string, unknown>
  readonly done: Deferred.Deferred<void>
}

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/**
 * Makes the cluster over the `Bus` in context: joins the other nodes and
 * answers their questions until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*() {
  const bus = yield* Bus
  const node = randomId()
  const startedAt = Date.now()
  const context = yield* Effect.context<never>()
  const scope = yield* Effect.scope
  const run = Effect.runForkWith(context)
  const served = new Map<string, (question: unknown) => Effect.Effect<unknown>>()

  // the nodes heard from lately, this one included
  const seen = new Map<string, number>([[node, startedAt]])
  const alive = () => {
    const now = Date.now()
    seen.set(node, now)
    for (const [id, at] of seen) if (now - at > forgetAfter) seen.delete(id)
    return new Set(seen.keys())
  }

  const waiting = new Map<number, Waiting>()
  let nextQuestion = 0

  // another node's question (or this one's): answered to the asker
  const onQuestion = (text: string) => {
    const question = parse(text)
    if (!isRecord(question) || typeof question.from !== "string" || typeof question.kind !== "string") return
    if (typeof question.id !== "number") return
    heard(question.from)
    const to = answersTo(question.from)
    if (Result.isFailure(to)) return
    const id = question.id
    const serve = served.get(question.kind)
    const answering: Effect.Effect<unknown> = serve === undefined
      ? Effect.succeed(undefined)
      : Effect.suspend(() => serve(question.question)).pipe(
        Effect.catchCause((cause) =>
          Effect.as(Effect.logWarning(`a cluster question (${question.kind}) failed on this node`, cause), undefined)
        )
      )
    run(Effect.flatMap(answering, (answer) => {
      const reply: Reply = answer === undefined ? { id, node } : { id, node, answer }
      return Effect.ignore(bus.publish(to.success, JSON.stringify(reply)))
    }))
  }

  const onAnswer = (text: string) => {
    const reply = parse(text)
    if (!isRecord(reply) || typeof reply.node !== "string" || typeof reply.id !== "number") return
    heard(reply.node)
    const waiter = waiting.get(reply.id)
    if (waiter === undefined) return
    waiter.answers.set(reply.node, reply.answer)
    if ([...waiter.expected].every((id) => waiter.answers.has(id))) Deferred.doneUnsafe(waiter.done, Exit.void)
  }

  // this node says it is there again at every heartbeat, from when it first hears of another node (alone, it
  // keeps no timer)
  const announce = bus.publish(announcements, node)
  let beating = false
  const beat = Effect.ignore(announce).pipe(Effect.delay(heartbeat), Effect.forever)
  const heard = (from: string) => {
    seen.set(from, Date.now())
    if (beating || from === node) return
    beating = true
    run(Effect.forkIn(beat, scope))
  }

  // a node heard from for the first time is told of this one at once, so that its first question waits for it
  const onAnnouncement = (from: string) => {
    const known = seen.has(from)
    heard(from)
    if (!known && from !== node) run(Effect.ignore(announce))
  }

  yield* bus.subscribe(questions, onQuestion).pipe(Effect.orDie)
  yield* bus.subscribe(Result.getOrThrow(answersTo(node)), onAnswer).pipe(Effect.orDie)
  yield* bus.subscribe(announcements, onAnnouncement).pipe(Effect.orDie)
  // this node says it is there at once (again every 100 ms while the bus cannot publish yet)
  yield* Effect.forkScoped(announce.pipe(Effect.retry(Schedule.spaced("100 millis"))))

  const ask = <A>(kind: string, question: unknown, timeout?: Duration.Input) =>
    Effect.suspend(() => {
      const id = ++nextQuestion
      const waiter: Waiting = { expected: alive(), answers: new Map(), done: Deferred.makeUnsafe() }
      waiting.set(id, waiter)
      const asked: Question = { id, kind, from: node, question }
      return bus.publish(questions, JSON.stringify(asked)).pipe(
        Effect.andThen(Deferred.await(waiter.done)),
        Effect.as(true),
        Effect.timeoutOrElse({
          duration: Duration.fromInputUnsafe(timeout ?? Duration.seconds(2)),
          orElse: () => Effect.succeed(false)
        }),
        Effect.map((complete): Gathered<A> => ({
          answers: Array.from(waiter.answers, ([from, answer]) => ({ node: from, answer: answer as A | undefined })),
          complete
        })),
        Effect.ensuring(Effect.sync(() => waiting.delete(id)))
      )
    })

  const serve = (kind: string, answer: (question: unknown) => Effect.Effect<unknown>) =>
    Effect.acquireRelease(
      Effect.sync(() => served.set(kind, answer)),
      () => Effect.sync(() => served.delete(kind))
    ).pipe(Effect.asVoid)

  return Cluster.of({ node, startedAt, nodes: Effect.sync(alive), ask, serve })
})

/**
 * The cluster over the `Bus`: one per node. Presence and the server API
 * both use it; provide it once (a Layer used twice is built once).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Cluster, never, Bus> = Layer.effect(Cluster, make())
